"""Groups: list, read, create, update, move, delete, members, group roles.

Permissions: ``groups:groups:read`` / ``create`` / ``update`` / ``delete``,
``groups:roles:assign`` (give and take a group's roles), and ``users:groups:assign`` over the
member. Whatever hands out roles (a membership, a group role, a move under a parent with roles)
also needs every permission those roles carry. Members are listed only as far as the actor may
read them (``users:accounts:read``, delegation scopes included); a user the actor may not see
is "not found", never "forbidden".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, false, func, select, true

from ..errors import NotFound, ValidationError
from ..storage.models import Group, GroupMember, GroupRole, Role, User
from ..storage.rbac import Authorizer, group_role_ids, role_grants
from .context import UNSET, Context, Unset


def group_grants(ctx: Context, group_id: int) -> frozenset[str]:
    """The permissions membership of the group gives: its roles and its ancestors' roles."""
    return role_grants(ctx.db, group_role_ids(ctx.db, group_id) or [], clock=ctx.svc.clock)


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
    grants = group_grants(ctx, group.id)
    ctx.require_holds(grants, user.id)
    # A group's roles apply to its members everywhere, not only inside the actor's scope.
    ctx.require_holds_within(grants)
    ctx.require_holds_roles(group_role_ids(ctx.db, group.id) or [], user.id, "users:groups:assign")
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
    ctx.require_kept("users:groups:assign", user.id)
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
    ctx.require_kept("groups:groups:update")
    ctx.audit("group.moved", group.path, old_path=old)
    return group


def set_description(ctx: Context, group: Group, description: str | None) -> Group:
    ctx.require("groups:groups:update")
    old, group.description = group.description, description
    ctx.db.flush()
    ctx.audit("group.updated", group.path, description=[old, description])
    return group


def rename(ctx: Context, group: Group, name: str) -> Group:
    """Rename the group; its subgroups' paths follow."""
    ctx.require("groups:groups:update")
    old = group.path
    ctx.directory.rename_group(group, name)
    ctx.audit("group.renamed", group.path, group_id=group.id, old_path=old)
    return group


def update(
    ctx: Context,
    group: Group,
    *,
    name: str | Unset = UNSET,
    description: str | None | Unset = UNSET,
) -> Group:
    """What a merge patch asks: a new name and / or description (``None`` clears it). The
    permission is checked even when nothing changes."""
    ctx.require("groups:groups:update")
    if name is not UNSET and name != group.name:
        rename(ctx, group, name)
    if description is not UNSET and description != group.description:
        set_description(ctx, group, description)
    return group


def unassign_role(ctx: Context, group: Group, role: Role) -> bool:
    """Take the role from the group (its members keep what else they hold)."""
    ctx.require("groups:roles:assign")
    removed = ctx.directory.unassign_group_role(group, role)
    ctx.require_kept("groups:roles:assign")
    ctx.audit("group.role_unassigned", group.path, role=role.name, client_id=role.client_id)
    return removed


def delete(ctx: Context, group: Group) -> None:
    """Delete a group without subgroups (its memberships and group roles go with it)."""
    ctx.require("groups:groups:delete")
    path, group_id = group.path, group.id
    members = int(ctx.db.scalar(select(func.count()).where(GroupMember.group_id == group_id)) or 0)
    ctx.directory.delete_group(group)
    ctx.require_kept("groups:groups:delete")
    ctx.audit("group.deleted", path, group_id=group_id, members=members)


def set_external_id(ctx: Context, group: Group, external_id: str | None) -> Group:
    """The id a provisioning client (SCIM ``externalId``) knows the group by; None clears it."""
    ctx.require("groups:groups:update")
    if external_id is not None and (
        not isinstance(external_id, str) or len(external_id) > 255 or not external_id.strip()
    ):
        raise ValidationError("external_id: 1-255 characters")
    if group.external_id != external_id:
        group.external_id = external_id
        ctx.db.flush()
        ctx.audit("group.updated", group.path, group_id=group.id, fields=["external_id"])
    return group


# --- reading -------------------------------------------------------------------------------------


def find(ctx: Context, group_id: int) -> Group:
    """The group with this id, or NotFound (no permission check: callers check theirs)."""
    group = ctx.db.get(Group, group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group


def get(ctx: Context, group_id: int) -> Group:
    ctx.require("groups:groups:read")
    return find(ctx, group_id)


@dataclass(frozen=True)
class GroupQuery:
    q: str | None = None  # contained in the path
    parent_id: int | None = None
    top_level: bool = False
    page: int = 1
    per_page: int = 25


def search(ctx: Context, query: GroupQuery) -> tuple[list[Group], int]:
    """(groups of the page ordered by path, total matching)."""
    ctx.require("groups:groups:read")
    where = []
    if query.q:
        where.append(Group.path.contains(query.q, autoescape=True))
    if query.parent_id is not None:
        where.append(Group.parent_id == query.parent_id)
    if query.top_level:
        where.append(Group.parent_id.is_(None))
    total = ctx.db.scalar(select(func.count(Group.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Group)
        .where(*where)
        .order_by(Group.path)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    )
    return list(rows), int(total)


def roles_of(ctx: Context, group_ids: list[int]) -> dict[int, list[Role]]:
    """The roles given directly to each group (not its ancestors'), by group id."""
    out: dict[int, list[Role]] = {g: [] for g in group_ids}
    if not group_ids:
        return out
    for group_id, role in ctx.db.execute(
        select(GroupRole.group_id, Role)
        .join(Role, Role.id == GroupRole.role_id)
        .where(GroupRole.group_id.in_(group_ids))
        .order_by(Role.name, Role.id)
    ):
        out[group_id].append(role)
    return out


def readable_users(ctx: Context) -> ColumnElement[bool]:
    """A WHERE clause on ``User``: the users the actor may read."""
    kind = ctx.actor.kind
    if kind == "operator":
        return true()
    if kind == "user" and ctx.actor.user_id is not None:
        auth = Authorizer(ctx.db, ctx.svc.store, ctx.svc.clock)
        return auth.user_filter(ctx.actor.user_id, "users:accounts:read")
    return true() if ctx.allowed("users:accounts:read") else false()


def members(
    ctx: Context, group: Group, *, page: int = 1, per_page: int = 25
) -> tuple[list[tuple[User, GroupMember]], int]:
    """The group's current direct members the actor may read, by username, with their
    membership (a temporary one that ended grants nothing and is not listed)."""
    ctx.require("groups:groups:read")
    live = GroupMember.expires_at.is_(None) | (GroupMember.expires_at > ctx.svc.clock.utcnow())
    where = [GroupMember.group_id == group.id, live, readable_users(ctx)]
    base = select(User, GroupMember).join(GroupMember, GroupMember.user_id == User.id)
    total = ctx.db.scalar(
        select(func.count(User.id)).join(GroupMember, GroupMember.user_id == User.id).where(*where)
    )
    rows = ctx.db.execute(
        base.where(*where).order_by(User.username).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return [(u, m) for u, m in rows], int(total or 0)


def member_user(ctx: Context, user_ref: str) -> User:
    """A user by their public id (uuid) for a membership change; NotFound when there is no
    such user or the actor may neither read them nor manage their groups (no existence leak)."""
    user = None if "\x00" in user_ref else ctx.db.scalar(select(User).where(User.uuid == user_ref))
    if user is None or not (
        ctx.allowed("users:accounts:read", user.id) or ctx.allowed("users:groups:assign", user.id)
    ):
        raise NotFound(f"no user {user_ref!r}")
    return user
