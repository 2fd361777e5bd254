"""``/api/v1/groups``: nested groups, their members (temporary or permanent) and their roles.

A group is addressed by its id; ``path`` ("staff/it") is in its representation. Members are
addressed by the user's public id (``uuid``, the OIDC ``sub``). Permissions: see
``idp.manage.groups``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...errors import NotFound
from ...manage import Context
from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...storage.models import Group, GroupMember, User
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, etag_of, operation
from .shapes import (
    DateTimeIn,
    Description,
    GroupName,
    Id,
    QueryId,
    Text,
    created,
    data_refusal,
    given,
    path_id,
)

TAG = "groups"


class GroupsQuery(PageQuery):
    q: Text | None = Field(None, max_length=200, description="contained in the path")
    parent_id: QueryId | None = Field(None, description="only the direct subgroups of this group")
    top_level: bool = Field(False, description="only groups without a parent")


class RoleRef(ApiModel):
    id: int
    name: str
    client_id: str | None


class GroupOut(ApiModel):
    id: int
    name: str
    path: str = Field(description='the names from the root, "/"-joined: staff/it')
    parent_id: int | None
    description: str | None
    roles: list[RoleRef] = Field(description="roles given to this group directly")


class GroupPage(Page[GroupOut]):
    pass


class GroupIn(Strict):
    name: GroupName
    parent_id: Id | None = Field(None, description="create it below this group")
    description: Description | None = None


class GroupPatch(Strict):
    """A JSON merge patch: absent fields stay; ``parent_id: null`` moves to the top level,
    ``description: null`` clears it."""

    name: GroupName = Field(None, description="rename (the subgroups' paths follow)")
    parent_id: Id | None = Field(None, description="move under this group (null: top level)")
    description: Description | None = None


class MemberOut(ApiModel):
    user_id: str = Field(description="the user's public id (uuid)")
    username: str
    display_name: str | None
    expires_at: datetime | None = Field(description="a temporary membership ends here")
    added_at: datetime


class MemberPage(Page[MemberOut]):
    pass


class MemberIn(Strict):
    expires_at: DateTimeIn | None = Field(
        None, description="end of a temporary membership (RFC 3339; already past: 409)"
    )


def _out(ctx: Context, group: Group) -> GroupOut:
    return _outs(ctx, [group])[0]


def _outs(ctx: Context, groups: list[Group]) -> list[GroupOut]:
    roles = manage_groups.roles_of(ctx, [g.id for g in groups])
    return [
        GroupOut(
            id=g.id,
            name=g.name,
            path=g.path,
            parent_id=g.parent_id,
            description=g.description,
            roles=[RoleRef(id=r.id, name=r.name, client_id=r.client_id) for r in roles[g.id]],
        )
        for g in groups
    ]


def _member(user: User, row: GroupMember) -> MemberOut:
    return MemberOut(
        user_id=user.uuid,
        username=user.username,
        display_name=user.display_name,
        expires_at=row.expires_at,
        added_at=row.created_at,
    )


@operation("GET", "/groups", tag=TAG, summary="List groups", query=GroupsQuery, response=GroupPage)
def list_groups(call: Call) -> Reply:
    """Groups ordered by path (``groups:groups:read``)."""
    q: GroupsQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_groups.search(
            ctx,
            manage_groups.GroupQuery(
                q=q.q,
                parent_id=q.parent_id,
                top_level=q.top_level,
                page=q.page,
                per_page=q.per_page,
            ),
        )
        items = _outs(ctx, rows)
    return Reply(body=GroupPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/groups",
    tag=TAG,
    summary="Create a group",
    body=GroupIn,
    response=GroupOut,
    status=201,
    etag=True,
    errors=(404, 409),
)
def create_group(call: Call) -> Reply:
    """``groups:groups:create`` (``groups:groups:read`` to name a parent). 404: no such
    parent; 409: the path exists."""
    body: GroupIn = call.body
    with call.transaction() as ctx:
        parent = None
        if body.parent_id is not None:
            parent = manage_groups.get(ctx, body.parent_id)
        with data_refusal():
            group = manage_groups.create(
                ctx, body.name, parent.path if parent else None, body.description
            )
        out = _out(ctx, group)
    return created(f"/groups/{out.id}", out)


@operation(
    "GET", "/groups/{group_id}", tag=TAG, summary="Read a group", response=GroupOut, etag=True
)
def read_group(call: Call, group_id: str) -> Reply:
    """``groups:groups:read``."""
    with call.transaction() as ctx:
        out = _out(ctx, manage_groups.get(ctx, path_id(group_id, "group")))
    return Reply(body=out)


@operation(
    "PATCH",
    "/groups/{group_id}",
    tag=TAG,
    summary="Rename, describe or move a group",
    body=GroupPatch,
    response=GroupOut,
    etag=True,
    errors=(409,),
)
def update_group(call: Call, group_id: str) -> Reply:
    """``groups:groups:update`` (``groups:groups:read`` to name a new parent). 409: the new
    path exists, or the move would put the group under itself or one of its subgroups."""
    changes = given(call.body)
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        call.if_match(etag_of(_out(ctx, group)))
        fields = {k: v for k, v in changes.items() if k in ("name", "description")}
        with data_refusal():
            manage_groups.update(ctx, group, **fields)
            if "parent_id" in changes:
                parent_id = changes["parent_id"]
                parent = manage_groups.get(ctx, parent_id) if parent_id is not None else None
                if (parent.id if parent else None) != group.parent_id:
                    group = manage_groups.move(ctx, group, parent)
        out = _out(ctx, group)
    return Reply(body=out)


@operation(
    "DELETE",
    "/groups/{group_id}",
    tag=TAG,
    summary="Delete a group",
    status=204,
    etag=True,
    errors=(409,),
)
def delete_group(call: Call, group_id: str) -> Reply:
    """``groups:groups:delete``; its memberships and role grants go with it. 409: it has
    subgroups (move or delete them first)."""
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        call.if_match(etag_of(_out(ctx, group)))
        manage_groups.delete(ctx, group)
    return Reply(status=204)


@operation(
    "GET",
    "/groups/{group_id}/members",
    tag=TAG,
    summary="List a group's members",
    query=PageQuery,
    response=MemberPage,
)
def list_members(call: Call, group_id: str) -> Reply:
    """Direct members by username (``groups:groups:read``), only those the caller may read
    (``users:accounts:read``, delegation scopes included)."""
    q: PageQuery = call.query
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        rows, total = manage_groups.members(ctx, group, page=q.page, per_page=q.per_page)
        items = [_member(u, m) for u, m in rows]
    return Reply(body=MemberPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "PUT",
    "/groups/{group_id}/members/{user_id}",
    tag=TAG,
    summary="Add a member (or change the end of their membership)",
    body=MemberIn,
    response=MemberOut,
)
def put_member(call: Call, group_id: str, user_id: str) -> Reply:
    """``users:groups:assign`` over the user, and every permission the group's roles (its
    ancestors' included) carry. Without ``expires_at`` the membership is permanent. 404: no
    such group, or no such user the caller may see."""
    body: MemberIn = call.body
    with call.transaction() as ctx:
        group = manage_groups.find(ctx, path_id(group_id, "group"))
        user = manage_groups.member_user(ctx, user_id)
        with data_refusal():
            row = manage_groups.add_member(ctx, group, user, expires_at=body.expires_at)
        out = _member(user, row)
    return Reply(body=out)


@operation(
    "DELETE",
    "/groups/{group_id}/members/{user_id}",
    tag=TAG,
    summary="Remove a member",
    status=204,
    errors=(409,),
)
def delete_member(call: Call, group_id: str, user_id: str) -> Reply:
    """``users:groups:assign`` over the user. 404 also when the user is not a member; 409
    when it would take ``users:groups:assign`` from the caller."""
    with call.transaction() as ctx:
        group = manage_groups.find(ctx, path_id(group_id, "group"))
        user = manage_groups.member_user(ctx, user_id)
        if not manage_groups.remove_member(ctx, group, user):
            raise NotFound(f"{user.username} is not a member of {group.path}")
    return Reply(status=204)


@operation(
    "PUT",
    "/groups/{group_id}/roles/{role_id}",
    tag=TAG,
    summary="Give the group a role",
    response=GroupOut,
)
def put_group_role(call: Call, group_id: str, role_id: str) -> Reply:
    """``groups:roles:assign`` and every permission the role carries; members of the group and
    of its subgroups hold it."""
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        role = manage_roles.get(ctx, path_id(role_id, "role"))
        manage_groups.assign_role(ctx, group, role)
        out = _out(ctx, group)
    return Reply(body=out)


@operation(
    "DELETE",
    "/groups/{group_id}/roles/{role_id}",
    tag=TAG,
    summary="Take a role from the group",
    response=GroupOut,
    errors=(409,),
)
def delete_group_role(call: Call, group_id: str, role_id: str) -> Reply:
    """``groups:roles:assign``. 404 also when the group does not hold the role; 409 when it
    would take ``groups:roles:assign`` from the caller."""
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        role = manage_roles.get(ctx, path_id(role_id, "role"))
        if not manage_groups.unassign_role(ctx, group, role):
            raise NotFound(f"group {group.path} does not hold role {role.name}")
        out = _out(ctx, group)
    return Reply(body=out)
