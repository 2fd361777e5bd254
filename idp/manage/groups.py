"""Groups: create, move, members, group roles.

Permissions: ``groups:groups:create`` / ``groups:groups:update``, ``groups:roles:assign``,
and ``users:groups:assign`` over the member. Whatever hands out roles (a membership, a group
role, a move under a parent with roles) also needs every permission those roles carry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ..storage.models import Group, GroupMember, GroupRole, Role, User
from ..storage.rbac import role_grants
from .context import Context


def group_grants(ctx: Context, group_id: int) -> frozenset[str]:
    """The permissions membership of the group gives: its roles and its ancestors' roles."""
    path = ctx.db.scalar(select(Group.path).where(Group.id == group_id))
    if path is None:
        return frozenset()
    parts = path.split("/")
    paths = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    role_ids = ctx.db.scalars(
        select(GroupRole.role_id)
        .join(Group, Group.id == GroupRole.group_id)
        .where(Group.path.in_(paths))
    )
    return role_grants(ctx.db, role_ids, clock=ctx.svc.clock)


def create(
    ctx: Context, name: str, parent: str | None = None, description: str | None = None
) -> Group:
    """A group at the top level, or below ``parent`` (a path such as staff/it)."""
    ctx.require("groups:groups:create")
    group = ctx.directory.create_group(name, parent, description)
    ctx.audit("group.created", group.path, group_id=group.id)
    return group


def add_member(
    ctx: Context, group: Group, user: User, *, expires_at: datetime | None = None
) -> GroupMember:
    """Add ``user`` to the group, permanently or until ``expires_at``."""
    ctx.require("users:groups:assign", user.id)
    ctx.require_holds(group_grants(ctx, group.id), user.id)
    row = ctx.directory.add_member(group, user, expires_at=expires_at, granted_by=ctx.actor.user_id)
    ctx.audit(
        "group.member_added",
        user.uuid,
        group=group.path,
        expires_at=row.expires_at.isoformat() if row.expires_at else None,
    )
    return row


def remove_member(ctx: Context, group: Group, user: User) -> bool:
    ctx.require("users:groups:assign", user.id)
    removed = ctx.directory.remove_member(group, user)
    ctx.audit("group.member_removed", user.uuid, group=group.path, removed=removed)
    return removed


def assign_role(ctx: Context, group: Group, role: Role) -> bool:
    """Give every member of the group (and of its subgroups) the role."""
    ctx.require("groups:roles:assign")
    ctx.require_holds(role_grants(ctx.db, [role.id], clock=ctx.svc.clock))
    added = ctx.directory.assign_group_role(group, role)
    ctx.audit("group.role_assigned", group.path, role=role.name, client_id=role.client_id)
    return added


def move(ctx: Context, group: Group, new_parent: Group | None) -> Group:
    """Move the group with its subgroups under ``new_parent`` (None: the top level)."""
    ctx.require("groups:groups:update")
    if new_parent is not None:
        ctx.require_holds(group_grants(ctx, new_parent.id))
    old = group.path
    group = ctx.directory.move_group(group, new_parent)
    ctx.audit("group.moved", group.path, old_path=old)
    return group


def set_description(ctx: Context, group: Group, description: str | None) -> Group:
    ctx.require("groups:groups:update")
    old, group.description = group.description, description
    ctx.db.flush()
    ctx.audit("group.updated", group.path, description=[old, description])
    return group


def unassign_role(ctx: Context, group: Group, role: Role) -> bool:
    ctx.require("groups:roles:assign")
    removed = ctx.directory.unassign_group_role(group, role)
    ctx.audit("group.role_unassigned", group.path, role=role.name, client_id=role.client_id)
    return removed


def delete(ctx: Context, group: Group) -> None:
    """Delete a group without subgroups (its memberships and group roles go with it)."""
    ctx.require("groups:groups:delete")
    path = group.path
    ctx.directory.delete_group(group)
    ctx.audit("group.deleted", path)
