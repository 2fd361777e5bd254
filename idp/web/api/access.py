"""``/api/v1/access-requests`` and ``/api/v1/grants``: access requests waiting for (or past) a
decision, and the temporary role assignments and group memberships (``docs/api.md``, "Access
requests and temporary grants").

Approving or denying is a person's decision (``decided_by`` names a user): it needs a user's
access token; a service account's token is refused with 403. No mail is sent on a decision
(none exists for access requests yet; see ``idp.manage.access``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from flask import request
from pydantic import Field

from ...errors import NotFound
from ...manage import access
from .common import EXACT_QUERY, UUID, ApiModel, Page, PageQuery, matching
from .framework import Call, Reply, operation

UserId = Annotated[str, *matching(UUID)]


class PartyOut(ApiModel):
    id: str = Field(description="the user's id (uuid)")
    username: str


class AccessRequestOut(ApiModel):
    id: int
    user: PartyOut
    kind: Literal["role", "group"]
    role: str | None
    role_client_id: str | None
    group: str | None = Field(description="the group's path")
    expires_at: datetime | None = Field(description="when the granted access would end")
    reason: str | None
    status: Literal["pending", "approved", "rejected", "cancelled"]
    requested_by: PartyOut | None
    decided_by: PartyOut | None
    decided_at: datetime | None
    created_at: datetime | None


class AccessRequestPage(Page[AccessRequestOut]):
    pass


class AccessRequestsQuery(PageQuery):
    model_config = EXACT_QUERY

    status: Literal["pending", "approved", "rejected", "cancelled"] = None
    user: UserId = Field(None, description="the requesting user's id (uuid)")
    kind: Literal["role", "group"] = None


class GrantOut(ApiModel):
    id: str = Field(description='"role-<assignment>" or "group-<group>-<user>"')
    kind: Literal["role", "group"]
    user: PartyOut
    role: str | None
    role_client_id: str | None
    group: str | None
    scope_company_id: int | None
    scope_department_id: int | None
    expires_at: datetime
    expired: bool
    granted_by: PartyOut | None
    created_at: datetime | None


class GrantPage(Page[GrantOut]):
    pass


class GrantsQuery(PageQuery):
    model_config = EXACT_QUERY

    user: UserId = Field(None, description="the holder's id (uuid)")
    kind: Literal["role", "group"] = None
    state: Literal["active", "expired", "all"] = Field(
        "active", description="expired grants grant nothing; they stay until purged"
    )


def _party(p: access.Party | None) -> PartyOut | None:
    return PartyOut(id=p.id, username=p.username) if p is not None else None


def _request_out(v: access.RequestView) -> AccessRequestOut:
    return AccessRequestOut(
        id=v.id,
        user=_party(v.user),
        kind=v.kind,
        role=v.role,
        role_client_id=v.role_client_id,
        group=v.group,
        expires_at=v.expires_at,
        reason=v.reason,
        status=v.status,
        requested_by=_party(v.requested_by),
        decided_by=_party(v.decided_by),
        decided_at=v.decided_at,
        created_at=v.created_at,
    )


def _request_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise NotFound("no such access request")
    return int(raw)


@operation(
    "GET",
    "/access-requests",
    tag="access",
    summary="List access requests, newest first",
    query=AccessRequestsQuery,
    response=AccessRequestPage,
    description="Those of users over whom the caller holds users:access:read or "
    "users:access:approve, and those of the caller's reports. `status=pending` is the queue.",
)
def list_access_requests(call: Call) -> Reply:
    q: AccessRequestsQuery = call.query
    with call.transaction() as ctx:
        views, total = access.list_requests(
            ctx,
            access.AccessQuery(
                status=q.status, user_uuid=q.user, kind=q.kind, page=q.page, per_page=q.per_page
            ),
        )
    items = [_request_out(v) for v in views]
    return Reply(body=AccessRequestPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "GET",
    "/access-requests/{request_id}",
    tag="access",
    summary="Read an access request",
    response=AccessRequestOut,
)
def read_access_request(call: Call, request_id: str) -> Reply:
    number = _request_id(request_id)
    with call.transaction() as ctx:
        view = access.get_request(ctx, number)
    return Reply(body=_request_out(view))


def _reason() -> str | None:
    """The optional JSON body ``{"reason": "..."}`` of a decision: kept in its audit row
    (``idp.manage.access.decide`` checks it)."""
    data = request.get_json(silent=True) if request.mimetype == "application/json" else None
    return data.get("reason") if isinstance(data, dict) else None


def _decide(call: Call, request_id: str, approve: bool) -> Reply:
    number = _request_id(request_id)
    note = _reason()
    with call.transaction() as ctx:
        view = access.decide(ctx, number, approve=approve, note=note)
    return Reply(body=_request_out(view))


@operation(
    "POST",
    "/access-requests/{request_id}/approve",
    tag="access",
    summary="Approve an access request",
    response=AccessRequestOut,
    errors=(409,),
    description="Grants the role or membership until the requested end. Needs a user's token: "
    "the user's manager, or users:access:approve over the user (and, for a role, the right to "
    "grant it). Nobody decides their own request (403). 409 when already decided. An "
    'optional JSON body `{"reason": "..."}` (at most 500 characters) is kept in the audit row.',
)
def approve_access_request(call: Call, request_id: str) -> Reply:
    return _decide(call, request_id, True)


@operation(
    "POST",
    "/access-requests/{request_id}/deny",
    tag="access",
    summary="Deny an access request",
    response=AccessRequestOut,
    errors=(409,),
    description="The same rules as approving; the request ends as `rejected`. An optional "
    'JSON body `{"reason": "..."}` is kept in the audit row.',
)
def deny_access_request(call: Call, request_id: str) -> Reply:
    return _decide(call, request_id, False)


def _grant_out(v: access.GrantView) -> GrantOut:
    return GrantOut(
        id=v.id,
        kind=v.kind,
        user=_party(v.user),
        role=v.role,
        role_client_id=v.role_client_id,
        group=v.group,
        scope_company_id=v.scope_company_id,
        scope_department_id=v.scope_department_id,
        expires_at=v.expires_at,
        expired=v.expired,
        granted_by=_party(v.granted_by),
        created_at=v.created_at,
    )


@operation(
    "GET",
    "/grants",
    tag="access",
    summary="List temporary grants, the soonest to end first",
    query=GrantsQuery,
    response=GrantPage,
    description="Role assignments and group memberships with an end (`expires_at`), of users "
    "over whom the caller holds users:roles:read.",
)
def list_grants(call: Call) -> Reply:
    q: GrantsQuery = call.query
    with call.transaction() as ctx:
        views, total = access.list_grants(
            ctx,
            access.GrantQuery(
                user_uuid=q.user, kind=q.kind, state=q.state, page=q.page, per_page=q.per_page
            ),
        )
    items = [_grant_out(v) for v in views]
    return Reply(body=GrantPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "DELETE",
    "/grants/{grant_id}",
    tag="access",
    summary="Revoke a temporary grant now",
    status=204,
    description="Needs users:roles:assign (a role) or users:groups:assign (a membership) over "
    "the user.",
)
def revoke_grant(call: Call, grant_id: str) -> Reply:
    with call.transaction() as ctx:
        access.revoke_grant(ctx, grant_id)
    return Reply(status=204)
