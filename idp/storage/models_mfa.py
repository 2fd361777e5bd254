"""Tables of the second factors (except WebAuthn, which keeps its own): TOTP seeds, backup codes,
e-mail/SMS code channels and remembered devices."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class MfaTotp(Base):
    """A confirmed TOTP authenticator (RFC 6238). The seed is sealed (AES-GCM, bound to the
    user id); ``last_step`` is the time step of the last accepted code, so no code is accepted
    twice and no older one after it (RFC 6238 section 5.2)."""

    __tablename__ = "mfa_totp"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret_sealed: Mapped[str] = mapped_column(Text)
    digits: Mapped[int] = mapped_column(Integer, default=6)
    period: Mapped[int] = mapped_column(Integer, default=30)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The name the person gave the device ("Phone", "Aegis on the tablet"), shown on /account/mfa.
    name: Mapped[str | None] = mapped_column(String(100))


class MfaBackupCode(Base):
    """One backup code, stored as a keyed hash; ``used_at`` set when it was spent."""

    __tablename__ = "mfa_backup_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaOtpChannel(Base):
    """An address that receives one-time codes: ``kind`` "email" or "sms". The destination is
    the one confirmed at enrolment, so a later profile change does not silently redirect codes."""

    __tablename__ = "mfa_otp_channels"
    __table_args__ = (UniqueConstraint("user_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MfaRememberedDevice(Base):
    """A browser on which the user chose "remember this device": its cookie holds a random token,
    only the keyed hash is stored. Expired rows are ignored and pruned on login."""

    __tablename__ = "mfa_remembered_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip: Mapped[str | None] = mapped_column(String(64))
