"""OAuth 2.0 / OIDC clients: metadata validation (RFC 7591 §2, RFC 9700 §2.1) and storage."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..crypto import KeyedHasher, Sealer, new_token
from ..errors import Conflict, ValidationError
from .models import Client, ClientServiceRole, InitialAccessToken, Role

AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
DEFAULT_SCOPE = "openid profile email"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_redirect_uri(uri: str, what: str = "redirect URI") -> str:
    """https (or http on a loopback host, for native apps), absolute, no fragment, no
    userinfo; private-use schemes (com.example.app:/cb) are allowed for native apps."""
    if len(uri) > 2000:
        raise ValidationError(f"{what} is longer than 2000 characters")
    parts = urlsplit(uri)
    if not parts.scheme:
        raise ValidationError(f"{what} {uri!r} is not an absolute URI")
    if parts.fragment or "#" in uri:
        raise ValidationError(f"{what} {uri!r} must not contain a fragment")
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValidationError(f"{what} {uri!r} has no host")
        if parts.username is not None or "@" in parts.netloc:
            raise ValidationError(f"{what} {uri!r} must not contain user information")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValidationError(f"{what} {uri!r} must use https (http only for loopback)")
    elif parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise ValidationError(f"{what} {uri!r} uses a forbidden scheme")
    elif "." not in parts.scheme:
        raise ValidationError(
            f"{what} {uri!r}: a private-use scheme must be a reverse domain name (RFC 8252 §7.1)"
        )
    return uri


class ClientRegistry:
    def __init__(self, db: Session, hasher: KeyedHasher, sealer: Sealer) -> None:
        self.db = db
        self.hasher = hasher
        self.sealer = sealer

    def create(
        self,
        client_id: str | None,
        *,
        name: str | None = None,
        redirect_uris: list[str] = (),
        grant_types: list[str] = (),
        auth_method: str = "client_secret_basic",
        scope: str = DEFAULT_SCOPE,
        post_logout_redirect_uris: list[str] = (),
        backchannel_logout_uri: str | None = None,
        jwks_uri: str | None = None,
        roles: list[str] = (),
        first_party: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Client, str | None]:
        """Create a client; return it and its secret (shown once; None for non-secret auth)."""
        client_id = client_id or new_token(18)
        if not 1 <= len(client_id) <= 255 or any(c.isspace() for c in client_id):
            raise ValidationError("client_id must be 1-255 characters without spaces")
        if self.db.get(Client, client_id) is not None:
            raise Conflict(f"client {client_id!r} already exists")
        if auth_method not in AUTH_METHODS:
            raise ValidationError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
        grants = list(dict.fromkeys(grant_types or ["authorization_code"]))
        for g in grants:
            if g not in GRANT_TYPES:
                raise ValidationError(
                    f"grant type {g!r} is not supported ({', '.join(GRANT_TYPES)})"
                )
        if auth_method == "none" and "client_credentials" in grants:
            raise ValidationError(
                "a public client (auth method none) cannot use client_credentials"
            )
        if "authorization_code" in grants and not redirect_uris:
            raise ValidationError("the authorization_code grant needs at least one redirect URI")
        uris = [validate_redirect_uri(u) for u in redirect_uris]
        post_logout = [
            validate_redirect_uri(u, "post-logout redirect URI") for u in post_logout_redirect_uris
        ]
        if backchannel_logout_uri:
            validate_redirect_uri(backchannel_logout_uri, "back-channel logout URI")
        if jwks_uri:
            parts = urlsplit(jwks_uri)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and is_loopback_host(parts.hostname)
            ):
                raise ValidationError("jwks_uri must be an https URL")
        if auth_method == "private_key_jwt" and not (jwks_uri or (extra or {}).get("jwks")):
            raise ValidationError("private_key_jwt needs a jwks_uri (or jwks)")
        role_rows = []
        for r in roles:
            role = self.db.scalar(select(Role).where(Role.name == r, Role.client_id.is_(None)))
            if role is None:
                raise ValidationError(f"no role {r!r}")
            role_rows.append(role)

        meta: dict[str, Any] = {
            "client_name": name or client_id,
            "redirect_uris": uris,
            "grant_types": grants,
            "response_types": ["code"] if "authorization_code" in grants else [],
            "token_endpoint_auth_method": auth_method,
            "scope": " ".join(dict.fromkeys(scope.split())),
            "post_logout_redirect_uris": post_logout,
        }
        if backchannel_logout_uri:
            meta["backchannel_logout_uri"] = backchannel_logout_uri
            meta["backchannel_logout_session_required"] = True
        if jwks_uri:
            meta["jwks_uri"] = jwks_uri
        meta.update(extra or {})

        secret = None
        client = Client(
            client_id=client_id, name=name or client_id, meta=meta, first_party=first_party
        )
        if auth_method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
            secret = new_token(32)
            client.secret_hash = self.hasher.hash(secret)
            if auth_method == "client_secret_jwt":
                client.secret_enc = self.sealer.seal(secret.encode(), context=client_id)
        self.db.add(client)
        self.db.flush()
        for role in role_rows:
            self.db.add(ClientServiceRole(client_id=client_id, role_id=role.id))
        self.db.flush()
        return client, secret

    def new_initial_access_token(self, now, expires_in: int) -> str:
        if not 60 <= expires_in <= 30 * 86400:
            raise ValidationError("expires-in must be between 60 seconds and 30 days")
        token = new_token(32)
        self.db.add(
            InitialAccessToken(
                token_hash=self.hasher.hash(token), expires_at=now + timedelta(seconds=expires_in)
            )
        )
        self.db.flush()
        return token
