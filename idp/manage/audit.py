"""Reading the audit log (``audit:log:read``): filtered, newest first, one page at a time; one
event; the export of a filtered log, streamed in chunks (the export is itself audited); the
verification of its hash chain; and retention (``audit:log:prune``, which only the built-in
Administrator role holds through its ``*``): pruning old rows behind a chained checkpoint
(idp.storage.audit), the one operation the CLI, the REST API and the console call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from ..errors import Conflict, NotFound
from ..storage import audit as chain
from ..storage.models import AuditEvent, User
from .context import Context

EXPORT_CHUNK = 500


@dataclass(frozen=True)
class AuditQuery:
    action: str | None = None  # exact, or a prefix ending in "." ("user." = every user event)
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    per_page: int = 25


def _where(q: AuditQuery) -> list[Any]:
    where: list[Any] = []
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
    return where


def search(ctx: Context, q: AuditQuery) -> tuple[list[AuditEvent], int]:
    """(rows of the page, total rows matching)."""
    ctx.require("audit:log:read")
    where = _where(q)
    total = ctx.db.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
    rows = ctx.db.scalars(
        select(AuditEvent)
        .where(*where)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(q.per_page)
        .offset((q.page - 1) * q.per_page)
    ).all()
    return list(rows), total


def get(ctx: Context, event_id: int) -> AuditEvent:
    ctx.require("audit:log:read")
    row = ctx.db.get(AuditEvent, event_id)
    if row is None:
        raise NotFound(f"no audit event {event_id}")
    return row


def actions(ctx: Context) -> list[str]:
    """Every event type the log holds, for a filter's choices (the action column is indexed)."""
    ctx.require("audit:log:read")
    return list(ctx.db.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def subject_for(ctx: Context, text: str) -> str:
    """What the actor or target column holds for ``text``: a username becomes the user's id (the log
    records people by id, so an erased person's rows keep no name); anything else as it is."""
    ctx.require("audit:log:read")
    found = ctx.db.scalar(select(User.uuid).where(User.username == text))
    return found or text


def actor_names(ctx: Context, actors: Iterable[str | None]) -> dict[str, str]:
    """{actor id: username} for the user ids among ``actors`` (one query for a page)."""
    ctx.require("audit:log:read")
    wanted = {a for a in actors if a}
    if not wanted:
        return {}
    rows = ctx.db.execute(select(User.uuid, User.username).where(User.uuid.in_(wanted)))
    return {uuid: name for uuid, name in rows}


def export(ctx: Context, q: AuditQuery, fmt: str) -> Iterator[AuditEvent]:
    """Every row matching ``q`` (its page is ignored), newest first, read in chunks of
    ``EXPORT_CHUNK`` by keyset (each chunk its own short read, so a long export holds no
    transaction open). The export is audited in ``ctx``'s transaction, before any row goes out."""
    ctx.require("audit:log:read")
    filters = {k: v for k, v in asdict(q).items() if v and k not in ("page", "per_page")}
    ctx.audit("audit.exported", None, format=fmt, filters={k: str(v) for k, v in filters.items()})
    return _chunks(ctx, q)


def _chunks(ctx: Context, q: AuditQuery) -> Iterator[AuditEvent]:
    sessions = ctx.svc.sessions
    where = _where(q)
    last: tuple[datetime, int] | None = None
    while True:
        after = []
        if last is not None:
            after.append(
                or_(
                    AuditEvent.at < last[0],
                    and_(AuditEvent.at == last[0], AuditEvent.id < last[1]),
                )
            )
        with sessions() as db:
            rows = list(
                db.scalars(
                    select(AuditEvent)
                    .where(*where, *after)
                    .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                    .limit(EXPORT_CHUNK)
                )
            )
            db.expunge_all()
        yield from rows
        if len(rows) < EXPORT_CHUNK:
            return
        last = (rows[-1].at, rows[-1].id)


def verify(ctx: Context) -> chain.ChainReport:
    """Walk the hash chain (its own read snapshot, in chunks) and report the first bad row."""
    ctx.require("audit:log:read")
    return chain.verify_chain(ctx.svc.engine)


PRUNE_PERMISSION = "audit:log:prune"


@dataclass(frozen=True)
class PruneResult:
    before: datetime
    dry_run: bool
    pruned: chain.Pruned

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "before": self.before.isoformat(),
            "rows": self.pruned.rows,
            "last_id": self.pruned.last_id,
            "last_seq": self.pruned.last_seq,
        }


def prune_before(ctx: Context, day: date | None, *, dry_run: bool = False) -> PruneResult:
    """Prune the rows written before ``day`` (00:00 UTC), or without a day before the
    retention window (``[audit] retention_days`` back from now); Conflict when neither
    gives a cutoff."""
    ctx.require(PRUNE_PERMISSION)
    if day is not None:
        cutoff = datetime.combine(day, time(), tzinfo=UTC)
    elif ctx.svc.settings.audit.retention_days:
        cutoff = ctx.svc.clock.utcnow() - timedelta(days=ctx.svc.settings.audit.retention_days)
    else:
        # The request is well-formed; the configuration leaves nothing to do (409 in the API).
        raise Conflict("nothing to prune: [audit] retention_days is 0 and no --before given")
    return PruneResult(cutoff, dry_run, prune(ctx, cutoff, dry_run=dry_run))


def prune(ctx: Context, before: datetime, *, dry_run: bool = False) -> chain.Pruned:
    """Delete the rows older than ``before`` behind a chained ``audit.pruned`` checkpoint (the
    event is the audit record of the pruning); a dry run only counts them."""
    ctx.require(PRUNE_PERMISSION)
    actor = ctx.actor
    return chain.prune(
        ctx.db,
        before=before,
        at=ctx.svc.clock.utcnow(),
        dry_run=dry_run,
        actor=actor.name,
        ip=actor.ip,
        user_agent=actor.user_agent,
        request_id=actor.request_id,
    )
