"""Tables of known devices and security notifications: the browsers a user signed in from
(recognised by a long-lived device cookie, only its keyed hash stored), which SSO sessions ran
on which device, the security mails a user turned off, and the watermark of the administrators'
digest over the audit log. Not the MFA "remember this device" rows (models_mfa): those skip the
second factor, these only say "seen before"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class KnownDevice(Base):
    """A browser a user signed in from. ``cookie_hash`` is the keyed hash of the device cookie
    (the raw value never reaches the database); the same browser is a separate row for each
    person who signs in on it."""

    __tablename__ = "known_devices"
    __table_args__ = (UniqueConstraint("user_id", "cookie_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    cookie_hash: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_location: Mapped[str | None] = mapped_column(String(200))


class KnownDeviceSession(Base):
    """An SSO session that began on a known device, so "forget this device" can also end the
    sessions that run on it. Rows of ended sessions are harmless and go with the device.
    ``sid``: the session id (a hash of the cookie value), never the cookie value."""

    __tablename__ = "known_device_sessions"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[int] = mapped_column(
        ForeignKey("known_devices.id", ondelete="CASCADE"), index=True
    )


class SecurityMailOptOut(Base):
    """A kind of security mail (``idp.sso.notifications.KINDS``) the user turned off. Only
    opt-outs are stored: every kind is on until the user says otherwise."""

    __tablename__ = "security_mail_optouts"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationMark(Base):
    """How far a notification job got: ``last_id`` the last audit row it mailed, ``sent_at``
    when. Moved with a compare-and-set, so two workers never mail the same rows."""

    __tablename__ = "notification_marks"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
