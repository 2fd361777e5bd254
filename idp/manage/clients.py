"""OAuth 2.0 / OpenID Connect clients: create, read, list, update (merge patch), enable /
disable, delete, secret rotation, service-account roles, initial access tokens.

Permissions: ``clients:clients:create`` / ``clients:clients:update`` / ``clients:clients:read``
/ ``clients:clients:delete`` (rotating the secret and setting service roles are updates),
``clients:registration:create`` for RFC 7591 initial access tokens. Service-account roles
given to a client also need every permission they carry. Every written client passes the one
metadata validator (``idp.core.client_metadata``), and its ``sector_identifier_uri`` document
(when new, or when the redirect URIs change) must list every redirect URI
(``idp.oidc.subjects.check_sector_document``); every worker sees a change within a second
(the client cache generation is bumped once the change has committed).

Secret rotation: the new secret is returned once and only its keyed hash is stored. By default
the old secret stops working at once (a leaked secret must die now). A grace period
(``grace_seconds``, at most a week, ``client_secret_basic`` / ``client_secret_post`` only)
keeps the previous secret's hash in the short-lived store for that long, so a deployment can
roll the new secret out without downtime; the next rotation or the client's deletion ends it.
Secrets never reach an audit row or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, or_, select

from ..core.client_metadata import MetadataError, Policy, check_client_metadata
from ..crypto import new_token
from ..errors import Conflict, NotFound, ValidationError
from ..oidc.clients import client_cache, previous_secret_key
from ..oidc.subjects import check_sector_document, sector_changed
from ..sso import network
from ..storage.clients import ClientRegistry
from ..storage.models import Client, ClientServiceRole, Role
from ..storage.rbac import bump_generation, role_grants
from .context import Context

SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
MAX_GRACE_SECONDS = 7 * 86400
# Members of an RFC 7591 / 7592 document that are not metadata: never stored in ``meta``
# (a stored "client_secret" would be shown to every reader).
RESERVED_KEYS = frozenset(
    {
        "client_id",
        "client_secret",
        "client_secret_expires_at",
        "client_id_issued_at",
        "registration_access_token",
        "registration_client_uri",
    }
)


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


@dataclass(frozen=True)
class ClientQuery:
    q: str | None = None  # contains, over client_id and name
    enabled: bool | None = None
    page: int = 1
    per_page: int = 25


def search(ctx: Context, query: ClientQuery) -> tuple[list[Client], int]:
    """One page of clients (ordered by client_id) and how many match."""
    ctx.require("clients:clients:read")
    where = []
    if query.q:
        where.append(
            or_(
                Client.client_id.contains(query.q, autoescape=True),
                Client.name.contains(query.q, autoescape=True),
            )
        )
    if query.enabled is not None:
        where.append(Client.enabled.is_(query.enabled))
    total = ctx.db.scalar(select(func.count()).select_from(Client).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Client)
        .where(*where)
        .order_by(Client.client_id)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    ).all()
    return list(rows), total


def service_roles(ctx: Context, client_id: str) -> list[str]:
    """The names of the (global) roles of the client's service account."""
    return list(
        ctx.db.scalars(
            select(Role.name)
            .join(ClientServiceRole, ClientServiceRole.role_id == Role.id)
            .where(ClientServiceRole.client_id == client_id)
            .order_by(Role.name)
        )
    )


def _global_roles(ctx: Context, names: list[str]) -> list[Role]:
    rows = []
    for name in dict.fromkeys(names):
        role = ctx.db.scalar(select(Role).where(Role.name == name, Role.client_id.is_(None)))
        if role is None:
            raise NotFound(f"service_roles: no role {name!r}")
        rows.append(role)
    return rows


def _reserved(keys: Any) -> None:
    bad = sorted(RESERVED_KEYS & set(keys))
    if bad:
        raise MetadataError(
            "invalid_client_metadata", f"{bad[0]}: is not client metadata and cannot be set", bad[0]
        )


def create(
    ctx: Context, client_id: str | None, *, roles: list[str] = (), **options: Any
) -> tuple[Client, str | None]:
    """A new client (options as ``ClientRegistry.create``); returns it and its secret, shown
    once (None for authentication methods without one)."""
    ctx.require("clients:clients:create")
    _reserved((options.get("extra") or {}).keys())
    if roles:
        role_ids = [r.id for r in _global_roles(ctx, list(roles))]
        ctx.require_holds(role_grants(ctx.db, role_ids, clock=ctx.svc.clock))
    svc = ctx.svc
    # OIDC Registration §5, fetched before anything is written (no write lock held meanwhile).
    check_sector_document(
        svc,
        {
            "redirect_uris": options.get("redirect_uris") or [],
            "sector_identifier_uri": (options.get("extra") or {}).get("sector_identifier_uri"),
        },
    )
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
    URI-valued keys (and others that can be unset) to replace (the value ``""`` removes the
    key); ``userinfo_alg`` "none" removes signed userinfo. The whole resulting metadata passes
    the RFC 7591 validator."""
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
    if sector_changed(row.meta, meta):
        check_sector_document(ctx.svc, meta)
    changed = sorted(k for k in set(meta) | set(row.meta) if meta.get(k) != row.meta.get(k))
    before = {k: row.meta.get(k) for k in changed}
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
        before=before,
        after={k: meta.get(k) for k in changed},
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


def patch(
    ctx: Context,
    client_id: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    name: str | None = None,
    enabled: bool | None = None,
    first_party: bool | None = None,
    roles: list[str] | None = None,
) -> Client:
    """A JSON merge patch (RFC 7396) of the client: each ``metadata`` member given replaces the
    stored one, ``None`` removes it; the whole resulting document passes the one validator or
    nothing changes. The authentication method cannot change (its secret, or the lack of one,
    belongs to it). ``roles`` replaces the service account's roles: the ones added need every
    permission they carry."""
    ctx.require("clients:clients:update")
    row = _load(ctx, client_id)
    metadata = dict(metadata or {})
    _reserved(metadata)
    meta = dict(row.meta)
    for key, value in metadata.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    if "client_name" in metadata and name is None:
        name = metadata["client_name"]
    if name is not None:
        meta["client_name"] = name
    method = row.meta.get("token_endpoint_auth_method", "client_secret_basic")
    if meta.get("token_endpoint_auth_method", "client_secret_basic") != method:
        raise MetadataError(
            "invalid_client_metadata",
            "token_endpoint_auth_method: cannot change; create a new client instead",
            "token_endpoint_auth_method",
        )
    check_client_metadata(meta, Policy.from_settings(ctx.svc.settings))
    if sector_changed(row.meta, meta):
        check_sector_document(ctx.svc, meta)
    added: list[str] = []
    removed: list[str] = []
    if roles is not None:
        wanted = _global_roles(ctx, roles)
        held = set(service_roles(ctx, client_id))
        new = [r for r in wanted if r.name not in held]
        ctx.require_holds(role_grants(ctx.db, [r.id for r in new], clock=ctx.svc.clock))
        added = [r.name for r in new]
        removed = sorted(held - {r.name for r in wanted})
        ctx.db.execute(
            sql_delete(ClientServiceRole).where(ClientServiceRole.client_id == client_id)
        )
        for role in wanted:
            ctx.db.add(ClientServiceRole(client_id=client_id, role_id=role.id))
    changed = sorted(k for k in set(meta) | set(row.meta) if meta.get(k) != row.meta.get(k))
    before = {k: row.meta.get(k) for k in changed}
    after = {k: meta.get(k) for k in changed}
    for field, value in (("name", name), ("first_party", first_party), ("enabled", enabled)):
        if value is not None and getattr(row, field) != value:
            changed.append(field)
            before[field], after[field] = getattr(row, field), value
            setattr(row, field, value)
    if not changed and not added and not removed:
        return row  # nothing to change, nothing to record
    row.meta = meta
    ctx.db.flush()
    ctx.audit(
        "client.updated",
        client_id,
        changed=changed,
        before=before,
        after=after,
        roles_added=added,
        roles_removed=removed,
    )
    ctx.after_commit(client_cache(ctx.svc).bump)
    return row


def set_enabled(ctx: Context, client_id: str, enabled: bool) -> Client:
    """Enable or disable a client: a disabled one cannot authenticate or sign anyone in."""
    return patch(ctx, client_id, enabled=enabled)


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
    """Delete the client with what the database holds for it (service roles, its own roles and
    their assignments, consents, refresh tokens, claim rules). Access tokens already issued as
    JWTs stay valid until they expire (``access_token_lifetime``)."""
    ctx.require("clients:clients:delete")
    row = _load(ctx, client_id)
    ctx.db.delete(row)
    # Its own roles go by cascade in the database, past the ORM events that mark RBAC changes.
    bump_generation(ctx.db)
    ctx.db.flush()
    ctx.audit("client.deleted", client_id)
    store = ctx.svc.store
    ctx.after_commit(lambda: store.delete(previous_secret_key(client_id)))
    ctx.after_commit(client_cache(ctx.svc).bump)
    ctx.after_commit(lambda: network.rules_changed(ctx.svc))  # its rules went with it


def rotate_secret(ctx: Context, client_id: str, *, grace_seconds: int = 0) -> str:
    """A new secret for a confidential client, returned once. The old one stops working at
    once, or after ``grace_seconds`` (client_secret_basic / client_secret_post only)."""
    ctx.require("clients:clients:update")
    row = _load(ctx, client_id)
    method = row.meta.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in SECRET_METHODS:
        raise Conflict(f"client {client_id!r} authenticates with {method}: it has no secret")
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationError(f"grace_seconds: must be from 0 to {MAX_GRACE_SECONDS}")
    if grace_seconds and method == "client_secret_jwt":
        raise ValidationError(
            "grace_seconds: client_secret_jwt keys its assertions with the secret itself; "
            "rotate without a grace period"
        )
    svc = ctx.svc
    previous = row.secret_hash
    secret = new_token(32)
    row.secret_hash = svc.hasher.hash(secret)
    row.secret_enc = (
        svc.sealer.seal(secret.encode(), context=client_id)
        if method == "client_secret_jwt"
        else None
    )
    ctx.db.flush()
    ctx.audit("client.secret_rotated", client_id, grace_seconds=grace_seconds)
    key = previous_secret_key(client_id)
    if grace_seconds and previous:
        ctx.after_commit(lambda: svc.store.put(key, previous, grace_seconds))
    else:
        ctx.after_commit(lambda: svc.store.delete(key))
    ctx.after_commit(client_cache(svc).bump)
    return secret


# --- used by configuration as code (idp.manage.config_code) ----------------------------------

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
    # A secret set this way replaces any previous one still in a rotation's grace period.
    store = ctx.svc.store
    ctx.after_commit(lambda: store.delete(previous_secret_key(client_id)))
    ctx.after_commit(client_cache(ctx.svc).bump)
    return row
