"""Tables of identity brokering (docs/brokering.md): the upstream identity providers people may
sign in with, and the links between their accounts there and local users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class UpstreamProvider(Base):
    """An upstream identity provider. ``config`` holds the protocol's settings (OIDC: issuer,
    client_id, scopes...; OAuth 2: its endpoints; SAML: its metadata), never the client
    secret: that is ``secret_enc``, sealed (``Services.sealer``) and never shown back."""

    __tablename__ = "upstream_providers"
    __table_args__ = (
        CheckConstraint("kind IN ('oidc','oauth2','saml')", name="kind"),
        CheckConstraint("sync_mode IN ('import','force')", name="sync_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Not offered as a button; still reachable by idp_hint and home-realm discovery.
    hide_on_login: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    # Mapping rules (idp.core.broker.MappingRule as dicts), applied in order.
    mapping: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # Home-realm discovery: e-mail domains whose people sign in here.
    hrd_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    sync_mode: Mapped[str] = mapped_column(String(16), default="import")
    # Just-in-time provisioning: a first login with no local match creates the account.
    create_users: Mapped[bool] = mapped_column(Boolean, default=False)
    # A first login whose verified e-mail matches a local account may link to it, after the
    # person proves that account (its password, or a link mailed to it).
    link_by_email: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UpstreamLink(Base):
    """A local user's account at an upstream: ``subject`` is the upstream's stable id."""

    __tablename__ = "upstream_links"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject", name="uq_upstream_links_subject"),
        UniqueConstraint("provider_id", "user_id", name="uq_upstream_links_user"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("upstream_providers.id", ondelete="CASCADE")
    )
    subject: Mapped[str] = mapped_column(String(255))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
