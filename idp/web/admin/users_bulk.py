"""Admin console: importing users from a spreadsheet, and batch actions on selected users.

Import (``/admin/users/import``): the file is uploaded once and kept server-side
(``import_jobs``); a dry run reports what every row would do; "Import" runs the same file for
real; both run in a background thread with a progress page for large files. The operation is
``idp.manage.user_import.import_users``, as for ``POST /api/v1/users/import``, with the same
limits (``[api] import_max_bytes`` / ``import_max_rows``).

Batch (``/admin/users/batch``): the user list's checkboxes post here; a confirmation page
names the users and the action; confirming runs ``idp.manage.users_batch`` (each user with
their own permission check and transaction) and shows what was done and what failed."""

from __future__ import annotations

import csv
import io

from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...errors import Forbidden, IdPError, NotFound
from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...manage import users_batch as batch_ops
from ...manage.context import Context
from ...manage.user_import import MATCH_KEYS
from ...manage.user_sheet import COLUMNS, CSV_MEDIA_TYPE
from ..current import svc
from ..password import send_reset_link
from . import import_jobs
from .blueprint import bp
from .guard import console

# How long the upload (or "Import") request waits for its run before showing the progress
# page instead: a small file's preview appears at once, a large one's progress is shown.
WAIT_SECONDS = 3.0
ROWS_PER_PAGE = 100
# Room for the multipart envelope and the form fields around the file itself.
_ENVELOPE = 64 * 1024

IMPORT_PERMISSION = "users:accounts:create"


def _upload_limit():
    """Before the guard reads the form (for the CSRF token): the import's own size limit on
    the upload request, which may be larger than the app-wide one (a workbook of 10 MB)."""
    if request.endpoint == "admin.users_import" and request.method == "POST":
        request.max_content_length = svc().settings.api.import_max_bytes + _ENVELOPE


bp.before_request_funcs.setdefault(None, []).insert(0, _upload_limit)


def _owner() -> int:
    return int(g.admin_actor.user_id)


def _may_import(ctx: Context) -> None:
    if not ctx.allowed(IMPORT_PERMISSION) and not ctx.allowed("users:accounts:update"):
        abort(403)


# --- import ---------------------------------------------------------------------------------------


def _form(error: str | None = None, status: int = 200, **values):
    limits = svc().settings.api
    return render_template(
        "admin/import.html",
        active="admin.users_import",
        error=error,
        max_bytes=limits.import_max_bytes,
        max_rows=limits.import_max_rows,
        match=values.get("match", "email"),
        atomic=values.get("atomic", False),
    ), status


@bp.route("/users/import", methods=["GET", "POST"])
def users_import():
    with console() as ctx:
        _may_import(ctx)
    if request.method == "GET":
        return _form()
    match = request.form.get("match", "email")
    atomic = request.form.get("atomic") == "on"
    if match not in MATCH_KEYS:
        return _form(_("Choose how existing users are found."), 400, atomic=atomic)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _form(_("Choose a CSV or XLSX file."), 400, match=match, atomic=atomic)
    limit = svc().settings.api.import_max_bytes
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        message = _("The file is larger than the limit of %(size)s.", size=_size(limit))
        return _form(message, 413, match=match, atomic=atomic)
    job = import_jobs.create(_owner(), data, upload.filename, match, atomic)
    _start(job, dry_run=True)
    job = import_jobs.find(job.id, _owner())
    if job is not None and job.state == "refused":
        error = job.meta["error"]
        import_jobs.discard(job)
        return _form(
            _("The file was refused: %(reason)s", reason=error), 400, match=match, atomic=atomic
        )
    return redirect(url_for("admin.users_import_job", job_id=job.id if job else "-"), 303)


def _start(job, *, dry_run: bool) -> None:
    thread = import_jobs.start(job, g.admin_actor, dry_run=dry_run)
    thread.join(WAIT_SECONDS)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def _job(job_id: str):
    job = import_jobs.find(job_id, _owner())
    if job is None:
        raise NotFound("no such upload")
    return job


@bp.route("/users/import/<job_id>")
def users_import_job(job_id: str):
    with console() as ctx:
        _may_import(ctx)
    try:
        job = _job(job_id)
    except NotFound:
        return render_template("admin/import_gone.html", active="admin.users_import"), 404
    done, total = job.progress()
    result = job.result() if job.state in ("preview", "done") else None
    show = request.args.get("show", "all")
    rows, page, pages = [], 1, 1
    if result is not None:
        rows = [r for r in result["rows"] if show != "failed" or r["status"] == "failed"]
        pages = max(1, (len(rows) + ROWS_PER_PAGE - 1) // ROWS_PER_PAGE)
        page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
        rows = rows[(page - 1) * ROWS_PER_PAGE : page * ROWS_PER_PAGE]
    running = job.state in import_jobs.RUNNING
    titles = {
        "previewing": _("Checking the file"),
        "importing": _("Import in progress"),
        "preview": _("Check the import"),
        "done": _("Import report"),
    }
    return render_template(
        "admin/import_job.html",
        active="admin.users_import",
        title=titles.get(job.state, _("The file was refused")),
        running=running,
        job=job,
        done=done,
        total=total,
        result=result,
        rows=rows,
        show=show,
        page=page,
        pages=pages,
        names=(result or {}).get("names", {}),
    ), 409 if job.state in ("refused", "error") else 200


@bp.route("/users/import/<job_id>/status.json")
def users_import_status(job_id: str):
    with console() as ctx:
        _may_import(ctx)
    job = import_jobs.find(job_id, _owner())
    if job is None:
        return {"state": "gone"}, 404
    done, total = job.progress()
    return {
        "state": job.state,
        "done": done,
        "total": total,
        "url": url_for("admin.users_import_job", job_id=job.id),
    }


@bp.route("/users/import/<job_id>/apply", methods=["POST"])
def users_import_apply(job_id: str):
    with console() as ctx:
        _may_import(ctx)
    try:
        job = _job(job_id)
    except NotFound:
        return render_template("admin/import_gone.html", active="admin.users_import"), 404
    if job.state != "preview":
        flash(_("This file is not waiting to be imported."), "warning")
        return redirect(url_for("admin.users_import_job", job_id=job.id), 303)
    _start(job, dry_run=False)
    return redirect(url_for("admin.users_import_job", job_id=job.id), 303)


@bp.route("/users/import/<job_id>/discard", methods=["POST"])
def users_import_discard(job_id: str):
    with console() as ctx:
        _may_import(ctx)
    job = import_jobs.find(job_id, _owner())
    if job is not None and job.state not in import_jobs.RUNNING:
        import_jobs.discard(job)
        flash(_("The uploaded file was deleted."), "info")
    return redirect(url_for("admin.users_import"), 303)


TEMPLATE_COLUMNS = ("username", "email", "given_name", "family_name", "groups", "roles")


@bp.route("/users/import/template.csv")
def users_import_template():
    with console() as ctx:
        _may_import(ctx)
    assert set(TEMPLATE_COLUMNS) <= set(COLUMNS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_COLUMNS)
    writer.writerow(["jdoe", "jdoe@example.org", "Jane", "Doe", "staff;staff/it", ""])
    return Response(
        out.getvalue(),
        content_type=CSV_MEDIA_TYPE + "; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="users-template.csv"'},
    )


# --- batch actions --------------------------------------------------------------------------------

ACTION_LABELS = {
    "password_reset": _l("Send password-reset mails"),
    "assign_role": _l("Assign a role"),
    "add_to_group": _l("Add to a group"),
    "remove_from_group": _l("Remove from a group"),
    "deactivate": _l("Deactivate"),
    "end_sessions": _l("End all sessions"),
}


CHOICES_LIMIT = 500


@bp.app_template_global("admin_batch_choices")
def batch_choices() -> dict[str, object]:
    """What the batch bar (``admin/_batch_bar.html``) offers: the actions, and the global roles
    and the groups the administrator may read (the first :data:`CHOICES_LIMIT` of each)."""
    with console() as ctx:
        try:
            roles, _n = manage_roles.search(
                ctx, manage_roles.RoleQuery(kind="global", per_page=CHOICES_LIMIT)
            )
        except Forbidden:
            roles = []
        try:
            groups, _n = manage_groups.search(ctx, manage_groups.GroupQuery(per_page=CHOICES_LIMIT))
        except Forbidden:
            groups = []
        return {
            "actions": ACTION_LABELS,
            "roles": [r.name for r in roles],
            "groups": [gr.path for gr in groups],
        }


@bp.route("/users/batch", methods=["POST"])
def users_batch():
    form = request.form
    try:
        req = batch_ops.request(
            form.get("action", ""),
            form.getlist("user"),
            form.get("role"),
            form.get("group"),
        )
    except IdPError as exc:
        return _batch_refused(str(exc), 400)
    try:
        with console() as ctx:
            targets = batch_ops.check(ctx, req)
    except NotFound as exc:
        return _batch_refused(str(exc), 404)
    except Forbidden:
        abort(403)
    if form.get("confirm") != "yes":
        return render_template(
            "admin/batch_confirm.html",
            active="admin.users",
            req=req,
            label=ACTION_LABELS[req.action],
            targets=targets,
            users_url=_users_url(),
            unreachable=len(req.user_ids) - len(targets),
        )
    result = batch_ops.run(
        svc(), g.admin_actor, req, sessions=svc().sso_sessions, send_reset=send_reset_link
    )
    return render_template(
        "admin/batch_result.html",
        active="admin.users",
        req=req,
        label=ACTION_LABELS[req.action],
        result=result,
        users_url=_users_url(),
    )


def _users_url() -> str | None:
    """The user list, when the console has one."""
    return url_for("admin.users") if "admin.users" in current_app.view_functions else None


def _batch_refused(message: str, status: int):
    return render_template(
        "admin/batch_result.html",
        active="admin.users",
        users_url=_users_url(),
        error=message,
        req=None,
        result=None,
        label=None,
    ), status
