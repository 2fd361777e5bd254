"""Tables of the SAML area: pairwise persistent NameIDs and federation metadata sources."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class SamlPersistentId(Base):
    """A persistent NameID (saml-core 8.3.7): one opaque value per user and SP, never reused
    across SPs (pairwise), stable while the pair exists. Kept when an SP is re-registered, so
    it is not tied to the SP row."""

    __tablename__ = "saml_persistent_ids"
    __table_args__ = (
        UniqueConstraint("sp_entity_id", "user_id"),
        UniqueConstraint("sp_entity_id", "value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sp_entity_id: Mapped[str] = mapped_column(String(1000))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SamlFederation(Base):
    """A federation metadata aggregate we import SPs from (eduGAIN / InCommon style)."""

    __tablename__ = "saml_federations"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    # PEM certificate the aggregate's signature must verify with.
    cert_pem: Mapped[str] = mapped_column(Text)
    # {"include": [entityIDs or regexes], "exclude": [...], "registration_authority": [...],
    #  "entity_category": [...]}: which SPs of the aggregate we trust.
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    refresh_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    last_refresh: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # From the aggregate: the moment it stops being valid, and when to fetch it again.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_refresh: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    entity_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
