"""The console's dashboard figures (and ``GET /api/v1/stats``), each an aggregate query, each
shown only to an actor who may read what it counts:

- users by status, accounts locked now, live sessions: ``users:accounts:read``, over the users
  the actor may read (a delegated administrator counts their subtree only);
- sign-ins and failed sign-ins per hour over 24 hours and per day over 7 days, and the recent
  security events: ``audit:log:read`` (they are audit rows);
- pending access requests: whoever may read requests (``idp.manage.access``).

A figure the actor may not read is None. "Locked now" counts accounts an administrator locked
(status ``locked``) and the temporary lockouts after failed sign-ins whose ``lock_minutes`` are
not over (``login.lockout`` audit rows, less those unlocked since). "Live sessions" are the
session index rows younger than ``[session] max_hours`` (a session that ended by idling out is
pruned from the index when read, so the figure may be a little high)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select

from ..errors import Forbidden
from ..storage.models import AuditEvent, User
from ..storage.models_auth import SsoSessionIndex
from . import access as manage_access
from . import users as manage_users
from .context import Context

SIGN_IN = "login.success"
SIGN_IN_FAILED = "login.failure"
# Audit events the dashboard lists as security events (exact codes, or prefixes ending in ".").
SECURITY_EVENTS = (
    "login.failure",
    "login.lockout",
    "login.locked",
    "login.denied",
    "user.locked",
    "user.unlocked",
    "user.deleted",
    "user.password_set",
    "user.role_assigned",
    "user.role_removed",
    "mfa.reset",
    "password.changed",
    "session.revoked",
    "login.risk_denied",
    "security.",  # every suspicious-activity finding (docs/risk.md)
)
RECENT_EVENTS = 10


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC, the start of the hour or day
    sign_ins: int
    failures: int


@dataclass(frozen=True)
class Event:
    at: datetime
    action: str
    actor: str | None
    target: str | None
    ip: str | None
    actor_name: str | None = None  # the username, when the actor / target is a user
    target_name: str | None = None


@dataclass
class Stats:
    now: datetime
    users_by_status: dict[str, int] | None = None
    users_total: int | None = None
    locked_now: int | None = None
    temporarily_locked: int | None = None
    live_sessions: int | None = None
    hours: list[Bucket] | None = None  # 24, oldest first, the last is the current hour
    days: list[Bucket] | None = None  # 7, oldest first, the last is today (UTC)
    recent_events: list[Event] | None = None
    security_events_24h: int | None = None  # security.* rows (suspicious activity) in 24 hours
    pending_requests: int | None = None
    sections: list[str] = field(default_factory=list)  # what the actor may read


def dashboard(ctx: Context) -> Stats:
    """Every figure the actor may read (None for the others)."""
    now = ctx.svc.clock.utcnow()
    out = Stats(now=now)
    if manage_users._holds_anywhere(ctx, "users:accounts:read"):
        readable = manage_users.visible(ctx, "users:accounts:read")
        _users(ctx, out, readable)
        out.sections.append("users")
    if ctx.allowed("audit:log:read"):
        out.hours = _buckets(ctx, now.replace(minute=0, second=0, microsecond=0), 24, 1)
        out.days = _buckets(ctx, now.replace(hour=0, minute=0, second=0, microsecond=0), 7, 24)
        out.recent_events = _recent(ctx)
        out.security_events_24h = ctx.db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action.startswith("security."), AuditEvent.at >= now - timedelta(1))
        )
        out.sections.append("audit")
    try:
        _, total = manage_access.list_requests(
            ctx, manage_access.AccessQuery(status="pending", per_page=1)
        )
    except Forbidden:
        pass
    else:
        out.pending_requests = total
        out.sections.append("access")
    return out


def _users(ctx: Context, out: Stats, readable) -> None:
    rows = ctx.db.execute(
        select(User.status, func.count(User.id)).where(readable).group_by(User.status)
    ).all()
    by_status = {status: 0 for status in ("active", "inactive", "locked", "pending")}
    by_status.update({status: int(n) for status, n in rows})
    out.users_by_status = by_status
    out.users_total = sum(by_status.values())
    out.locked_now = by_status.get("locked", 0)
    out.temporarily_locked = _temporary_locks(ctx, readable)
    since = out.now - timedelta(hours=ctx.svc.settings.session.max_hours)
    out.live_sessions = int(
        ctx.db.scalar(
            select(func.count(SsoSessionIndex.sid))
            .join(User, User.id == SsoSessionIndex.user_id)
            .where(readable, SsoSessionIndex.created_at > since)
        )
        or 0
    )


def _temporary_locks(ctx: Context, readable) -> int:
    """Readable users with a ``login.lockout`` in the last ``lock_minutes`` and no
    ``user.unlocked`` after it."""
    since = ctx.svc.clock.utcnow() - timedelta(minutes=ctx.svc.settings.lockout.lock_minutes)
    unlocked = AuditEvent.__table__.alias("unlocked")
    lockouts = (
        select(AuditEvent.target)
        .where(
            AuditEvent.action == "login.lockout",
            AuditEvent.at > since,
            ~select(unlocked.c.id)
            .where(
                unlocked.c.action == "user.unlocked",
                unlocked.c.target == AuditEvent.target,
                unlocked.c.at >= AuditEvent.at,
            )
            .exists(),
        )
        .distinct()
        .subquery()
    )
    return int(
        ctx.db.scalar(
            select(func.count(User.id)).where(
                readable, User.status != "locked", User.uuid.in_(select(lockouts.c.target))
            )
        )
        or 0
    )


def _buckets(ctx: Context, last_start: datetime, count: int, hours: int) -> list[Bucket]:
    """Sign-ins and failures per bucket of ``hours``, ``count`` buckets ending with the one
    that starts at ``last_start``: one query of conditional counts (portable SQL, no
    dialect's date functions)."""
    starts = [last_start - timedelta(hours=hours * (count - 1 - i)) for i in range(count)]
    ends = [*starts[1:], last_start + timedelta(hours=hours)]
    columns = []
    for start, end in zip(starts, ends, strict=True):
        in_bucket = and_(AuditEvent.at >= start, AuditEvent.at < end)
        for action in (SIGN_IN, SIGN_IN_FAILED):
            columns.append(
                func.coalesce(
                    func.sum(case((and_(in_bucket, AuditEvent.action == action), 1), else_=0)),
                    literal(0),
                )
            )
    row = ctx.db.execute(
        select(*columns).where(
            AuditEvent.action.in_((SIGN_IN, SIGN_IN_FAILED)),
            AuditEvent.at >= starts[0],
            AuditEvent.at < ends[-1],
        )
    ).one()
    return [
        Bucket(start, int(row[2 * i] or 0), int(row[2 * i + 1] or 0))
        for i, start in enumerate(starts)
    ]


def _security_event() -> Any:
    exact = [a for a in SECURITY_EVENTS if not a.endswith(".")]
    prefixes = [a for a in SECURITY_EVENTS if a.endswith(".")]
    return or_(AuditEvent.action.in_(exact), *(AuditEvent.action.startswith(p) for p in prefixes))


def _recent(ctx: Context) -> list[Event]:
    rows = ctx.db.scalars(
        select(AuditEvent)
        .where(_security_event())
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(RECENT_EVENTS)
    )
    rows = list(rows)
    refs = {r.actor for r in rows if r.actor} | {r.target for r in rows if r.target}
    names = dict(ctx.db.execute(select(User.uuid, User.username).where(User.uuid.in_(refs))).all())
    return [
        Event(r.at, r.action, r.actor, r.target, r.ip, names.get(r.actor), names.get(r.target))
        for r in rows
    ]
