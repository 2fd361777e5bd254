"""``/api/v1/audit/events``: the audit log, filtered and paginated, and its export;
``/api/v1/audit/verify``: the check of its hash chain (all ``audit:log:read``);
``/api/v1/audit/prune``: retention, pruning behind a checkpoint (``audit:log:prune``)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from ...manage import audit
from ..audit_export import stream
from .common import ApiModel, Page, PageQuery, QueryDateTime, Strict
from .framework import Call, Reply, operation


class AuditEventsQuery(PageQuery):
    action: str | None = Field(
        None, max_length=100, description='exact action, or a prefix ending in "." (user.)'
    )
    actor: str | None = Field(None, max_length=200)
    target: str | None = Field(None, max_length=300)
    since: QueryDateTime | None = Field(None, description="RFC 3339, inclusive")
    until: QueryDateTime | None = Field(None, description="RFC 3339, exclusive")


class AuditEventOut(ApiModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    seq: int = Field(description="the row's position in the hash chain")


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
                user_agent=r.user_agent,
                request_id=r.request_id,
                details=r.details or {},
                seq=r.seq,
            )
            for r in rows
        ]
    return Reply(body=AuditEventPage(items=items, total=total, page=q.page, per_page=q.per_page))


class AuditExportQuery(Strict):
    format: Literal["csv", "jsonl"] = Field("csv", description="CSV, or one JSON object a line")
    action: str | None = Field(None, max_length=100)
    actor: str | None = Field(None, max_length=200)
    target: str | None = Field(None, max_length=300)
    since: QueryDateTime | None = Field(None, description="RFC 3339, inclusive")
    until: QueryDateTime | None = Field(None, description="RFC 3339, exclusive")


@operation(
    "GET",
    "/audit/events/export",
    tag="audit",
    summary="Export the filtered audit log (CSV or JSON lines), newest first",
    query=AuditExportQuery,
    produces=("text/csv", "application/x-ndjson"),
    description=(
        "Every event matching the filters of the list (no paging), streamed in chunks. The "
        "export itself is audited (audit.exported, with the filters). CSV cells a spreadsheet "
        "would take for a formula are escaped with a leading '."
    ),
)
def export_audit_events(call: Call) -> Reply:
    q: AuditExportQuery = call.query
    with call.transaction() as ctx:
        rows = audit.export(
            ctx,
            audit.AuditQuery(
                action=q.action, actor=q.actor, target=q.target, since=q.since, until=q.until
            ),
            q.format,
        )
    return Reply(raw=stream(rows, q.format))


class ChainReportOut(ApiModel):
    ok: bool = Field(description="true when every row is where the chain says")
    rows: int = Field(description="rows checked")
    head_seq: int = Field(description="the chain head: position of the newest row")
    checkpoint_seq: int | None = Field(description="the retention checkpoint it started after")
    bad_id: int | None = Field(description="the first bad row's id (null for a cut tail)")
    bad_seq: int | None = Field(description="the position where the chain breaks")
    reason: str | None = Field(description="why the chain breaks there")


@operation(
    "GET",
    "/audit/verify",
    tag="audit",
    summary="Verify the audit log's hash chain",
    response=ChainReportOut,
    description=(
        "Walks the chain in id order (from the last retention checkpoint) and answers the first "
        "row that was edited, deleted, inserted or moved, or a cut tail; as `idp audit verify`."
    ),
)
def verify_audit_chain(call: Call) -> Reply:
    with call.transaction() as ctx:
        report = audit.verify(ctx)
    return Reply(body=ChainReportOut(**report.as_dict()))


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    """Only the written form YYYY-MM-DD: not a number, not ISO's other forms (20260101)."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


# A calendar day ("format: date" in the document, so a schema-true request is a real day).
Day = Annotated[date, BeforeValidator(_iso_day), Field(examples=["2026-01-01"])]


class AuditPruneIn(Strict):
    before: Day | None = Field(
        None,
        description="delete the events written before this day (00:00 UTC); "
        "without it, before the [audit] retention_days window",
    )
    dry_run: bool = Field(False, description="only count the events that would be deleted")


class AuditPruneOut(ApiModel):
    dry_run: bool
    before: datetime = Field(description="the cutoff used")
    rows: int = Field(description="events deleted (or that would be), the oldest first")
    last_id: int | None = Field(description="the newest deleted event's id")
    last_seq: int | None = Field(description="its chain position: the new checkpoint")


@operation(
    "POST",
    "/audit/prune",
    tag="audit",
    summary="Prune old audit events behind a chained checkpoint",
    body=AuditPruneIn,
    response=AuditPruneOut,
    errors=(400, 409),
    description=(
        "Deletes the oldest events, those written before `before`, after chaining an "
        "`audit.pruned` event and recording a checkpoint, so the chain still verifies; as "
        "`idp audit prune`. `dry_run` only counts. Without `before` and with no "
        "`[audit] retention_days` there is nothing to prune: 409. Needs `audit:log:prune` "
        "(only the built-in Administrator role holds it)."
    ),
)
def prune_audit_log(call: Call) -> Reply:
    body: AuditPruneIn = call.body
    with call.transaction() as ctx:
        result = audit.prune_before(ctx, body.before, dry_run=body.dry_run)
    return Reply(body=AuditPruneOut(**result.as_dict()))
