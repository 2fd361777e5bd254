"""Tables of the OAuth 2.0 / OIDC engine: refresh tokens and remembered consent.

Authorization codes, access-token revocations and replay caches are short-lived and live in the
store; refresh tokens and consent outlive any store TTL and live here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class RefreshToken(Base):
    """One refresh token. Tokens issued from one authorization share a ``grant_id`` (the
    family): reuse of a rotated token or of the code revokes the whole family."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(255), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(1000))
    # The SSO session (public sid) an online token belongs to; offline tokens outlive it.
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_time: Mapped[int | None] = mapped_column()
    acr: Mapped[str | None] = mapped_column(String(100))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    resource: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A public client's token is bound to its DPoP key / certificate (RFC 9449 §5, RFC 8705
    # §4): {"jkt": ...} / {"x5t#S256": ...}; None when not bound.
    cnf: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The family's absolute end, carried over on rotation.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when this token was exchanged for a new one (rotation) or revoked.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    # What authlib's refresh grant asks of a token (RFC 6749 §6: bound to its client).
    def check_client(self, client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope


class Consent(Base):
    """The scopes a user granted a client; asked again only for scopes beyond these."""

    __tablename__ = "oauth_consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
