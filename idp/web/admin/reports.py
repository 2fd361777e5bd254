"""Admin console: compliance reports at ``/admin/reports`` (``idp.manage.reports``; the REST
API's ``/api/v1/reports`` gives the same). Each report page pages in SQL and offers its CSV /
XLSX download (``?format=``); dormant accounts post their checked rows to the user batch
(``/admin/users/batch``, action deactivate: its confirmation page comes first); access
reviews are started, decided per holder and signed off here."""

from __future__ import annotations

import tempfile

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wsgi import FileWrapper

from ...errors import Conflict, ValidationError
from ...manage import reports
from ...manage.user_sheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE
from ..current import svc
from .blueprint import bp
from .dashboard import BOTTOM as CHART_BOTTOM
from .dashboard import HEIGHT, LEFT, TOP, WIDTH, Bar, Chart
from .guard import console
from .paging import paging, whole_number


def _reason_label(reason: str) -> str:
    labels = {
        "bad_credentials": _("Wrong password"),
        "unknown_account": _("Unknown account"),
        "second_factor": _("Second factor failed"),
        "locked": _("Account locked"),
        "account_state": _("Account not usable"),
    }
    return labels.get(reason, reason)


def _filter_args() -> dict[str, str]:
    return {k: request.args.get(k, "").strip()[:200] for k in ("company", "department", "group")}


def _filt(args: dict[str, str]) -> reports.UserFilter:
    return reports.UserFilter(
        args["company"] or None, args["department"] or None, args["group"] or None
    )


def _download(report: str, **params):
    """``?format=csv|xlsx``: the whole report as a file (None when no download was asked)."""
    fmt = request.args.get("format")
    if fmt is None:
        return None
    if fmt not in reports.FORMATS:
        abort(400)
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    try:
        with console() as ctx:
            reports.export(ctx, report, fmt, out, **params)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    stamp = svc().clock.utcnow().strftime("%Y%m%d-%H%M%S")
    media = CSV_MEDIA_TYPE + "; charset=utf-8" if fmt == "csv" else XLSX_MEDIA_TYPE
    resp = Response(
        FileWrapper(out, 64 * 1024), mimetype=None, content_type=media, direct_passthrough=True
    )
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="{report}-{stamp}.{fmt}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.call_on_close(out.close)
    return resp


@bp.route("/reports")
def reports_index():
    with console() as ctx:
        ctx.require(reports.PERMISSION)
    return render_template("admin/reports.html", active="admin.reports_index")


@bp.route("/reports/users-without-mfa")
def report_mfa():
    args = _filter_args()
    got = _download("users-without-mfa", **args)
    if got is not None:
        return got
    page, per_page = paging()
    try:
        with console() as ctx:
            rows, total = reports.users_without_mfa(ctx, _filt(args), page=page, per_page=per_page)
    except ValidationError as exc:
        flash(str(exc), "error")
        rows, total = [], 0
    return render_template(
        "admin/report_mfa.html",
        active="admin.reports_index",
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        args=args,
    )


@bp.route("/reports/dormant")
def report_dormant():
    args = _filter_args()
    days = min(whole_number(request.args.get("days")) or 90, reports.MAX_DAYS)
    kind = (
        request.args.get("kind")
        if request.args.get("kind") in reports.DORMANT_KINDS
        else "inactive"
    )
    got = _download("dormant-accounts", days=days, kind=kind, **args)
    if got is not None:
        return got
    page, per_page = paging()
    with console() as ctx:
        rows, total = reports.dormant_accounts(
            ctx, days, kind, _filt(args), page=page, per_page=per_page
        )
    return render_template(
        "admin/report_dormant.html",
        active="admin.reports_index",
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        args={**args, "days": days, "kind": kind},
    )


@bp.route("/reports/privileged")
def report_privileged():
    got = _download("privileged-accounts")
    if got is not None:
        return got
    page, per_page = paging()
    with console() as ctx:
        rows, total = reports.privileged_accounts(ctx, page=page, per_page=per_page)
    return render_template(
        "admin/report_privileged.html",
        active="admin.reports_index",
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        args={},
    )


def _trend_chart(trend: reports.FailureTrend) -> Chart:
    """The dashboard's bar chart (its classes and sizes), one bar of failures per day."""
    top = max([1, *(d.total for d in trend.days)])
    plot_h = HEIGHT - CHART_BOTTOM - TOP
    slot = (WIDTH - LEFT) / len(trend.days)
    bar_w = slot * 0.7
    every = max(1, len(trend.days) // 10)
    bars, labels = [], []
    for i, d in enumerate(trend.days):
        x = LEFT + i * slot + slot * 0.15
        h = plot_h * d.total / top
        name = d.day.strftime("%m-%d")
        detail = ", ".join(f"{_reason_label(r)} {n}" for r, n in d.by_reason.items() if n)
        title = f"{d.day.isoformat()}: {d.total}" + (f" ({detail})" if detail else "")
        bars.append(Bar(x, HEIGHT - CHART_BOTTOM - h, h, "bad", title))
        if i % every == 0 or i == len(trend.days) - 1:
            labels.append((x + bar_w / 2, name))
    ticks = [(HEIGHT - CHART_BOTTOM - plot_h * v / top, v) for v in sorted({0, top // 2, top})]
    busiest = max(trend.days, key=lambda d: d.total)
    description = _(
        "%(total)s failed sign-ins in %(days)s days; the most on %(day)s with %(count)s.",
        total=trend.total,
        days=len(trend.days),
        day=busiest.day.isoformat(),
        count=busiest.total,
    )
    return Chart(_("Failed sign-ins per day (UTC)"), description, bars, labels, ticks, bar_w, [])


@bp.route("/reports/failed-logins")
def report_failed_logins():
    days = min(whole_number(request.args.get("days")) or 30, reports.MAX_TREND_DAYS)
    part = request.args.get("part") if request.args.get("part") in reports.TREND_PARTS else "days"
    got = _download("failed-logins", days=days, part=part)
    if got is not None:
        return got
    with console() as ctx:
        trend = reports.failed_logins(ctx, days)
    return render_template(
        "admin/report_failed_logins.html",
        active="admin.reports_index",
        trend=trend,
        chart=_trend_chart(trend),
        days=days,
        reasons=reports.FAILURE_REASONS,
        reason_label=_reason_label,
    )


# --- access reviews ------------------------------------------------------------------------------


@bp.route("/reports/reviews", methods=["GET", "POST"])
def report_reviews():
    if request.method == "POST":
        kind = request.form.get("kind", "")
        subject = whole_number(request.form.get("subject_id"))
        try:
            with console() as ctx:
                review = reports.create_review(
                    ctx, kind, subject or 0, title=request.form.get("title", "").strip() or None
                )
                review_id = review.id
        except ValidationError as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.report_reviews"), 303)
        flash(_("The review has started."), "success")
        return redirect(url_for("admin.report_review", review_id=review_id), 303)
    page, per_page = paging()
    # The rows are read while the transaction is open (they expire when it commits).
    with console() as ctx:
        views, total = reports.list_reviews(ctx, page=page, per_page=per_page)
        may_start = ctx.allowed(reports.REVIEW_PERMISSION)
        roles, groups = reports.review_subjects(ctx) if may_start else ([], [])
        return render_template(
            "admin/report_reviews.html",
            active="admin.reports_index",
            views=views,
            total=total,
            page=page,
            per_page=per_page,
            may_start=may_start,
            roles=roles,
            groups=groups,
            args={},
        )


@bp.route("/reports/reviews/<int:review_id>")
def report_review(review_id: int):
    got = _download("access-review", review_id=review_id)
    if got is not None:
        return got
    page, per_page = paging()
    with console() as ctx:
        view = reports.get_review(ctx, review_id)
        items, total = reports.review_items(ctx, review_id, page=page, per_page=per_page)
        return render_template(
            "admin/report_review.html",
            active="admin.reports_index",
            view=view,
            items=items,
            total=total,
            page=page,
            per_page=per_page,
            may_decide=ctx.allowed(reports.REVIEW_PERMISSION) and not view.signed_off,
            me=ctx.actor.user_id,
        )


@bp.route("/reports/reviews/<int:review_id>/items/<int:item_id>", methods=["POST"])
def report_review_decide(review_id: int, item_id: int):
    try:
        with console() as ctx:
            reports.decide(
                ctx,
                review_id,
                item_id,
                request.form.get("decision", ""),
                request.form.get("comment", "").strip() or None,
            )
    except (Conflict, ValidationError) as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.report_review", review_id=review_id), 303)


@bp.route("/reports/reviews/<int:review_id>/sign-off", methods=["POST"])
def report_review_sign_off(review_id: int):
    try:
        with console() as ctx:
            reports.sign_off(ctx, review_id)
    except Conflict as exc:
        flash(str(exc), "error")
    else:
        flash(_("The review is signed off."), "success")
    return redirect(url_for("admin.report_review", review_id=review_id), 303)
