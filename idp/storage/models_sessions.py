"""Concurrent-session limits stored on a role or a group (docs/sessions.md). The per-user
limit is a setting ([session] max_per_user); the smallest limit that applies to a user wins."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base


class SessionLimit(Base):
    """At most ``max_sessions`` SSO sessions at once for every holder of the role (directly,
    through a group or a composite role) or member of the group (or of a group inside it)."""

    __tablename__ = "session_limits"
    __table_args__ = (
        CheckConstraint("(role_id IS NULL) <> (group_id IS NULL)", name="ck_session_limit_one"),
        CheckConstraint("max_sessions >= 1", name="ck_session_limit_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int | None] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), unique=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), unique=True
    )
    max_sessions: Mapped[int] = mapped_column(Integer)
