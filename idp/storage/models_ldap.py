"""Tables of the LDAP backend: which local groups mirror directory groups, and sync progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class LdapGroup(Base):
    """A local group that mirrors a directory group. Memberships of directory users in these
    groups are owned by the directory: each login and sync replaces them; other groups and
    local users' memberships are never touched."""

    __tablename__ = "ldap_groups"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    # Lower-cased DN, so a group is found again however the server spells it.
    dn: Mapped[str] = mapped_column(String(1000), unique=True)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LdapSyncState(Base):
    """One row per configured directory (``name`` "default"): where incremental sync resumes."""

    __tablename__ = "ldap_sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The highest modify timestamp seen, in the server's own format (its clock, not ours).
    high_water: Mapped[str | None] = mapped_column(String(64))
    last_full_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_incremental_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LdapAccount(Base):
    """Directory bookkeeping for a user with ``source`` "ldap"."""

    __tablename__ = "ldap_accounts"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # True when *we* set the user inactive (removed from or disabled in the directory), so we
    # reactivate only those, never an account an administrator switched off.
    deactivated: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
