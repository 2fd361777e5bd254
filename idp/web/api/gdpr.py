"""GDPR operations of the admin API (docs/gdpr.md): a user's data export
(``GET /users/{user_id}/export``, ``users:accounts:read``, audited) and the deletion requests
users filed on their account page (``/gdpr/deletion-requests``: list, approve, reject;
``users:accounts:delete`` over the user). Erasure itself is ``DELETE /users/{id}?erase=true``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ...manage import gdpr, users
from ..gdpr_mail import tell_decision
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, operation
from .shapes import path_id

TAG = "gdpr"


class UserDataOut(ApiModel):
    profile: dict[str, Any]
    groups: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    remembered_devices: list[dict[str, Any]]
    mfa: dict[str, Any] = Field(description="Second factors, without any secret")
    applications: list[dict[str, Any]] = Field(description="Consented applications")
    tokens: list[dict[str, Any]] = Field(description="Live refresh tokens (no token values)")
    terms: list[dict[str, Any]] = Field(description="Accepted terms / privacy policy versions")
    deletion_requests: list[dict[str, Any]]
    activity: list[dict[str, Any]] = Field(description="The user's own audit events")


@operation(
    "GET",
    "/users/{user_id}/export",
    tag=TAG,
    summary="Export a user's personal data",
    response=UserDataOut,
    description="`users:accounts:read` over the user: everything the IdP holds about them "
    "(GDPR art. 15 / 20), secrets left out; the same data as their own export on /account/. "
    "Audited as user.data_exported.",
)
def export_user(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:accounts:read")
        data = gdpr.export_user(ctx, user, sessions=call.svc.sso_sessions)
    return Reply(body=UserDataOut(**data))


class RequestOut(ApiModel):
    id: int
    user_id: str = Field(description="The user's id (uuid); kept after the erasure")
    username: str | None = Field(description="None once the account was erased")
    email: str | None
    status: Literal["pending", "approved", "rejected", "withdrawn"]
    created_at: datetime
    decided_at: datetime | None
    note: str | None = Field(description="Why it was rejected (mailed to the user)")


class RequestPage(Page[RequestOut]):
    pass


class RequestsQuery(PageQuery):
    status: Literal["pending", "approved", "rejected", "withdrawn", "all"] = "pending"


class RejectIn(Strict):
    note: str | None = Field(None, max_length=2000, description="Told to the user by mail")


def _out(view: gdpr.RequestView) -> RequestOut:
    return RequestOut(
        id=view.id,
        user_id=view.user_uuid,
        username=view.username,
        email=view.email,
        status=view.status,  # type: ignore[arg-type]
        created_at=view.created_at,
        decided_at=view.decided_at,
        note=view.note,
    )


@operation(
    "GET",
    "/gdpr/deletion-requests",
    tag=TAG,
    summary="List account deletion requests",
    query=RequestsQuery,
    response=RequestPage,
    description="Requests users filed on their account page (`[gdpr] deletion = "
    '"approval"`), oldest first; `status` filters (default pending). Only requests of users '
    "over whom the caller holds users:accounts:delete.",
)
def list_requests(call: Call) -> Reply:
    q: RequestsQuery = call.query
    with call.transaction() as ctx:
        views, total = gdpr.list_requests(ctx, q.status, page=q.page, per_page=q.per_page)
    items = [_out(v) for v in views]
    return Reply(body=RequestPage(items=items, total=total, page=q.page, per_page=q.per_page))


def _decide(call: Call, request_id: str, approve: bool, note: str | None = None) -> Reply:
    with call.transaction() as ctx:
        decision = gdpr.decide(
            ctx,
            path_id(request_id, "deletion request"),
            approve=approve,
            note=note,
            sessions=call.svc.sso_sessions,
        )
    tell_decision(decision)
    return Reply(body=_out(decision.request))


@operation(
    "POST",
    "/gdpr/deletion-requests/{request_id}/approve",
    tag=TAG,
    summary="Approve a deletion request (erases the account)",
    response=RequestOut,
    errors=(409,),
    description="`users:accounts:delete` over the user: the account is erased now, as by "
    "DELETE /users/{id}?erase=true, and the user is told by mail. 409 when the request was "
    "already decided or the user is the last administrator (nothing changed).",
)
def approve_request(call: Call, request_id: str) -> Reply:
    return _decide(call, request_id, True)


@operation(
    "POST",
    "/gdpr/deletion-requests/{request_id}/reject",
    tag=TAG,
    summary="Reject a deletion request",
    body=RejectIn,
    response=RequestOut,
    errors=(409,),
    description="`users:accounts:delete` over the user: the account stays; the user is told "
    "by mail, with the note when one is given. 409 when the request was already decided.",
)
def reject_request(call: Call, request_id: str) -> Reply:
    body: RejectIn = call.body
    return _decide(call, request_id, False, body.note)
