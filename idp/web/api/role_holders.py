"""``GET /api/v1/roles/{role_id}/holders``: who holds a role directly, one item per assignment
with its delegation scope (company / department subtree) and expiry: the "Holders" section of
the console's role page. Permissions: ``roles:roles:read``; only users over whom the caller
holds ``users:roles:read`` are listed (see ``idp.manage.roles.holders``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...manage import roles as manage_roles
from .common import ApiModel, Page, PageQuery
from .framework import Call, Reply, operation
from .shapes import path_id


class RoleHolderOut(ApiModel):
    user_id: str = Field(description="The user's id (uuid)")
    username: str
    scope_company_id: int | None = Field(description="Only over this company's users")
    scope_department_id: int | None = Field(description="Only over this department subtree")
    expires_at: datetime | None = Field(description="A temporary assignment ends here")
    created_at: datetime | None


class RoleHolderPage(Page[RoleHolderOut]):
    pass


@operation(
    "GET",
    "/roles/{role_id}/holders",
    tag="roles",
    summary="List who holds a role directly",
    query=PageQuery,
    response=RoleHolderPage,
    description="One item per direct assignment (not through groups), by username, with its "
    "delegation scope and expiry; ended temporary assignments are left out. Only users over "
    "whom the caller holds users:roles:read are listed.",
)
def list_role_holders(call: Call, role_id: str) -> Reply:
    q: PageQuery = call.query
    with call.transaction() as ctx:
        role = manage_roles.get(ctx, path_id(role_id, "role"))
        rows, total = manage_roles.holders(ctx, role, page=q.page, per_page=q.per_page)
        items = [
            RoleHolderOut(
                user_id=user.uuid,
                username=user.username,
                scope_company_id=ur.scope_company_id,
                scope_department_id=ur.scope_department_id,
                expires_at=ur.expires_at,
                created_at=ur.created_at,
            )
            for user, ur in rows
        ]
    return Reply(body=RoleHolderPage(items=items, total=total, page=q.page, per_page=q.per_page))
