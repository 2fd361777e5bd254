"""Users: create, role assignments, and what a user holds (permissions, claims preview).

Permissions: ``users:accounts:create`` (global), ``users:roles:assign`` and
``users:groups:assign`` over the target user, ``users:roles:read`` / ``users:accounts:read``
for the read-outs. Giving a role or a group also needs every permission it carries.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..storage.claims import explain as explain_paths
from ..storage.claims import oidc_claims, saml_attributes
from ..storage.directory import NewUser
from ..storage.models import Company, Department, GroupMember, Role, User, UserRole
from ..storage.rbac import Grants, grants_for, role_grants
from .context import Context
from .groups import group_grants


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def create(
    ctx: Context,
    new: NewUser,
    *,
    password: str | None = None,
    groups: list[str] = (),
    roles: list[str] = (),
) -> User:
    """A new user, with a password (hashed here) or none (they set one by e-mail), in
    ``groups`` (paths) with ``roles`` (global role names)."""
    ctx.require("users:accounts:create")
    if password:
        from ..backends.passwords import PasswordHasher

        new = replace(new, password_hash=PasswordHasher().hash(password))
    user = ctx.directory.create_user(new, list(groups), list(roles))
    if roles:
        ctx.require("users:roles:assign", user.id)
        role_ids = ctx.db.scalars(select(UserRole.role_id).where(UserRole.user_id == user.id))
        ctx.require_holds(role_grants(ctx.db, role_ids, clock=ctx.svc.clock), user.id)
    if groups:
        ctx.require("users:groups:assign", user.id)
        for group_id in ctx.db.scalars(
            select(GroupMember.group_id).where(GroupMember.user_id == user.id)
        ):
            ctx.require_holds(group_grants(ctx, group_id), user.id)
    ctx.audit(
        "user.created",
        user.uuid,
        username=user.username,
        groups=list(groups),
        roles=list(roles),
        password_set=bool(password),
    )
    return user


def assign_role(
    ctx: Context,
    user: User,
    role: Role,
    *,
    scope_company: Company | None = None,
    scope_department: Department | None = None,
    expires_at: datetime | None = None,
) -> UserRole:
    """Give ``user`` the role (optionally scoped for delegation, optionally temporary)."""
    ctx.require("users:roles:assign", user.id)
    ctx.require_holds(role_grants(ctx.db, [role.id], clock=ctx.svc.clock), user.id)
    row = ctx.directory.assign_role(
        user,
        role,
        scope_company=scope_company,
        scope_department=scope_department,
        expires_at=expires_at,
        granted_by=ctx.actor.user_id,
    )
    ctx.audit(
        "user.role_assigned",
        user.uuid,
        role=role.name,
        client_id=role.client_id,
        scope_company_id=row.scope_company_id,
        scope_department_id=row.scope_department_id,
        expires_at=_iso(row.expires_at),
    )
    return row


def remove_role(ctx: Context, user: User, role: Role) -> int:
    """Take the role away (every scope); how many assignments went."""
    ctx.require("users:roles:assign", user.id)
    removed = ctx.directory.unassign_role(user, role)
    ctx.audit(
        "user.role_removed", user.uuid, role=role.name, client_id=role.client_id, removed=removed
    )
    return removed


def explain(ctx: Context, user: User, permission: str) -> list[str]:
    """Every path that grants ``user`` the permission (empty: it is not granted)."""
    ctx.require("users:roles:read", user.id)
    return explain_paths(ctx.db, user.id, permission, clock=ctx.svc.clock)


def permissions(ctx: Context, user: User) -> Grants:
    """The user's effective grants, everywhere and per delegated scope."""
    ctx.require("users:roles:read", user.id)
    return grants_for(ctx.db, ctx.svc.store, user.id, clock=ctx.svc.clock)


def claims(
    ctx: Context,
    user: User,
    *,
    client_id: str | None = None,
    scopes: list[str] = (),
    sp_entity_id: str | None = None,
) -> dict[str, Any]:
    """What the mapper releases for ``user``: OIDC claims, or SAML attributes for an SP."""
    ctx.require("users:accounts:read", user.id)
    clock = ctx.svc.clock
    if sp_entity_id:
        attrs = saml_attributes(ctx.db, user.id, sp_entity_id=sp_entity_id, clock=clock)
        return {"attributes": [a.__dict__ for a in attrs]}
    return {
        "claims": oidc_claims(
            ctx.db, user.id, client_id=client_id, scopes=list(scopes), clock=clock
        )
    }
