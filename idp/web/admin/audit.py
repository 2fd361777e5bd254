"""Admin console: the audit log (``/admin/audit``): filters (actor, target, event type, time
range) applied in SQL, newest first, one page at a time; one event's details; the filtered log
exported as CSV or JSON lines, streamed (the export is audited); the check of its hash chain
(``/admin/audit/verify``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, render_template, request
from flask_babel import gettext as _

from ...errors import Forbidden, NotFound
from ...manage import audit
from ..audit_export import FORMATS, stream
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


@bp.route("/audit/verify")
def audit_verify():
    try:
        with console() as ctx:
            report = audit.verify(ctx)
    except Forbidden:
        abort(403)
    return render_template("admin/audit_verify.html", active="admin.audit", report=report)


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
