"""``/api/v1/roles`` and ``/api/v1/permission-groups``: roles with their permissions, permission
groups and composites, and the permission groups themselves. Permissions: see
``idp.manage.roles``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...errors import NotFound
from ...manage import Context
from ...manage import permission_groups as manage_pgs
from ...manage import roles as manage_roles
from ...storage.directory import RoleInUse
from ...storage.models import PermissionGroup, Role
from .common import ApiModel, Page, PageQuery, Strict
from .framework import ApiProblem, Call, Reply, etag_of, operation
from .shapes import Description, Name, Permission, Text, created, given, path_id

TAG = "roles"


# --- shapes --------------------------------------------------------------------------------------


class RolesQuery(PageQuery):
    q: Text | None = Field(None, max_length=200, description="contained in the name")
    client_id: Text | None = Field(None, max_length=255, description="only this client's roles")
    kind: Literal["global", "client"] | None = Field(
        None, description="only global roles, or only client roles"
    )


class RoleRef(ApiModel):
    id: int
    name: str
    client_id: str | None


class PermissionGroupRef(ApiModel):
    id: int
    name: str


class RoleSummary(ApiModel):
    id: int
    name: str
    description: str | None
    client_id: str | None = Field(description="null: a global role")
    template: str | None = Field(description="the role template it was seeded from")
    permissions: list[str] = Field(description="held directly")


class RoleOut(RoleSummary):
    permission_groups: list[PermissionGroupRef]
    composites: list[RoleRef] = Field(description="roles this role includes")
    effective_permissions: list[str] = Field(
        description="every IdP permission it carries, through permission groups and "
        "composites included (none for a client role)"
    )


class RolePage(Page[RoleSummary]):
    pass


class RoleIn(Strict):
    name: Name
    description: Description | None = None
    client_id: Text | None = Field(
        None, min_length=1, max_length=255, description="a client role (null: global)"
    )
    permissions: list[Permission] = Field([], max_length=100)


class RolePatch(Strict):
    description: Description | None = None


class PermissionsIn(Strict):
    permissions: list[Permission] = Field(min_length=1, max_length=100)


class RoleUsage(ApiModel):
    users: list[str]
    groups: list[str]
    included_by_roles: list[str]
    client_service_accounts: list[str]
    pending_requests: list[int]


class DeleteRoleQuery(Strict):
    force: bool = Field(False, description="delete it with its assignments even while used")


class PermissionGroupsQuery(PageQuery):
    q: Text | None = Field(None, max_length=200, description="contained in the name")


class PermissionGroupOut(ApiModel):
    id: int
    name: str
    description: str | None
    permissions: list[str]


class PermissionGroupDetails(PermissionGroupOut):
    roles: list[RoleRef] = Field(description="the roles that include it")


class PermissionGroupPage(Page[PermissionGroupOut]):
    pass


class PermissionGroupIn(Strict):
    name: Name
    description: Description | None = None
    permissions: list[Permission] = Field([], max_length=100)


class PermissionGroupPatch(Strict):
    """A JSON merge patch; ``permissions`` replaces the whole list."""

    name: Name = Field(None)
    description: Description | None = None
    permissions: list[Permission] = Field(None, max_length=100)


# --- rendering -----------------------------------------------------------------------------------


def _ref(role: Role) -> RoleRef:
    return RoleRef(id=role.id, name=role.name, client_id=role.client_id)


def _summaries(ctx: Context, roles: list[Role]) -> list[RoleSummary]:
    perms = manage_roles.permissions_of(ctx, [r.id for r in roles])
    return [
        RoleSummary(
            id=r.id,
            name=r.name,
            description=r.description,
            client_id=r.client_id,
            template=r.template,
            permissions=perms[r.id],
        )
        for r in roles
    ]


def _out(ctx: Context, role: Role) -> RoleOut:
    d = manage_roles.details(ctx, role)
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        client_id=role.client_id,
        template=role.template,
        permissions=d.permissions,
        permission_groups=[PermissionGroupRef(id=p.id, name=p.name) for p in d.permission_groups],
        composites=[_ref(c) for c in d.composites],
        effective_permissions=d.effective,
    )


def _pg(pg: PermissionGroup) -> PermissionGroupOut:
    return PermissionGroupOut(
        id=pg.id, name=pg.name, description=pg.description, permissions=list(pg.permissions or [])
    )


def _pg_details(ctx: Context, pg: PermissionGroup) -> PermissionGroupDetails:
    roles = manage_pgs.roles_of(ctx, pg)
    return PermissionGroupDetails(**_pg(pg).model_dump(), roles=[_ref(r) for r in roles])


def _role(ctx: Context, role_id: str) -> Role:
    return manage_roles.get(ctx, path_id(role_id, "role"))


# --- roles ---------------------------------------------------------------------------------------


@operation("GET", "/roles", tag=TAG, summary="List roles", query=RolesQuery, response=RolePage)
def list_all_roles(call: Call) -> Reply:
    """Global roles first, then client roles by client (``roles:roles:read``)."""
    q: RolesQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_roles.search(
            ctx,
            manage_roles.RoleQuery(
                q=q.q, client_id=q.client_id, kind=q.kind, page=q.page, per_page=q.per_page
            ),
        )
        items = _summaries(ctx, rows)
    return Reply(body=RolePage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/roles",
    tag=TAG,
    summary="Create a role",
    body=RoleIn,
    response=RoleOut,
    status=201,
    etag=True,
    errors=(404, 409),
)
def create_role(call: Call) -> Reply:
    """``roles:roles:create``; a global role's permissions must all be held by the caller
    (globally: a delegated administrator cannot create global roles). 404: no such client;
    409: the name is taken (per client)."""
    body: RoleIn = call.body
    with call.transaction() as ctx:
        role = manage_roles.create(
            ctx,
            body.name,
            body.permissions,
            description=body.description,
            client_id=body.client_id,
        )
        out = _out(ctx, role)
    return created(f"/roles/{out.id}", out)


@operation("GET", "/roles/{role_id}", tag=TAG, summary="Read a role", response=RoleOut, etag=True)
def read_role(call: Call, role_id: str) -> Reply:
    """``roles:roles:read``."""
    with call.transaction() as ctx:
        out = _out(ctx, _role(ctx, role_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/roles/{role_id}",
    tag=TAG,
    summary="Change a role's description",
    body=RolePatch,
    response=RoleOut,
    etag=True,
)
def update_role(call: Call, role_id: str) -> Reply:
    """``roles:roles:update``."""
    changes = given(call.body)
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        call.if_match(etag_of(_out(ctx, role)))
        manage_roles.update(ctx, role, **changes)
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "DELETE",
    "/roles/{role_id}",
    tag=TAG,
    summary="Delete a role",
    query=DeleteRoleQuery,
    status=204,
    etag=True,
    errors=(409,),
)
def delete_role(call: Call, role_id: str) -> Reply:
    """``roles:roles:delete``. While users, groups, roles, client service accounts or pending
    requests use the role, 409 with ``usage`` (what uses it), unless ``force=true``: then its
    assignments go too. Also 409 when it would take ``roles:roles:delete`` from the caller."""
    force = call.query.force
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        call.if_match(etag_of(_out(ctx, role)))
        try:
            manage_roles.delete(ctx, role, force=force)
        except RoleInUse as exc:
            raise ApiProblem(
                409, "Conflict", str(exc), kind="role-in-use", extensions={"usage": exc.usage}
            ) from None
    return Reply(status=204)


@operation(
    "GET",
    "/roles/{role_id}/usage",
    tag=TAG,
    summary="What uses a role",
    response=RoleUsage,
)
def role_usage(call: Call, role_id: str) -> Reply:
    """Users, groups, including roles, client service accounts and pending access requests
    (``roles:roles:read``)."""
    with call.transaction() as ctx:
        usage = manage_roles.usage(ctx, _role(ctx, role_id))
    return Reply(body=RoleUsage(**usage.as_dict()))


@operation(
    "POST",
    "/roles/{role_id}/permissions",
    tag=TAG,
    summary="Add permissions to a role",
    body=PermissionsIn,
    response=RoleOut,
)
def add_role_permissions(call: Call, role_id: str) -> Reply:
    """``roles:roles:update``, and (for a global role) holding every added permission."""
    body: PermissionsIn = call.body
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        manage_roles.add_permissions(ctx, role, body.permissions)
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "DELETE",
    "/roles/{role_id}/permissions/{permission}",
    tag=TAG,
    summary="Remove a permission from a role",
    response=RoleOut,
    errors=(409,),
)
def remove_role_permission(call: Call, role_id: str, permission: str) -> Reply:
    """``roles:roles:update``. 404 also when the role does not hold the permission directly;
    409 when it would take ``roles:roles:update`` from the caller."""
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        if not manage_roles.remove_permission(ctx, role, permission):
            raise NotFound(f"role {role.name} does not hold {permission} directly")
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "PUT",
    "/roles/{role_id}/composites/{child_id}",
    tag=TAG,
    summary="Make a role include another",
    response=RoleOut,
    errors=(409,),
)
def put_composite(call: Call, role_id: str, child_id: str) -> Reply:
    """``roles:roles:update``, and holding every permission the included role carries. 409:
    the inclusion would make a cycle (A includes B includes A)."""
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        child = _role(ctx, child_id)
        manage_roles.add_composite(ctx, role, child)
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "DELETE",
    "/roles/{role_id}/composites/{child_id}",
    tag=TAG,
    summary="Stop a role including another",
    response=RoleOut,
    errors=(409,),
)
def delete_composite(call: Call, role_id: str, child_id: str) -> Reply:
    """``roles:roles:update``. 404 also when the role does not include it."""
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        child = _role(ctx, child_id)
        if not manage_roles.remove_composite(ctx, role, child):
            raise NotFound(f"role {role.name} does not include {child.name}")
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "PUT",
    "/roles/{role_id}/permission-groups/{group_id}",
    tag=TAG,
    summary="Add a permission group to a role",
    response=RoleOut,
)
def put_role_permission_group(call: Call, role_id: str, group_id: str) -> Reply:
    """``roles:roles:update`` and ``roles:permission_groups:read``, and (for a global role)
    holding every permission of the group."""
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        pg = manage_pgs.get(ctx, path_id(group_id, "permission group"))
        manage_pgs.attach(ctx, role, pg)
        out = _out(ctx, role)
    return Reply(body=out)


@operation(
    "DELETE",
    "/roles/{role_id}/permission-groups/{group_id}",
    tag=TAG,
    summary="Remove a permission group from a role",
    response=RoleOut,
    errors=(409,),
)
def delete_role_permission_group(call: Call, role_id: str, group_id: str) -> Reply:
    """``roles:roles:update``. 404 also when the role does not include the group."""
    with call.transaction() as ctx:
        role = _role(ctx, role_id)
        pg = manage_pgs.get(ctx, path_id(group_id, "permission group"))
        if not manage_pgs.detach(ctx, role, pg):
            raise NotFound(f"role {role.name} does not include permission group {pg.name}")
        out = _out(ctx, role)
    return Reply(body=out)


# --- permission groups ---------------------------------------------------------------------------


def _permission_group(ctx: Context, group_id: str) -> PermissionGroup:
    return manage_pgs.get(ctx, path_id(group_id, "permission group"))


@operation(
    "GET",
    "/permission-groups",
    tag=TAG,
    summary="List permission groups",
    query=PermissionGroupsQuery,
    response=PermissionGroupPage,
)
def list_permission_groups(call: Call) -> Reply:
    """By name (``roles:permission_groups:read``)."""
    q: PermissionGroupsQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_pgs.search(ctx, q=q.q, page=q.page, per_page=q.per_page)
        items = [_pg(pg) for pg in rows]
    return Reply(
        body=PermissionGroupPage(items=items, total=total, page=q.page, per_page=q.per_page)
    )


@operation(
    "POST",
    "/permission-groups",
    tag=TAG,
    summary="Create a permission group",
    body=PermissionGroupIn,
    response=PermissionGroupDetails,
    status=201,
    etag=True,
    errors=(409,),
)
def create_permission_group(call: Call) -> Reply:
    """``roles:permission_groups:create``, holding every permission in it. 409: the name is
    taken."""
    body: PermissionGroupIn = call.body
    with call.transaction() as ctx:
        pg = manage_pgs.create(ctx, body.name, body.permissions, body.description)
        out = _pg_details(ctx, pg)
    return created(f"/permission-groups/{out.id}", out)


@operation(
    "GET",
    "/permission-groups/{group_id}",
    tag=TAG,
    summary="Read a permission group",
    response=PermissionGroupDetails,
    etag=True,
)
def read_permission_group(call: Call, group_id: str) -> Reply:
    """``roles:permission_groups:read``."""
    with call.transaction() as ctx:
        out = _pg_details(ctx, _permission_group(ctx, group_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/permission-groups/{group_id}",
    tag=TAG,
    summary="Rename a permission group, change its permissions or description",
    body=PermissionGroupPatch,
    response=PermissionGroupDetails,
    etag=True,
    errors=(409,),
)
def update_permission_group(call: Call, group_id: str) -> Reply:
    """``roles:permission_groups:update``; every role including the group changes with it, so
    added permissions need holding. 409: the name is taken, or the change would take
    ``roles:permission_groups:update`` from the caller."""
    changes = given(call.body)
    with call.transaction() as ctx:
        pg = _permission_group(ctx, group_id)
        call.if_match(etag_of(_pg_details(ctx, pg)))
        manage_pgs.patch(ctx, pg, **changes)
        out = _pg_details(ctx, pg)
    return Reply(body=out)


@operation(
    "DELETE",
    "/permission-groups/{group_id}",
    tag=TAG,
    summary="Delete a permission group",
    status=204,
    etag=True,
    errors=(409,),
)
def delete_permission_group(call: Call, group_id: str) -> Reply:
    """``roles:permission_groups:delete``; the roles that included it lose its permissions.
    409 when that would take ``roles:permission_groups:delete`` from the caller."""
    with call.transaction() as ctx:
        pg = _permission_group(ctx, group_id)
        call.if_match(etag_of(_pg_details(ctx, pg)))
        manage_pgs.delete(ctx, pg)
    return Reply(status=204)
