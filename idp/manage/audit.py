"""Reading the audit log (``audit:log:read``): filtered, newest first, one page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from ..storage.models import AuditEvent
from .context import Context


@dataclass(frozen=True)
class AuditQuery:
    action: str | None = None  # exact, or a prefix ending in "." ("user." = every user event)
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    per_page: int = 25


def search(ctx: Context, q: AuditQuery) -> tuple[list[AuditEvent], int]:
    """(rows of the page, total rows matching)."""
    ctx.require("audit:log:read")
    where = []
    if q.action:
        where.append(
            AuditEvent.action.startswith(q.action, autoescape=True)
            if q.action.endswith(".")
            else AuditEvent.action == q.action
        )
    if q.actor:
        where.append(AuditEvent.actor == q.actor)
    if q.target:
        where.append(AuditEvent.target == q.target)
    if q.since:
        where.append(AuditEvent.at >= q.since)
    if q.until:
        where.append(AuditEvent.at < q.until)
    total = ctx.db.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
    rows = ctx.db.scalars(
        select(AuditEvent)
        .where(*where)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(q.per_page)
        .offset((q.page - 1) * q.per_page)
    ).all()
    return list(rows), total
