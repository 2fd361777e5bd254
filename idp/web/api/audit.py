"""``/api/v1/audit/events``: the audit log, filtered and paginated (``audit:log:read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ...manage import audit
from .common import Page, PageQuery, QueryDateTime
from .framework import Call, Reply, operation


class AuditEventsQuery(PageQuery):
    action: str | None = Field(
        None, max_length=100, description='exact action, or a prefix ending in "." (user.)'
    )
    actor: str | None = Field(None, max_length=200)
    target: str | None = Field(None, max_length=300)
    since: QueryDateTime | None = Field(None, description="RFC 3339, inclusive")
    until: QueryDateTime | None = Field(None, description="RFC 3339, exclusive")


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditEventPage(Page[AuditEventOut]):
    pass


@operation(
    "GET",
    "/audit/events",
    tag="audit",
    summary="List audit events, newest first",
    query=AuditEventsQuery,
    response=AuditEventPage,
)
def list_audit_events(call: Call) -> Reply:
    q: AuditEventsQuery = call.query
    with call.transaction() as ctx:
        rows, total = audit.search(
            ctx,
            audit.AuditQuery(
                action=q.action,
                actor=q.actor,
                target=q.target,
                since=q.since,
                until=q.until,
                page=q.page,
                per_page=q.per_page,
            ),
        )
        items = [
            AuditEventOut(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                ip=r.ip,
                request_id=r.request_id,
                details=r.details or {},
            )
            for r in rows
        ]
    return Reply(body=AuditEventPage(items=items, total=total, page=q.page, per_page=q.per_page))
