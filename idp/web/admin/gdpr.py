"""Admin console, GDPR (docs/gdpr.md): erasing a user's personal data (typed confirmation, like
deletion), exporting a user's data as JSON (audited), and the account deletion requests users
filed on /account/ (``/admin/deletion-requests``: approve erases, reject keeps; both mail the
user)."""

from __future__ import annotations

import json

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import Conflict, NotFound
from ...manage import gdpr, users
from ..current import svc
from ..gdpr_mail import tell_decision
from .blueprint import bp
from .guard import console
from .paging import paging
from .users import confirm_by_username


@bp.route("/users/<uuid>/erase", methods=["GET", "POST"])
def user_erase(uuid: str):
    page, username = confirm_by_username(uuid, "admin/user_erase.html")
    if page is not None:
        return page
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, "users:accounts:delete")
            erasure = gdpr.erase(ctx, target, sessions=svc().sso_sessions)
    except Conflict as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.user", uuid=uuid))
    message = _("The personal data of %(name)s was erased.", name=username)
    if erasure.directory_kept:
        message += " " + _("The LDAP directory still holds the person: only the local copy went.")
    flash(message, "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<uuid>/export")
def user_export(uuid: str):
    with console() as ctx:
        target = users.get(ctx, uuid, "users:accounts:read")
        data = gdpr.export_user(ctx, target, sessions=svc().sso_sessions)
    body = json.dumps(data, default=str, indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="user-{uuid}.json"'},
    )


@bp.route("/deletion-requests", endpoint="deletion_requests")
def deletion_requests():
    status = request.args.get("status", "pending")
    if status not in gdpr.REQUEST_FILTERS:
        status = "pending"
    page, per_page = paging()
    with console() as ctx:
        rows, total = gdpr.list_requests(ctx, status, page=page, per_page=per_page)
        return render_template(
            "admin/deletion_requests.html",
            active="admin.deletion_requests",
            requests=rows,
            total=total,
            page=page,
            per_page=per_page,
            req_status=status,
        )


def _decide(request_id: int, approve: bool):
    note = (request.form.get("note") or "").strip()[:2000] or None
    try:
        with console() as ctx:
            decision = gdpr.decide(
                ctx, request_id, approve=approve, note=note, sessions=svc().sso_sessions
            )
    except (Conflict, NotFound) as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.deletion_requests"))
    tell_decision(decision)
    if approve:
        flash(_("The account of %(name)s was erased.", name=decision.username), "success")
    else:
        flash(_("The request of %(name)s was rejected.", name=decision.username), "success")
    return redirect(url_for("admin.deletion_requests"))


@bp.route("/deletion-requests/<int:request_id>/approve", methods=["POST"])
def deletion_request_approve(request_id: int):
    return _decide(request_id, True)


@bp.route("/deletion-requests/<int:request_id>/reject", methods=["POST"])
def deletion_request_reject(request_id: int):
    return _decide(request_id, False)
