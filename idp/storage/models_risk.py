"""Tables of suspicious-activity detection and adaptive authentication (docs/risk.md): the
recent successful sign-ins of each user (device, network, place) and the countries each user
ever signed in from. Rows of a deleted user go with the user (ON DELETE CASCADE)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class RiskSignIn(Base):
    """One successful sign-in, kept ``[risk] history_days``: which device (the ua-parser name)
    from which network (the /24 or /64) and where (GeoIP), for "is this device known", travel
    speed and velocity. The raw address and User-Agent are not kept here."""

    __tablename__ = "risk_sign_ins"
    __table_args__ = (Index("ix_risk_sign_ins_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    network: Mapped[str | None] = mapped_column(String(50))
    device: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class RiskUserCountry(Base):
    """A country a user signed in from (ISO 3166-1 alpha-2), kept for good: one row per
    country, so "first sign-in from a new country" still works after the history is pruned."""

    __tablename__ = "risk_user_countries"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
