"""OAuth 2.0 / OpenID Connect clients: create, update, read, initial access tokens.

Permissions: ``clients:clients:create`` / ``clients:clients:update`` / ``clients:clients:read``,
``clients:registration:create`` for RFC 7591 initial access tokens. Service-account roles
given to a client also need every permission they carry. Every written client passes the one
metadata validator (``idp.core.client_metadata``); every worker sees a change within a second
(the client cache generation is bumped once the change has committed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..core.client_metadata import Policy, check_client_metadata
from ..errors import NotFound, ValidationError
from ..oidc.clients import client_cache
from ..storage.clients import ClientRegistry
from ..storage.models import Client, Role
from ..storage.rbac import role_grants
from .context import Context


def public(row: Client) -> dict[str, Any]:
    """A client's settings as shown to administrators (never its secret)."""
    return {
        "client_id": row.client_id,
        "name": row.name,
        "enabled": row.enabled,
        "first_party": row.first_party,
        **row.meta,
    }


def get(ctx: Context, client_id: str) -> Client:
    ctx.require("clients:clients:read")
    return _load(ctx, client_id)


def _load(ctx: Context, client_id: str) -> Client:
    row = ctx.db.get(Client, client_id)
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return row


def list_all(ctx: Context) -> list[Client]:
    ctx.require("clients:clients:read")
    return list(ctx.db.scalars(select(Client).order_by(Client.client_id)))


def create(
    ctx: Context, client_id: str | None, *, roles: list[str] = (), **options: Any
) -> tuple[Client, str | None]:
    """A new client (options as ``ClientRegistry.create``); returns it and its secret, shown
    once (None for authentication methods without one)."""
    ctx.require("clients:clients:create")
    if roles:
        role_ids = ctx.db.scalars(
            select(Role.id).where(Role.name.in_(list(roles)), Role.client_id.is_(None))
        )
        ctx.require_holds(role_grants(ctx.db, role_ids, clock=ctx.svc.clock))
    svc = ctx.svc
    registry = ClientRegistry(ctx.db, svc.hasher, svc.sealer, Policy.from_settings(svc.settings))
    client, secret = registry.create(client_id, roles=list(roles), **options)
    ctx.audit(
        "client.created",
        client.client_id,
        auth_method=client.meta.get("token_endpoint_auth_method"),
        grant_types=client.meta.get("grant_types"),
        roles=list(roles),
    )
    return client, secret


def update(
    ctx: Context,
    client_id: str,
    *,
    name: str | None = None,
    changes: dict[str, Any] | None = None,
    uris: dict[str, Any] | None = None,
    userinfo_alg: str | None = None,
    first_party: bool | None = None,
    enabled: bool | None = None,
) -> Client:
    """Change a client's settings. ``changes`` are metadata values to set; ``uris`` are
    URI-valued keys to replace (the value ``""`` removes the key); ``userinfo_alg`` "none"
    removes signed userinfo. The whole resulting metadata passes the RFC 7591 validator."""
    changes = {k: v for k, v in (changes or {}).items() if v is not None}
    uris = {k: v for k, v in (uris or {}).items() if v is not None}
    if (
        not changes
        and not uris
        and all(v is None for v in (name, userinfo_alg, first_party, enabled))
    ):
        raise ValidationError("nothing to change: give at least one option")
    ctx.require("clients:clients:update")
    row = _load(ctx, client_id)
    meta = dict(row.meta)
    meta.update(changes)
    for key, value in uris.items():
        if value == "":
            meta.pop(key, None)
        else:
            meta[key] = value
    if userinfo_alg == "none":
        meta.pop("userinfo_signed_response_alg", None)
    elif userinfo_alg:
        meta["userinfo_signed_response_alg"] = userinfo_alg
    if name is not None:
        meta["client_name"] = name
    check_client_metadata(meta, Policy.from_settings(ctx.svc.settings))
    changed = sorted(k for k in set(meta) | set(row.meta) if meta.get(k) != row.meta.get(k))
    row.meta = meta
    if name is not None:
        row.name = name
    if first_party is not None:
        row.first_party = first_party
    if enabled is not None:
        row.enabled = enabled
    ctx.audit(
        "client.updated",
        client_id,
        changed=changed,
        first_party=first_party,
        enabled=enabled,
    )
    ctx.after_commit(client_cache(ctx.svc).bump)
    return row


def new_initial_access_token(ctx: Context, expires_in: int) -> str:
    """A one-use token for RFC 7591 dynamic client registration."""
    ctx.require("clients:registration:create")
    svc = ctx.svc
    token = ClientRegistry(ctx.db, svc.hasher, svc.sealer).new_initial_access_token(
        svc.clock.utcnow(), expires_in
    )
    ctx.audit("client.initial_access_token_created", None, expires_in=expires_in)
    return token
