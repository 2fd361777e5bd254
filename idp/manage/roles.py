"""Roles: create, permissions, composites, delete.

Permissions: ``roles:roles:create`` / ``roles:roles:update`` / ``roles:roles:delete``. Putting
a permission into a role (directly or by including another role) also needs holding it: a
role manager cannot mint permissions they do not have.
"""

from __future__ import annotations

from ..errors import ValidationError
from ..storage.directory import Usage, validate_permission
from ..storage.models import Role
from ..storage.rbac import role_grants
from .context import Context


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
    ctx.require("roles:roles:update")
    removed = ctx.directory.remove_permission(role, permission)
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
    ctx.audit("role.deleted", name, client_id=client_id, was_used_by=usage.as_dict())
    return usage


def set_description(ctx: Context, role: Role, description: str | None) -> Role:
    ctx.require("roles:roles:update")
    old, role.description = role.description, description
    ctx.db.flush()
    ctx.audit("role.updated", role.name, client_id=role.client_id, description=[old, description])
    return role


def remove_composite(ctx: Context, role: Role, child: Role) -> bool:
    """``role`` no longer includes ``child``."""
    ctx.require("roles:roles:update")
    removed = ctx.directory.remove_composite(role, child)
    ctx.audit("role.composite_removed", role.name, includes=child.name, child_id=child.id)
    return removed
