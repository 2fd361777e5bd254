"""Permission groups: named sets of permissions that roles include as one unit.

Permissions: ``roles:permission_groups:read`` / ``:create`` / ``:update`` / ``:delete``, and
``roles:roles:update`` to put one into a role or take it out. Whoever puts permissions into a
permission group that a global role includes must hold them (as for a role's own permissions).
A change that would take away the actor's own permission to make it is refused
(``Context.require_kept``).
"""

from __future__ import annotations

from sqlalchemy import func, select

from ..errors import NotFound
from ..storage.directory import validate_permission
from ..storage.models import PermissionGroup, Role, RolePermissionGroup
from .context import UNSET, Context, Unset


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
    if removed:
        ctx.require_kept("roles:permission_groups:update")
    ctx.audit("permission_group.updated", pg.name, added=added, removed=removed)
    return pg


def delete(ctx: Context, pg: PermissionGroup) -> None:
    """Delete the group; the roles that included it lose its permissions."""
    ctx.require("roles:permission_groups:delete")
    name = pg.name
    roles = [r.name for r in ctx.directory.permission_group_roles(pg)]
    ctx.db.delete(pg)
    ctx.db.flush()
    ctx.require_kept("roles:permission_groups:delete")
    ctx.audit("permission_group.deleted", name, roles=roles)


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
        ctx.require_kept("roles:roles:update")
    ctx.audit("role.permission_group_removed", role.name, client_id=role.client_id, group=pg.name)
    return row is not None


def rename(ctx: Context, pg: PermissionGroup, name: str) -> PermissionGroup:
    ctx.require("roles:permission_groups:update")
    if name != pg.name:
        old = pg.name
        ctx.directory.rename_permission_group(pg, name)
        ctx.audit("permission_group.renamed", name, old_name=old)
    return pg


def patch(
    ctx: Context,
    pg: PermissionGroup,
    *,
    name: str | Unset = UNSET,
    permissions: list[str] | Unset = UNSET,
    description: str | None | Unset = UNSET,
) -> PermissionGroup:
    """What a merge patch asks: a new name, permissions (the whole list) and / or description.
    The permission is checked even when nothing changes; unchanged parts write nothing."""
    ctx.require("roles:permission_groups:update")
    if name is not UNSET:
        rename(ctx, pg, name)
    wanted = sorted(set(permissions)) if permissions is not UNSET else list(pg.permissions or [])
    text = description if description is not UNSET else pg.description
    if wanted != sorted(pg.permissions or []) or text != pg.description:
        update(ctx, pg, wanted, text)
    return pg


# --- reading by id, a page at a time -------------------------------------------------------------


def find(ctx: Context, pg_id: int) -> PermissionGroup:
    """The permission group with this id, or NotFound (no permission check)."""
    pg = ctx.db.get(PermissionGroup, pg_id)
    if pg is None:
        raise NotFound(f"no permission group {pg_id}")
    return pg


def get(ctx: Context, pg_id: int) -> PermissionGroup:
    ctx.require("roles:permission_groups:read")
    return find(ctx, pg_id)


def search(
    ctx: Context, *, q: str | None = None, page: int = 1, per_page: int = 25
) -> tuple[list[PermissionGroup], int]:
    """(the page of permission groups by name, total matching); ``q`` is in the name."""
    ctx.require("roles:permission_groups:read")
    where = [PermissionGroup.name.contains(q, autoescape=True)] if q else []
    total = ctx.db.scalar(select(func.count(PermissionGroup.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(PermissionGroup)
        .where(*where)
        .order_by(PermissionGroup.name)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), int(total)


def roles_of(ctx: Context, pg: PermissionGroup) -> list[Role]:
    """The roles that include the group."""
    ctx.require("roles:permission_groups:read")
    return ctx.directory.permission_group_roles(pg)
