"""Admin console: the audit log (``/admin/audit``): filters (actor, target, event type, time
range) applied in SQL, newest first, one page at a time; one event's details; the filtered log
exported as CSV or JSON lines, streamed (the export is audited); the check of its hash chain
(``/admin/audit/verify``) and, for holders of ``audit:log:prune``, retention: old events
pruned behind a checkpoint (``/admin/audit/prune``), after a count or a ticked confirmation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import Conflict, Forbidden, NotFound, ValidationError
from ...manage import audit
from ..audit_export import FORMATS, stream
from ..current import svc
from ..events import event_label
from .blueprint import bp
from .guard import console
from .paging import PAGE_SIZES, paging


def _day(name: str, errors: dict[str, str]) -> datetime | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        errors[name] = _("Enter a date as YYYY-MM-DD.")
        return None


def _filters() -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """(the filter arguments as given, errors by field, AuditQuery keyword arguments)."""
    args = {k: request.args.get(k, "").strip()[:300] for k in ("actor", "target", "action")}
    args.update({k: request.args.get(k, "").strip()[:10] for k in ("since", "until")})
    errors: dict[str, str] = {}
    since, until = _day("since", errors), _day("until", errors)
    if since and until and until < since:
        errors["until"] = _("The end date is before the start date.")
    query = {
        "action": args["action"] or None,
        "since": since,
        "until": until + timedelta(days=1) if until else None,  # the whole end day
    }
    return args, errors, query


def _resolve(ctx, args: dict[str, str], query: dict[str, Any]) -> None:
    """Usernames typed into actor / target become the user ids the log records."""
    query["actor"] = audit.subject_for(ctx, args["actor"]) if args["actor"] else None
    query["target"] = audit.subject_for(ctx, args["target"]) if args["target"] else None


@bp.route("/audit", endpoint="audit")
def audit_log():
    args, errors, query = _filters()
    page, per_page = paging()
    rows: list[Any] = []
    total = 0
    try:
        with console() as ctx:
            _resolve(ctx, args, query)
            if not errors:
                rows, total = audit.search(
                    ctx, audit.AuditQuery(page=page, per_page=per_page, **query)
                )
            names = audit.actor_names(ctx, [r.actor for r in rows] + [r.target for r in rows])
            choices = audit.actions(ctx)
            events = [_view(r, names) for r in rows]
    except Forbidden:
        abort(403)
    return render_template(
        "admin/audit.html",
        active="admin.audit",
        args=args,
        errors=errors,
        events=events,
        total=total,
        page=page,
        per_page=per_page,
        sizes=PAGE_SIZES,
        choices=[(a, event_label(a)) for a in choices],
        export_args={k: v for k, v in args.items() if v},
    ), (400 if errors else 200)


def _view(row: Any, names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "actor_name": names.get(row.actor or ""),
        "action": row.action,
        "label": event_label(row.action),
        "target": row.target,
        "target_name": names.get(row.target or ""),
        "ip": row.ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "details": row.details or {},
    }


@bp.route("/audit/<int:event_id>")
def audit_event(event_id: int):
    try:
        with console() as ctx:
            row = audit.get(ctx, event_id)
            names = audit.actor_names(ctx, [row.actor, row.target])
            event = _view(row, names)
    except Forbidden:
        abort(403)
    except NotFound:
        abort(404)
    return render_template("admin/audit_event.html", active="admin.audit", event=event)


def _verify_page(status: int = 200, **form: Any):
    try:
        with console() as ctx:
            report = audit.verify(ctx)
            may_prune = ctx.allowed(audit.PRUNE_PERMISSION)
    except Forbidden:
        abort(403)
    page = render_template(
        "admin/audit_verify.html",
        active="admin.audit",
        report=report,
        may_prune=may_prune,
        retention_days=svc().settings.audit.retention_days,
        form=form or {"before": request.args.get("before", "")[:10]},
    )
    return page, status


@bp.route("/audit/verify")
def audit_verify():
    return _verify_page()


@bp.route("/audit/prune", methods=["POST"])
def audit_prune():
    """Count (``action=count``) or prune: pruning needs the confirmation box ticked; an
    error shows the verify page again with the form as it was sent, nothing deleted."""
    text = request.form.get("before", "").strip()[:10]
    dry_run = request.form.get("action") == "count"
    confirmed = request.form.get("confirm") == "yes"
    form = {"before": text, "confirm": confirmed}
    day: date | None = None
    if text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return _verify_page(400, **form, error=_("Enter a date as YYYY-MM-DD."))
    if not dry_run and not confirmed:
        return _verify_page(400, **form, error=_("Tick the box to confirm the deletion."))
    try:
        with console() as ctx:
            result = audit.prune_before(ctx, day, dry_run=dry_run)
    except Forbidden:
        abort(403)
    except (ValidationError, Conflict):
        return _verify_page(
            400, **form, error=_("Enter a date: no retention period is configured.")
        )
    said = {"rows": result.pruned.rows, "day": result.before.date().isoformat()}
    if dry_run:
        flash(_("%(rows)s events were written before %(day)s.", **said), "info")
        return redirect(url_for("admin.audit_verify", before=text) + "#prune")
    flash(_("%(rows)s events written before %(day)s were deleted.", **said), "success")
    return redirect(url_for("admin.audit_verify"))


@bp.route("/audit/export")
def audit_export():
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(400)
    args, errors, query = _filters()
    if errors:
        abort(400)
    try:
        with console() as ctx:
            _resolve(ctx, args, query)
            rows = audit.export(ctx, audit.AuditQuery(**query), fmt)
    except Forbidden:
        abort(403)
    return stream(rows, fmt)
