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
from ..storage.models import Client, ClientServiceRole, Role
from ..storage.rbac import bump_generation, role_grants
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


# --- used by configuration as code (idp.manage.config_code) ----------------------------------

SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
MIN_SECRET_LENGTH = 32


def set_secret(ctx: Context, client_id: str, secret: str) -> Client:
    """Give the client this secret (kept as a keyed hash, and sealed for client_secret_jwt).
    Secrets are checked by a fast keyed hash, so they must be long random values."""
    ctx.require("clients:clients:update")
    row = _load(ctx, client_id)
    method = row.meta.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in SECRET_METHODS:
        raise ValidationError(f"client {client_id} authenticates with {method}: it has no secret")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"a client secret must be a random value of at least {MIN_SECRET_LENGTH} characters"
        )
    row.secret_hash = ctx.svc.hasher.hash(secret)
    row.secret_enc = (
        ctx.svc.sealer.seal(secret.encode(), context=client_id)
        if method == "client_secret_jwt"
        else None
    )
    ctx.audit("client.secret_set", client_id)
    ctx.after_commit(client_cache(ctx.svc).bump)
    return row


def set_service_roles(ctx: Context, client_id: str, roles: list[str]) -> list[str]:
    """Make these global roles exactly the roles of the client's service account."""
    ctx.require("clients:clients:update")
    _load(ctx, client_id)
    wanted = {}
    for name in roles:
        role = ctx.db.scalar(select(Role).where(Role.name == name, Role.client_id.is_(None)))
        if role is None:
            raise ValidationError(f"no role {name!r}")
        wanted[role.id] = role.name
    rows = ctx.db.scalars(
        select(ClientServiceRole).where(ClientServiceRole.client_id == client_id)
    ).all()
    have = {r.role_id: r for r in rows}
    added = [i for i in wanted if i not in have]
    ctx.require_holds(role_grants(ctx.db, added, clock=ctx.svc.clock))
    for role_id, row in have.items():
        if role_id not in wanted:
            ctx.db.delete(row)
    for role_id in added:
        ctx.db.add(ClientServiceRole(client_id=client_id, role_id=role_id))
    ctx.db.flush()
    ctx.audit("client.service_roles_set", client_id, roles=sorted(wanted.values()))
    ctx.after_commit(client_cache(ctx.svc).bump)
    return sorted(wanted.values())


def delete(ctx: Context, client_id: str) -> None:
    """Delete a client with its own roles and claim rules."""
    ctx.require("clients:clients:delete")
    ctx.db.delete(_load(ctx, client_id))
    ctx.db.flush()
    # Its roles and service-account grants go by ON DELETE CASCADE, which the ORM's change
    # tracking does not see: cached permissions must not outlive them.
    bump_generation(ctx.db)
    ctx.audit("client.deleted", client_id)
    ctx.after_commit(client_cache(ctx.svc).bump)
