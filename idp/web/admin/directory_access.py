"""Admin console: access requests and temporary grants (``/admin/access``).

Pending requests with approve / deny (the reason lands in the decision's audit row); the
temporary grants (role assignments and memberships with an end) with revoke; and a form to
grant a role to a user until a time. What an administrator sees is what ``idp.manage.access``
lets them see: a delegated administrator sees the requests and grants of their subtree."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import Forbidden
from ...manage import access as manage_access
from ...manage import roles as manage_roles
from ...manage import users as manage_users
from .blueprint import bp
from .directory import user_by_name
from .directory_common import BadTime, attempt, refusals, text, until
from .guard import console
from .paging import paging, whole_number

STATUSES = ("pending", "approved", "rejected", "cancelled")
STATES = ("active", "expired", "all")


def _access_page(errors: dict[str, str] | None = None, status: int = 200):
    page, per_page = paging()
    wanted = request.args.get("status", "pending")
    req_status = wanted if wanted in STATUSES else None
    state = request.args.get("state") if request.args.get("state") in STATES else "active"
    gpage = whole_number(request.args.get("gpage")) or 1
    with refusals(), console() as ctx:
        try:
            requests, total = manage_access.list_requests(
                ctx, manage_access.AccessQuery(status=req_status, page=page, per_page=per_page)
            )
        except Forbidden:  # may see grants but no requests: that part stays hidden
            requests, total = None, 0
        try:
            grants, grants_total = manage_access.list_grants(
                ctx, manage_access.GrantQuery(state=state, page=gpage, per_page=25)
            )
        except Forbidden:
            grants, grants_total = None, 0
        if requests is None and grants is None:
            raise Forbidden("permission users:access:read or users:roles:read is required")
        roles = []
        if ctx.allowed("roles:roles:read"):
            roles, _n = manage_roles.search(ctx, manage_roles.RoleQuery(per_page=100))
        return render_template(
            "admin/access.html",
            active="admin.access",
            requests=requests,
            total=total,
            page=page,
            per_page=per_page,
            req_status=req_status or "",
            grants=grants,
            grants_total=grants_total,
            gpage=gpage,
            state=state,
            roles=roles,
            errors=errors or {},
            form=request.form,
            now=ctx.svc.clock.utcnow(),
        ), status


@bp.route("/access")
def access():
    return _access_page()


def _after(field: str, fn, done: str):
    _result, error = attempt(fn)
    if error is not None:
        return _access_page({field: error}, 409 if "already" in error else 400)
    flash(done, "success")
    return redirect(url_for("admin.access"))


@bp.route("/access/requests/<int:request_id>/approve", methods=["POST"])
def access_approve(request_id: int):
    note = text("reason", 500) or None

    def run():
        with console() as ctx:
            manage_access.decide(ctx, request_id, approve=True, note=note)

    return _after(f"request-{request_id}", run, _("Request approved."))


@bp.route("/access/requests/<int:request_id>/deny", methods=["POST"])
def access_deny(request_id: int):
    note = text("reason", 500) or None

    def run():
        with console() as ctx:
            manage_access.decide(ctx, request_id, approve=False, note=note)

    return _after(f"request-{request_id}", run, _("Request denied."))


@bp.route("/access/grants/<grant_id>/revoke", methods=["POST"])
def access_revoke(grant_id: str):
    def run():
        with console() as ctx:
            manage_access.revoke_grant(ctx, grant_id[:100])

    return _after("grants", run, _("Temporary grant revoked."))


@bp.route("/access/grants", methods=["POST"])
def access_grant():
    """Give a user a role until a time (a temporary grant)."""
    username = text("username", 200)
    role_id = whole_number(request.form.get("role_id"))
    errors = {}
    try:
        expires_at = until("expires_at")
    except BadTime:
        expires_at, errors["expires_at"] = None, _("Enter a date and time.")
    if expires_at is None and "expires_at" not in errors:
        errors["expires_at"] = _("A temporary grant needs an end.")
    if not username:
        errors["username"] = _("Enter a username.")
    if role_id is None:
        errors["role_id"] = _("Choose a role.")
    if errors:
        return _access_page(errors, 400)

    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            user = user_by_name(ctx, username, "users:roles:assign")
            manage_users.assign_role(ctx, user, role, expires_at=expires_at)

    _result, error = attempt(run)
    if error is not None:
        field = "expires_at" if "expir" in error else "username"
        return _access_page({field: error}, 400)
    flash(_("%(user)s holds the role until the time given.", user=username), "success")
    return redirect(url_for("admin.access"))
