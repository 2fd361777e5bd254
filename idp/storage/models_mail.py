"""The durable mail outbox: each mail a page queues is a row until a worker has handed it over."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class MailOutbox(Base):
    """One queued mail (``idp.storage.mail_outbox``). ``state``: "rendering" (written by the
    request, the message is being rendered by that worker's mail thread), "queued" (``message``
    holds the RFC 5322 bytes, due at ``due_at``), "failed" (given up after the configured
    attempts; the message is dropped, the row stays for the operator). A sent mail's row is
    deleted. A worker owns a row while ``lease_until`` lies ahead; any worker may take it after."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="rendering")
    message: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
