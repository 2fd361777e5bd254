"""OAuth 2.0 / OIDC clients: storage. Every client written here passes the one metadata
validator (``idp.core.client_metadata``, RFC 7591 §2, RFC 9700 §2.1) first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.client_metadata import Policy, check_client_metadata
from ..crypto import KeyedHasher, Sealer, new_token
from ..errors import Conflict, ValidationError
from .models import Client, ClientServiceRole, InitialAccessToken, Role

DEFAULT_SCOPE = "openid profile email"


class ClientRegistry:
    def __init__(
        self, db: Session, hasher: KeyedHasher, sealer: Sealer, policy: Policy | None = None
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.sealer = sealer
        self.policy = policy or Policy()

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
        frontchannel_logout_uri: str | None = None,
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
        grants = list(dict.fromkeys(grant_types or ["authorization_code"]))
        role_rows = []
        for r in roles:
            role = self.db.scalar(select(Role).where(Role.name == r, Role.client_id.is_(None)))
            if role is None:
                raise ValidationError(f"no role {r!r}")
            role_rows.append(role)

        meta: dict[str, Any] = {
            "client_name": name or client_id,
            "redirect_uris": list(redirect_uris),
            "grant_types": grants,
            "response_types": ["code"] if "authorization_code" in grants else [],
            "token_endpoint_auth_method": auth_method,
            "scope": " ".join(dict.fromkeys(scope.split())),
            "post_logout_redirect_uris": list(post_logout_redirect_uris),
        }
        if backchannel_logout_uri:
            meta["backchannel_logout_uri"] = backchannel_logout_uri
            meta["backchannel_logout_session_required"] = True
        if frontchannel_logout_uri:
            meta["frontchannel_logout_uri"] = frontchannel_logout_uri
        if jwks_uri:
            meta["jwks_uri"] = jwks_uri
        meta.update(extra or {})
        check_client_metadata(meta, self.policy)

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
