"""Tables of the hosted login: password history, security answers, the per-user session index."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class PasswordHistory(Base):
    """Hashes of a user's previous passwords, so the policy can refuse reusing the last N."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityAnswer(Base):
    """An answer to a security question, normalized then hashed like a password."""

    __tablename__ = "security_answers"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    question: Mapped[str] = mapped_column(String(300), primary_key=True)
    answer_hash: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SsoSessionIndex(Base):
    """Which SSO sessions a user has. The sessions themselves live in the short-lived store (keyed
    by id, not enumerable by user); this index lets a password change end the others and the
    account page list and revoke them. A row whose session expired is pruned when read.
    ``sid`` is the session id (a SHA-256 of the cookie value, idp.sso.sessions), never the
    cookie value itself."""

    __tablename__ = "sso_session_index"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    amr: Mapped[str | None] = mapped_column(String(100))
