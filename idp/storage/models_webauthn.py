"""WebAuthn credentials (W3C Web Authentication Level 3, section 7.1 step 27: the relying party
keeps the credential id, public key, signature counter, transports and backup state per
account). A user may register several named authenticators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url of the raw credential id (at most 1023 bytes per the spec, so 1364 characters).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    # The COSE_Key from the attested credential data, as the authenticator sent it.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[Any]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    attestation_format: Mapped[str] = mapped_column(String(32), default="none")
    # "platform" | "cross-platform" | None (the browser did not say)
    attachment: Mapped[str | None] = mapped_column(String(20))
    # RFC 8176 method this credential proves: "hwk" (device-bound key) or "swk" (synced or
    # platform software key); decided once at registration, see docs/webauthn.md.
    amr: Mapped[str] = mapped_column(String(8), default="hwk")
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    # True when the browser reported a discoverable (resident) credential (credProps).
    discoverable: Mapped[bool | None] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
