"""``GET /api/v1/stats``: the dashboard's figures (``idp.manage.stats``; the console's
dashboard shows the same; ``docs/api.md``, "Statistics")."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...manage import stats
from .common import ApiModel
from .framework import Call, Reply, operation


class BucketOut(ApiModel):
    start: datetime = Field(description="Start of the hour (day), UTC")
    sign_ins: int
    failures: int


class EventOut(ApiModel):
    at: datetime
    action: str
    actor: str | None
    target: str | None
    ip: str | None


class StatsOut(ApiModel):
    now: datetime
    users_by_status: dict[str, int] | None = Field(
        description="Readable users per status (null without users:accounts:read)"
    )
    users_total: int | None
    locked_now: int | None = Field(description="Accounts with status locked")
    temporarily_locked: int | None = Field(
        description="Accounts in a lockout after failed sign-ins that is not over"
    )
    live_sessions: int | None
    hours: list[BucketOut] | None = Field(
        description="Sign-ins per hour, the last 24 hours, oldest first (audit:log:read)"
    )
    days: list[BucketOut] | None = Field(
        description="Sign-ins per day (UTC), the last 7 days, oldest first (audit:log:read)"
    )
    recent_events: list[EventOut] | None = Field(description="The latest security events")
    pending_requests: int | None = Field(description="Access requests waiting for a decision")


@operation(
    "GET",
    "/stats",
    tag="stats",
    summary="Dashboard statistics",
    response=StatsOut,
    description=(
        "Counts computed in the database. Each figure is null unless the caller may read "
        "what it counts: users, locks and sessions need `users:accounts:read` (a delegated "
        "caller counts their scope only); sign-ins and security events `audit:log:read`; "
        "pending requests the access-request read permission."
    ),
)
def get_stats(call: Call) -> Reply:
    with call.transaction() as ctx:
        s = stats.dashboard(ctx)
        out = StatsOut(
            now=s.now,
            users_by_status=s.users_by_status,
            users_total=s.users_total,
            locked_now=s.locked_now,
            temporarily_locked=s.temporarily_locked,
            live_sessions=s.live_sessions,
            hours=[BucketOut(**vars(b)) for b in s.hours] if s.hours is not None else None,
            days=[BucketOut(**vars(b)) for b in s.days] if s.days is not None else None,
            recent_events=[
                EventOut(at=e.at, action=e.action, actor=e.actor, target=e.target, ip=e.ip)
                for e in s.recent_events
            ]
            if s.recent_events is not None
            else None,
            pending_requests=s.pending_requests,
        )
    return Reply(body=out)
