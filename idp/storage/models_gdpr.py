"""Tables of the GDPR area: deletion requests waiting for an administrator, and which version of
the terms / privacy policy each user accepted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow

REQUEST_STATUSES = ("pending", "approved", "rejected", "withdrawn")


class DeletionRequest(Base):
    """A user's request to have their account erased (``[gdpr] deletion = "approval"``). When it
    is approved the account is erased and ``user_id`` becomes NULL: only the pseudonymous
    ``user_uuid`` stays, so the ended request holds no personal data until the retention job
    removes it."""

    __tablename__ = "gdpr_deletion_requests"
    __table_args__ = (
        CheckConstraint("status IN ('pending','approved','rejected','withdrawn')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    user_uuid: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The deciding administrator's audit name (a uuid or "cli"), never their name.
    decided_by: Mapped[str | None] = mapped_column(String(200))
    # Why an administrator refused: mailed to the user, shown on their account page.
    note: Mapped[str | None] = mapped_column(Text)


class TermsAcceptance(Base):
    """A user accepted this version of the terms of use and privacy policy at this time."""

    __tablename__ = "gdpr_terms_acceptances"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
