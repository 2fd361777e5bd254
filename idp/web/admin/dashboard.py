"""Admin console: the dashboard at ``/admin/`` (``idp.manage.stats``; ``GET /api/v1/stats``
gives the same figures)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, render_template
from flask_babel import format_datetime
from flask_babel import gettext as _

from ...manage import stats
from ..events import event_label
from .blueprint import bp
from .guard import console

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 36, 28, 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    kind: str  # ok | bad
    title: str


@dataclass(frozen=True)
class Chart:
    """A server-rendered bar chart: sign-ins and failures side by side per bucket."""

    title: str
    description: str
    bars: list[Bar]
    labels: list[tuple[float, str]]  # (x, text) under the buckets
    ticks: list[tuple[float, int]]  # (y, value) on the left axis
    bar_width: float
    rows: list[tuple[str, int, int]]  # (bucket, sign-ins, failures) for the table
    width: int = WIDTH
    height: int = HEIGHT
    base: float = HEIGHT - BOTTOM
    left: int = LEFT


def _chart(title: str, buckets: list[stats.Bucket], label, every: int) -> Chart:
    top = max([1, *(b.sign_ins for b in buckets), *(b.failures for b in buckets)])
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / len(buckets)
    bar_w = slot * 0.38
    bars, labels, rows = [], [], []
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + slot * 0.1
        name = label(b.start)
        for j, (value, kind, what) in enumerate(
            ((b.sign_ins, "ok", _("sign-ins")), (b.failures, "bad", _("failed sign-ins")))
        ):
            h = plot_h * value / top
            bars.append(Bar(x + j * bar_w, HEIGHT - BOTTOM - h, h, kind, f"{name}: {value} {what}"))
        if i % every == 0 or i == len(buckets) - 1:
            labels.append((x + bar_w, name))
        rows.append((name, b.sign_ins, b.failures))
    ticks = [(HEIGHT - BOTTOM - plot_h * v / top, v) for v in sorted({0, top // 2, top})]
    total_ok = sum(b.sign_ins for b in buckets)
    total_bad = sum(b.failures for b in buckets)
    busiest = max(buckets, key=lambda b: b.sign_ins + b.failures)
    description = _(
        "%(ok)s sign-ins and %(bad)s failed sign-ins in total; the busiest was %(when)s "
        "with %(busy_ok)s sign-ins and %(busy_bad)s failures.",
        ok=total_ok,
        bad=total_bad,
        when=label(busiest.start),
        busy_ok=busiest.sign_ins,
        busy_bad=busiest.failures,
    )
    return Chart(title, description, bars, labels, ticks, bar_w, rows)


@bp.route("/")
def dashboard():
    with console() as ctx:
        s = stats.dashboard(ctx)
    hours = days = None
    if s.hours is not None and s.days is not None:
        hours = _chart(
            _("Sign-ins in the last 24 hours (per hour, UTC)"),
            s.hours,
            lambda t: t.strftime("%H:00"),
            every=3,
        )
        days = _chart(
            _("Sign-ins in the last 7 days (per day, UTC)"),
            s.days,
            lambda t: format_datetime(t, "EEE d MMM"),
            every=1,
        )
    return render_template(
        "admin/dashboard.html",
        active="admin.dashboard",
        s=s,
        hours=hours,
        days=days,
        event_label=event_label,
        access_url="admin.access" in current_app.view_functions,
        users_url="admin.users" in current_app.view_functions,
    )
