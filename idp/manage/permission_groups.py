"""Permission groups: named sets of permissions that roles include as one unit.

Permissions: ``roles:permission_groups:read`` / ``:create`` / ``:update`` / ``:delete``, and
``roles:roles:update`` to put one into a role or take it out. Whoever puts permissions into a
permission group that a global role includes must hold them (as for a role's own permissions).
"""

from __future__ import annotations

from sqlalchemy import select

from ..storage.directory import validate_permission
from ..storage.models import PermissionGroup, Role, RolePermissionGroup
from .context import Context


def list_all(ctx: Context) -> list[PermissionGroup]:
    ctx.require("roles:permission_groups:read")
    return list(ctx.db.scalars(select(PermissionGroup).order_by(PermissionGroup.name)))


def create(
    ctx: Context, name: str, permissions: list[str], description: str | None = None
) -> PermissionGroup:
    ctx.require("roles:permission_groups:create")
    ctx.require_holds({validate_permission(p) for p in permissions})
    pg = ctx.directory.create_permission_group(name, list(permissions), description)
    ctx.audit("permission_group.created", name, permissions=list(pg.permissions))
    return pg


def update(
    ctx: Context, pg: PermissionGroup, permissions: list[str], description: str | None
) -> PermissionGroup:
    """Set the group's permissions and description (every role including it follows)."""
    ctx.require("roles:permission_groups:update")
    wanted = sorted({validate_permission(p) for p in permissions})
    added = sorted(set(wanted) - set(pg.permissions or []))
    removed = sorted(set(pg.permissions or []) - set(wanted))
    ctx.require_holds(added)
    pg.permissions = wanted
    pg.description = description
    ctx.db.flush()
    ctx.audit("permission_group.updated", pg.name, added=added, removed=removed)
    return pg


def delete(ctx: Context, pg: PermissionGroup) -> None:
    """Delete the group; the roles that included it lose its permissions."""
    ctx.require("roles:permission_groups:delete")
    name = pg.name
    ctx.db.delete(pg)
    ctx.db.flush()
    ctx.audit("permission_group.deleted", name)


def attach(ctx: Context, role: Role, pg: PermissionGroup) -> bool:
    """The role now includes the group's permissions."""
    ctx.require("roles:roles:update")
    if role.client_id is None:
        ctx.require_holds(pg.permissions or [])
    added = ctx.directory.add_permission_group(role, pg)
    ctx.audit("role.permission_group_added", role.name, client_id=role.client_id, group=pg.name)
    return added


def detach(ctx: Context, role: Role, pg: PermissionGroup) -> bool:
    ctx.require("roles:roles:update")
    row = ctx.db.get(RolePermissionGroup, (role.id, pg.id))
    if row is not None:
        ctx.db.delete(row)
        ctx.db.flush()
    ctx.audit("role.permission_group_removed", role.name, client_id=role.client_id, group=pg.name)
    return row is not None
