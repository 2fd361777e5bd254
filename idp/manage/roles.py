"""Roles: list, read, create, describe, permissions, composites, delete. Permission groups
(named sets of permissions) are ``idp.manage.permission_groups``.

Permissions: ``roles:roles:read`` / ``create`` / ``update`` / ``delete``. Putting a permission
into a role (directly, through a permission group, or by including another role) also needs
holding it: a role manager cannot mint permissions they do not have. Client roles carry no IdP
permissions, so that check does not apply to them. A change that would take away the actor's
own permission to make it is refused (``Context.require_kept``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select

from ..core import rbac
from ..errors import NotFound, ValidationError
from ..storage.directory import Usage, validate_permission
from ..storage.models import (
    Client,
    PermissionGroup,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    User,
    UserRole,
)
from ..storage.rbac import role_grants
from .context import UNSET, Context, Unset


def _grantable(permissions: list[str]) -> list[str]:
    # Malformed values are left for the repository to refuse with its own message.
    out = []
    for p in permissions:
        try:
            out.append(validate_permission(p))
        except ValidationError:
            continue
    return out


def create(
    ctx: Context,
    name: str,
    permissions: list[str] = (),
    *,
    description: str | None = None,
    client_id: str | None = None,
) -> Role:
    ctx.require("roles:roles:create")
    if client_id is None:
        ctx.require_holds(_grantable(list(permissions)))
    elif ctx.db.get(Client, client_id) is None:
        raise NotFound(f"no client {client_id!r}")
    role = ctx.directory.create_role(
        name, list(permissions), client_id=client_id, description=description
    )
    ctx.audit(
        "role.created",
        role.name,
        role_id=role.id,
        client_id=client_id,
        permissions=sorted(permissions),
    )
    return role


def add_permissions(ctx: Context, role: Role, permissions: list[str]) -> list[str]:
    """Add permissions (module:feature:action, '*' allowed); the role's permissions after."""
    ctx.require("roles:roles:update")
    if role.client_id is None:
        ctx.require_holds(_grantable(list(permissions)))
    added = [p for p in permissions if ctx.directory.add_permission(role, p)]
    ctx.audit("role.permissions_added", role.name, client_id=role.client_id, added=added)
    return ctx.directory.role_permissions(role)


def remove_permission(ctx: Context, role: Role, permission: str) -> bool:
    """Remove a permission the role holds directly (False: it does not)."""
    ctx.require("roles:roles:update")
    if not rbac.GRANT_RE.match(permission):
        return False  # not a permission, so not one the role holds
    removed = ctx.directory.remove_permission(role, permission)
    ctx.require_kept("roles:roles:update")
    ctx.audit(
        "role.permission_removed",
        role.name,
        client_id=role.client_id,
        permission=permission,
        removed=removed,
    )
    return removed


def add_composite(ctx: Context, role: Role, child: Role) -> bool:
    """Make ``role`` include ``child``; cycles are refused."""
    ctx.require("roles:roles:update")
    ctx.require_holds(role_grants(ctx.db, [child.id], clock=ctx.svc.clock))
    added = ctx.directory.add_composite(role, child)
    ctx.audit("role.composite_added", role.name, includes=child.name, child_id=child.id)
    return added


def delete(ctx: Context, role: Role, *, force: bool = False) -> Usage:
    """Delete a role; refused while used unless ``force`` (its assignments go too)."""
    ctx.require("roles:roles:delete")
    name, client_id = role.name, role.client_id
    usage = ctx.directory.delete_role(role, force=force)
    ctx.require_kept("roles:roles:delete")
    ctx.audit("role.deleted", name, client_id=client_id, was_used_by=usage.as_dict())
    return usage


def remove_composite(ctx: Context, role: Role, child: Role) -> bool:
    """``role`` no longer includes ``child``."""
    ctx.require("roles:roles:update")
    removed = ctx.directory.remove_composite(role, child)
    ctx.require_kept("roles:roles:update")
    ctx.audit("role.composite_removed", role.name, includes=child.name, child_id=child.id)
    return removed


def set_description(ctx: Context, role: Role, description: str | None) -> Role:
    ctx.require("roles:roles:update")
    old, role.description = role.description, description
    ctx.db.flush()
    ctx.audit("role.updated", role.name, client_id=role.client_id, description=[old, description])
    return role


def update(ctx: Context, role: Role, *, description: str | None | Unset = UNSET) -> Role:
    """What a merge patch asks (a description; ``None`` clears it). The permission is checked
    even when nothing changes."""
    ctx.require("roles:roles:update")
    if description is not UNSET and description != role.description:
        set_description(ctx, role, description)
    return role


# --- reading roles -------------------------------------------------------------------------------


def find(ctx: Context, role_id: int) -> Role:
    """The role with this id, or NotFound (no permission check: callers check theirs)."""
    role = ctx.db.get(Role, role_id)
    if role is None:
        raise NotFound(f"no role {role_id}")
    return role


def get(ctx: Context, role_id: int) -> Role:
    ctx.require("roles:roles:read")
    return find(ctx, role_id)


@dataclass(frozen=True)
class RoleQuery:
    q: str | None = None  # contained in the name
    client_id: str | None = None  # the roles of this client
    kind: Literal["global", "client"] | None = None
    page: int = 1
    per_page: int = 25


def search(ctx: Context, query: RoleQuery) -> tuple[list[Role], int]:
    """(roles of the page: global ones first, then by client and name; total matching)."""
    ctx.require("roles:roles:read")
    where = []
    if query.q:
        where.append(Role.name.contains(query.q, autoescape=True))
    if query.client_id is not None:
        where.append(Role.client_id == query.client_id)
    if query.kind == "global":
        where.append(Role.client_id.is_(None))
    elif query.kind == "client":
        where.append(Role.client_id.is_not(None))
    total = ctx.db.scalar(select(func.count(Role.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Role)
        .where(*where)
        .order_by(Role.client_id.is_not(None), Role.client_id, Role.name, Role.id)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    )
    return list(rows), int(total)


@dataclass
class RoleDetails:
    """What a role holds: its own permissions, its permission groups, the roles it includes,
    and every IdP permission it carries through all of them."""

    permissions: list[str] = field(default_factory=list)
    permission_groups: list[PermissionGroup] = field(default_factory=list)
    composites: list[Role] = field(default_factory=list)
    effective: list[str] = field(default_factory=list)


def details(ctx: Context, role: Role) -> RoleDetails:
    ctx.require("roles:roles:read")
    db = ctx.db
    return RoleDetails(
        permissions=ctx.directory.role_permissions(role),
        permission_groups=list(
            db.scalars(
                select(PermissionGroup)
                .join(
                    RolePermissionGroup,
                    RolePermissionGroup.permission_group_id == PermissionGroup.id,
                )
                .where(RolePermissionGroup.role_id == role.id)
                .order_by(PermissionGroup.name)
            )
        ),
        composites=list(
            db.scalars(
                select(Role)
                .join(RoleComposite, RoleComposite.child_id == Role.id)
                .where(RoleComposite.role_id == role.id)
                .order_by(Role.name, Role.id)
            )
        ),
        effective=sorted(role_grants(db, [role.id], clock=ctx.svc.clock)),
    )


def permissions_of(ctx: Context, role_ids: list[int]) -> dict[int, list[str]]:
    """Each role's own permissions, by role id (one query for a page of roles)."""
    out: dict[int, list[str]] = {r: [] for r in role_ids}
    if role_ids:
        for role_id, permission in ctx.db.execute(
            select(RolePermission.role_id, RolePermission.permission)
            .where(RolePermission.role_id.in_(role_ids))
            .order_by(RolePermission.permission)
        ):
            out[role_id].append(permission)
    return out


def usage(ctx: Context, role: Role) -> Usage:
    ctx.require("roles:roles:read")
    return ctx.directory.role_usage(role)


def holders(
    ctx: Context, role: Role, *, page: int = 1, per_page: int = 25
) -> tuple[list[tuple[User, UserRole]], int]:
    """Who holds the role directly, one row per assignment (its delegation scope and expiry),
    by username: only users over whom the actor holds ``users:roles:read`` (delegation scopes
    included); ended temporary assignments are left out."""
    from .users import visible  # users imports groups, which is fine; roles stays light

    ctx.require("roles:roles:read")
    now = ctx.svc.clock.utcnow()
    where = [
        UserRole.role_id == role.id,
        UserRole.expires_at.is_(None) | (UserRole.expires_at > now),
        visible(ctx, "users:roles:read"),
    ]
    total = ctx.db.scalar(
        select(func.count(UserRole.id)).join(User, User.id == UserRole.user_id).where(*where)
    )
    rows = ctx.db.execute(
        select(User, UserRole)
        .join(UserRole, UserRole.user_id == User.id)
        .where(*where)
        .order_by(User.username, UserRole.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return [(u, ur) for u, ur in rows], int(total or 0)
