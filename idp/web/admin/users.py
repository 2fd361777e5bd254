"""Admin console: the users screens (``docs/admin.md``, "Users").

- ``/admin/users`` (admin.users): search, filters, sort and pages in SQL
  (``idp.manage.users.search``), the export of the same filtered list (``user_export``), a
  checkbox per row for the batch actions of ``users_bulk.py``;
- ``/admin/users/new`` (admin.user_new): a new local user, or a directory (LDAP) account
  provisioned by its username as its first sign-in would;
- ``/admin/users/<uuid>`` (admin.user): profile, place, groups, roles and effective
  permissions with their sources, sessions, second factors, recent activity, and the account
  actions (lock, unlock, passwords, MFA reset, sessions, refresh from LDAP, delete).

Thin, as the REST API is: parse the form, call ``idp.manage`` (permission checks, delegation
scopes, audit rows), then flash + redirect, or the form again with the error beside its field
and nothing changed. A user outside the administrator's reach is 404 (``users.get``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wsgi import FileWrapper

from ...errors import Conflict, Forbidden, NotFound, ValidationError, new_reference
from ...manage import Context, directory_users, org, photos, user_export, users
from ...manage import audit as manage_audit
from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...manage import sessions as manage_sessions
from ...storage import terms
from ...storage.directory import NewUser
from ..current import svc
from ..devices import session_views
from ..events import event_label
from ..password_policy import policy_help, violation_text
from ..photo_text import refusal_text
from .blueprint import bp
from .guard import console
from .paging import paging
from .user_devices import device_rows

FILTERS = (
    "q",
    "company",
    "department",
    "position",
    "group",
    "status",
    "employment",
    "start_from",
    "start_to",
    "end_from",
    "end_to",
    "sort",
)
SORTS = {
    "family_name": _l("Name (A–Z)"),
    "-family_name": _l("Name (Z–A)"),
    "username": _l("Username (A–Z)"),
    "-username": _l("Username (Z–A)"),
    "email": _l("E-mail (A–Z)"),
    "-created_at": _l("Newest first"),
    "created_at": _l("Oldest first"),
    "start_date": _l("Start date (earliest first)"),
    "-start_date": _l("Start date (latest first)"),
    "end_date": _l("End date (earliest first)"),
    "-last_login_at": _l("Last sign-in (latest first)"),
}
STATUS_LABELS = {
    "active": (_l("Active"), "ok"),
    "inactive": (_l("Inactive"), "info"),
    "locked": (_l("Locked"), "bad"),
    "pending": (_l("Pending approval"), "warn"),
    "expired": (_l("Expired"), "warn"),
}
EMPLOYMENT_LABELS = {
    "current": _l("Current"),
    "future": _l("Starts later"),
    "past": _l("Left"),
    "none": _l("No dates"),
}


def _status_badge(status: str) -> tuple[str, str]:
    label, style = STATUS_LABELS.get(status, (status, "info"))
    return str(label), style


@bp.app_template_global("user_status_badge")
def _status_badge_global(status: str) -> tuple[str, str]:
    return _status_badge(status)


# --- errors beside their fields -------------------------------------------------------------

# manage's messages name the field ("email: already used by another user"); the console says
# it in the administrator's language where it knows the case, else shows manage's words.
_KNOWN: dict[tuple[type, str], Any] = {
    (Conflict, "username"): _l("This username is already taken."),
    (Conflict, "email"): _l("Another user already has this e-mail address."),
    (Conflict, "end_date"): _l("The end date is before the start date."),
    (ValidationError, "username"): _l(
        "Use 1 to 150 letters, digits or . _ @ + -, starting with a letter or digit."
    ),
    (ValidationError, "email"): _l("This is not an e-mail address."),
    (ValidationError, "phone"): _l("Use digits, spaces and + ( ) . / - only."),
    (ValidationError, "color"): _l("Choose a colour as #rrggbb."),
    (ValidationError, "locale"): _l("A language tag such as de or pt-BR."),
    (ValidationError, "timezone"): _l("An IANA time zone such as Europe/Berlin."),
}


def _field_error(exc: Exception) -> tuple[str, str]:
    """(field, message) for a manage error; field "" when it names none."""
    if isinstance(exc, users.PasswordRejected):
        return "password", " ".join(violation_text(v) for v in exc.violations)
    text = str(exc)
    if isinstance(exc, Conflict) and text.startswith("user ") and "already exists" in text:
        text = "username: " + text  # the directory's own words for a taken username
    elif isinstance(exc, Conflict) and text.startswith("e-mail "):
        text = "email: " + text
    name, sep, detail = text.partition(": ")
    if not sep or not name.isidentifier():
        return "", text
    for kind in type(exc).__mro__:
        if (kind, name) in _KNOWN:
            return name, str(_KNOWN[(kind, name)])
    return name, detail


def _date_field(form: dict[str, str], name: str, errors: dict[str, str]) -> date | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = _("Enter a date as YYYY-MM-DD.")
        return None


# --- the list ------------------------------------------------------------------------------


@dataclass
class ListArgs:
    """The list's query string, checked: what the form shows back and the pages keep."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    page: int = 1
    per_page: int = 25

    def query(self) -> users.UserQuery:
        v = self.values
        dates = {}
        for name in ("start_from", "start_to", "end_from", "end_to"):
            dates[name] = _date_field(v, name, self.errors)
        for low, high in (("start_from", "start_to"), ("end_from", "end_to")):
            if dates[low] and dates[high] and dates[high] < dates[low]:
                self.errors[high] = _("The range ends before it starts.")
        return users.UserQuery(
            q=v.get("q") or None,
            company=v.get("company") or None,
            department=v.get("department") or None,
            group=v.get("group") or None,
            position=v.get("position") or None,
            status=v.get("status") if v.get("status") in STATUS_LABELS else None,
            employment=v.get("employment") if v.get("employment") in EMPLOYMENT_LABELS else None,
            sort=v.get("sort") if v.get("sort") in SORTS else "family_name",
            page=self.page,
            per_page=self.per_page,
            **dates,
        )


def _list_args() -> ListArgs:
    args = ListArgs()
    for name in FILTERS:
        value = request.args.get(name, "").strip()
        if value and len(value) <= 200:
            args.values[name] = value
    args.page, args.per_page = paging()
    return args


def _org_choices(ctx: Context, company: str | None) -> dict[str, Any]:
    """Companies, and the chosen company's departments and positions, for the selects (empty
    lists when the administrator may not read the organisation: the fields are then text)."""
    out: dict[str, Any] = {"companies": [], "departments": [], "positions": [], "org": False}
    if not ctx.allowed("org:companies:read"):
        return out
    out["org"] = True
    out["companies"] = org.search_companies(ctx, per_page=500)[0]
    if company:
        try:
            chosen = org.find_company(ctx, company)
        except NotFound:
            return out
        if ctx.allowed("org:departments:read"):
            out["departments"] = org.search_departments(ctx, company=chosen.id, per_page=500)[0]
        if ctx.allowed("org:positions:read"):
            out["positions"] = org.search_positions(ctx, chosen.id, per_page=500)[0]
    return out


@bp.route("/users", endpoint="users")  # the sidebar's endpoint name (nav.py)
def users_list():
    args = _list_args()
    query = args.query()
    with console() as ctx:
        if args.errors:
            rows, total = [], 0
        else:
            rows, total = users.search(ctx, query)
        choices = _org_choices(ctx, args.values.get("company"))
        may_create = ctx.allowed("users:accounts:create")
        html = render_template(
            "admin/users.html",
            active="admin.users",
            rows=rows,
            total=total,
            args=args,
            sorts=SORTS,
            statuses=STATUS_LABELS,
            employment=EMPLOYMENT_LABELS,
            may_create=may_create,
            **choices,
        )
    return html, 400 if args.errors else 200


@bp.route("/users/export")
def users_export():
    args = _list_args()
    kind = request.args.get("format", "csv")
    query = args.query()
    if kind not in user_export.FORMATS or args.errors:
        abort(400)
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    try:
        with console() as ctx:
            user_export.export_users(ctx, query, kind, out)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    stamp = svc().clock.utcnow().strftime("%Y%m%d-%H%M%S")
    media = (
        "text/csv; charset=utf-8"
        if kind == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp = Response(FileWrapper(out, 64 * 1024), content_type=media, direct_passthrough=True)
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="users-{stamp}.{kind}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.call_on_close(out.close)
    return resp


# --- create -------------------------------------------------------------------------------------

NEW_FIELDS = (
    "username",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "phone",
    "company",
    "department",
    "position",
    "start_date",
    "end_date",
    "color",
    "first_access",
    "source",
)


def _photo(upload) -> tuple[str | None, str | None]:
    """(stored file name, None) or (None, error): the one set of picture rules
    (``idp.manage.photos``) — JPEG or PNG, at most 2 MB, at least 200×200 px — re-encoded
    (metadata dropped) to a 256 px PNG."""
    if upload is None or not upload.filename:
        return None, None
    try:
        return photos.store(svc(), upload.stream.read(photos.MAX_BYTES + 1)), None
    except photos.PhotoRefused as exc:
        return None, refusal_text(exc)


def _drop_photo(name: str | None) -> None:
    photos.drop(svc(), name)


def _new_form_page(ctx: Context, form: dict[str, Any], errors: dict[str, str], status: int):
    choices = _org_choices(ctx, form.get("company") or None)
    roles = (
        manage_roles.search(ctx, manage_roles.RoleQuery(kind="global", per_page=200))[0]
        if ctx.allowed("roles:roles:read")
        else []
    )
    groups = (
        manage_groups.search(ctx, manage_groups.GroupQuery(per_page=500))[0]
        if ctx.allowed("groups:groups:read")
        else []
    )
    return render_template(
        "admin/users_new.html",
        active="admin.users",
        form=form,
        errors=errors,
        roles=roles,
        groups=groups,
        ldap=bool(svc().settings.ldap.enabled),
        **choices,
    ), status


def _new_form() -> dict[str, Any]:
    form: dict[str, Any] = {k: (request.form.get(k) or "").strip() for k in NEW_FIELDS}
    form["roles"] = request.form.getlist("roles")
    form["groups"] = request.form.getlist("groups")
    form["require_mfa"] = request.form.get("require_mfa") == "on"
    form["must_change_password"] = request.form.get("must_change_password") == "on"
    form["password"] = request.form.get("password") or ""
    return form


@bp.route("/users/new", methods=["GET", "POST"])
def user_new():
    if request.method == "GET":
        with console() as ctx:
            ctx.require("users:accounts:create")
            form = {k: "" for k in NEW_FIELDS} | {
                "roles": [],
                "groups": [],
                "source": "local",
                "first_access": "reset",
            }
            return _new_form_page(ctx, form, {}, 200)
    form = _new_form()
    if request.form.get("refresh"):  # "Update choices": the company's departments, positions
        with console() as ctx:
            ctx.require("users:accounts:create")
            return _new_form_page(ctx, form, {}, 200)
    if form["source"] == "ldap":
        return _wrap_directory_user(form)
    return _create_local(form)


def _create_local(form: dict[str, Any]):
    errors: dict[str, str] = {}
    if not form["username"]:
        errors["username"] = _("Enter a username.")
    elif not users.valid_username(form["username"]):
        errors["username"] = str(_KNOWN[(ValidationError, "username")])
    if form["email"] and not users.EMAIL_RE.fullmatch(form["email"].lower()):
        errors["email"] = str(_KNOWN[(ValidationError, "email")])
    start = _date_field(form, "start_date", errors)
    end = _date_field(form, "end_date", errors)
    if start and end and end < start:
        errors["end_date"] = _("The end date is before the start date.")
    if form["first_access"] in ("reset", "magic") and not form["email"]:
        errors["email"] = _("A first-access mail needs an e-mail address.")
    if form["color"] and not users.COLOR_RE.match(form["color"]):
        errors["color"] = _("Choose a colour as #rrggbb.")
    photo, problem = (None, None)
    if not errors:
        photo, problem = _photo(request.files.get("photo"))
        if problem:
            errors["photo"] = problem
    created: tuple[int, str, str | None] | None = None
    status = 400
    try:
        with console() as ctx:
            ctx.require("users:accounts:create")
            if errors:
                return _new_form_page(ctx, form, errors, 400)
            try:
                user = _create(ctx, form, start, end, photo)
                created = (user.id, user.uuid, user.username)
            except (Conflict, ValidationError, NotFound) as exc:
                name, message = _field_error(exc)
                errors[name if name in NEW_FIELDS + ("password", "roles", "groups") else ""] = (
                    message
                )
                status = 409 if isinstance(exc, Conflict) else 400
                raise _Refused from exc
    except _Refused:
        _drop_photo(photo)
        with console() as ctx:
            return _new_form_page(ctx, form, errors, status)
    except BaseException:
        _drop_photo(photo)
        raise
    user_id, uuid, username = created
    if form["first_access"] in ("reset", "magic"):
        _send_first_access(user_id, form["first_access"])
    flash(_("The user %(name)s was created.", name=username), "success")
    return redirect(url_for("admin.user", uuid=uuid))


class _Refused(Exception):
    """Leave the console transaction (rolled back, its audit rows too) to show the form."""


def _create(ctx: Context, form: dict[str, Any], start, end, photo: str | None):
    d = ctx.directory
    for ref in form["roles"]:
        try:
            d.role_by_name(ref)
        except NotFound:
            raise NotFound(f"roles: no such role {ref!r}") from None
    for ref in form["groups"]:
        try:
            d.group_by_path(ref)
        except NotFound:
            raise NotFound(f"groups: no such group {ref!r}") from None
    new = NewUser(
        username=form["username"],
        email=form["email"] or None,
        given_name=form["given_name"] or None,
        family_name=form["family_name"] or None,
        start_date=start,
        end_date=end,
    )
    extra = {k: form[k] for k in ("display_name", "phone", "color") if form[k]}
    user = users.create(
        ctx,
        new,
        password=form["password"] or None,
        groups=form["groups"],
        roles=form["roles"],
        must_change_password=form["must_change_password"],
        require_mfa=form["require_mfa"],
        check_password_policy=True,
        fields=extra,
    )
    _place(ctx, user, form)
    if photo:
        user.avatar = photo
        ctx.db.flush()
        ctx.audit("user.updated", user.uuid, fields=["avatar"])
    return user


def _place(ctx: Context, user, form: dict[str, Any]) -> None:
    """Company -> department -> position, as the API's placement checks them."""
    if not (form["company"] or form["department"] or form["position"]):
        return
    d = ctx.directory
    try:
        company = d.company(form["company"]) if form["company"] else None
    except NotFound:
        raise NotFound("company: no such company") from None
    try:
        department = d.department(form["department"]) if form["department"] else None
    except NotFound:
        raise NotFound("department: no such department") from None
    if department is not None:
        if company is None:
            raise Conflict("company: choose the department's company")
        if department.company_id != company.id:
            raise Conflict("department: not in that company")
    position = None
    if form["position"]:
        if company is None:
            raise Conflict("position: choose the company first")
        try:
            position = d.position(company, form["position"])
        except NotFound:
            raise NotFound("position: not a position of that company") from None
    org.place_user(ctx, user, company=company, department=department, position=position)


def _send_first_access(user_id: int, kind: str) -> None:
    """The password reset link (``reset``) or a sign-in link (``magic``) of idp.web.password,
    sent as that page sends it (single use, audited)."""
    from ...storage.models import User
    from ..password import _mail_link, _password_version

    with svc().sessions() as db:
        user = db.get(User, user_id)
        if user is None or not user.email:
            return
        if kind == "magic":
            _mail_link(
                db,
                user,
                "magic",
                {"uid": user.id},
                "password.magic",
                _l("Your sign-in link"),
                "login.magic_link_sent",
                template="magic_link",
            )
        else:
            _mail_link(
                db,
                user,
                "reset",
                {"uid": user.id, "pv": _password_version(user)},
                "password.reset_confirm",
                _l("Set your password"),
                "password.reset_requested",
            )


def _wrap_directory_user(form: dict[str, Any]):
    """Create the local user of a directory account now (as its first sign-in would: the
    LDAP provisioning of ``idp.backends.ldap_sync``), found by its username
    (``idp.manage.directory_users.add``, as ``POST /api/v1/users/from-directory``)."""
    from ...backends.ldap import DirectoryUnavailable

    errors: dict[str, str] = {}
    if not svc().settings.ldap.enabled:
        errors["source"] = _("No directory (LDAP) is configured.")
    if not form["username"]:
        errors["username"] = _("Enter the username in the directory.")
    with console() as ctx:
        ctx.require("users:accounts:create")
        if errors:
            return _new_form_page(ctx, form, errors, 400)
    try:
        added = directory_users.add(svc(), g.admin_actor, form["username"])
    except directory_users.DirectoryNotConfigured:
        errors["source"] = _("No directory (LDAP) is configured.")
    except NotFound:
        errors["username"] = _("The directory has no account with this username.")
    except DirectoryUnavailable:
        errors["source"] = _("The directory cannot be reached. Please try again later.")
    except (Conflict, ValidationError) as exc:
        errors["username"] = str(exc)
    if errors:
        with console() as ctx:
            return _new_form_page(ctx, form, errors, 409 if "username" in errors else 503)
    uuid, username = added.uuid, added.username
    flash(_("The directory user %(name)s was added.", name=username), "success")
    return redirect(url_for("admin.user", uuid=uuid))


# --- one user ----------------------------------------------------------------------------------

PROFILE_FIELDS = (
    "username",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "phone",
    "locale",
    "timezone",
    "color",
    "start_date",
    "end_date",
)


def _user_page(uuid: str, *, profile_form=None, errors=None, password_error=None, status=200):
    with console() as ctx:
        user = users.get(ctx, uuid)
        facts = _facts(ctx, user)
        form = profile_form or {
            k: (getattr(user, k) or "")
            if k not in ("start_date", "end_date")
            else (getattr(user, k).isoformat() if getattr(user, k) else "")
            for k in PROFILE_FIELDS
        }
        form.setdefault("require_mfa", bool(user.require_mfa))
        html = render_template(
            "admin/user.html",
            active="admin.users",
            user=user,
            form=form,
            errors=errors or {},
            password_error=password_error,
            rules=policy_help(),
            **facts,
        )
    return html, status


def _facts(ctx: Context, user) -> dict[str, Any]:
    """What the page shows beyond the profile, each part only when the admin may read it."""
    out: dict[str, Any] = {"may": {}}
    may = out["may"]
    for key, permission in (
        ("update", "users:accounts:update"),
        ("delete", "users:accounts:delete"),
        ("unlock", "users:lockout:unlock"),
        ("password", "users:password:reset"),
        ("mfa", "users:mfa:reset"),
        ("sessions", "users:sessions:revoke"),
        ("roles", "users:roles:read"),
    ):
        may[key] = ctx.allowed(permission, user.id)
    may["audit"] = ctx.allowed("audit:log:read")
    out["groups"] = users.groups_of(ctx, user)
    sessions = manage_sessions.list_for_user(ctx, user, svc().sso_sessions)
    out["sessions"] = session_views(svc().geoip, sessions)
    out["devices"] = device_rows(ctx, user)
    out["roles"], out["permissions"], out["scoped"] = [], [], []
    if may["roles"]:
        out["roles"] = users.role_assignments(ctx, user)
        grants = users.permissions(ctx, user)
        # A wildcard grant ("*:*:read") cannot be explained as one permission: its source is
        # among the roles listed above it.
        out["permissions"] = [
            (p, None if "*" in p else users.explain(ctx, user, p))
            for p in sorted(grants.everywhere)
        ]
        out["scoped"] = sorted(grants.scoped)
    out["factors"] = _factors(user)
    out["terms_accepted"] = terms.acceptances(ctx.db, user.id)
    out["activity"] = []
    if may["audit"]:
        rows, _total = manage_audit.search(
            ctx, manage_audit.AuditQuery(target=user.uuid, per_page=15)
        )
        out["activity"] = [(r, event_label(r.action)) for r in rows]
    return out


def _factors(user) -> list[str]:
    """The names of the second factors the user has set up (idp.core.steps)."""
    from ...core.steps import enrolled_factors

    return [str(getattr(f, "label", f.id)) for f in enrolled_factors(svc(), user)]


@bp.route("/users/<uuid>")
def user(uuid: str):
    return _user_page(uuid)


@bp.route("/users/<uuid>/profile", methods=["POST"])
def user_profile(uuid: str):
    form = {k: (request.form.get(k) or "").strip() for k in PROFILE_FIELDS}
    form["require_mfa"] = request.form.get("require_mfa") == "on"
    errors: dict[str, str] = {}
    start = _date_field(form, "start_date", errors)
    end = _date_field(form, "end_date", errors)
    if start and end and end < start:
        errors["end_date"] = _("The end date is before the start date.")
    if errors:
        return _user_page(uuid, profile_form=form, errors=errors, status=400)
    changes: dict[str, Any] = {k: form[k] or None for k in PROFILE_FIELDS}
    changes.update(start_date=start, end_date=end, require_mfa=form["require_mfa"])
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, "users:accounts:update")
            users.update(ctx, target, changes)
    except (Conflict, ValidationError) as exc:
        name, message = _field_error(exc)
        errors[name if name in PROFILE_FIELDS else ""] = message
        status = 409 if isinstance(exc, Conflict) else 400
        return _user_page(uuid, profile_form=form, errors=errors, status=status)
    flash(_("The profile was saved."), "success")
    return redirect(url_for("admin.user", uuid=uuid))


def _action(uuid: str, permission: str, fn, done: str):
    """One account action: the user in reach for ``permission``, ``fn(ctx, user)``, a flash,
    back to the user page. A Conflict (locking oneself...) is flashed as an error instead."""
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, permission)
            fn(ctx, target)
    except Conflict as exc:
        flash(_field_error(exc)[1], "error")
        return redirect(url_for("admin.user", uuid=uuid))
    flash(done, "success")
    return redirect(url_for("admin.user", uuid=uuid))


@bp.route("/users/<uuid>/lock", methods=["POST"])
def user_lock(uuid: str):
    return _action(uuid, "users:accounts:update", users.lock, _("The account was locked."))


@bp.route("/users/<uuid>/unlock", methods=["POST"])
def user_unlock(uuid: str):
    return _action(uuid, "users:lockout:unlock", users.unlock, _("The account was unlocked."))


@bp.route("/users/<uuid>/force-password-change", methods=["POST"])
def user_force_password_change(uuid: str):
    return _action(
        uuid,
        "users:password:reset",
        users.force_password_change,
        _("The user must choose a new password at the next sign-in."),
    )


@bp.route("/users/<uuid>/password", methods=["POST"])
def user_password(uuid: str):
    password = request.form.get("password") or ""
    temporary = request.form.get("temporary") == "on"
    if not password:
        return _user_page(uuid, password_error=_("Enter a password."), status=400)
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, "users:password:reset")
            users.set_password(ctx, target, password, temporary=temporary)
    except ValidationError as exc:
        return _user_page(uuid, password_error=_field_error(exc)[1], status=400)
    flash(_("The password was set."), "success")
    return redirect(url_for("admin.user", uuid=uuid))


def _tell_mfa_reset(user, removed: list[str]) -> None:
    from ..mailing import queue_mail

    queue_mail(user.email, "mfa_reset", _l("Your second factors were reset"), user=user)


@bp.route("/users/<uuid>/reset-mfa", methods=["POST"])
def user_reset_mfa(uuid: str):
    return _action(
        uuid,
        "users:mfa:reset",
        lambda ctx, u: users.reset_mfa(ctx, u, notify=_tell_mfa_reset),
        _("Every second factor of the user was removed."),
    )


@bp.route("/users/<uuid>/sessions/end", methods=["POST"])
def user_end_sessions(uuid: str):
    wanted = request.form.get("session") or ""
    with console() as ctx:
        target = users.get(ctx, uuid, "users:sessions:revoke")
        if wanted == "all":
            keep = request.form.get("keep_offline") == "1"
            ended = manage_sessions.end_all(ctx, target, svc().sso_sessions, keep_offline=keep)
            message = (
                _("%(n)s sessions were ended; apps with offline access stay signed in.", n=ended)
                if keep
                else _("%(n)s sessions were ended.", n=ended)
            )
        elif manage_sessions.end_one(ctx, target, svc().sso_sessions, wanted):
            message = _("The session was ended.")
        else:
            message = None
    if message is None:
        flash(_("That session had already ended."), "warning")
    else:
        flash(message, "success")
    return redirect(url_for("admin.user", uuid=uuid))


@bp.route("/users/<uuid>/ldap-refresh", methods=["POST"])
def user_ldap_refresh(uuid: str):
    from ...backends.ldap import DirectoryUnavailable

    try:
        directory_users.refresh_user(svc(), g.admin_actor, uuid)
    except directory_users.NotADirectoryUser:
        abort(404)
    except directory_users.DirectoryNotConfigured:
        flash(_("No directory (LDAP) is configured."), "error")
        return redirect(url_for("admin.user", uuid=uuid))
    except DirectoryUnavailable:
        flash(_("The directory cannot be reached. Please try again later."), "error")
        return redirect(url_for("admin.user", uuid=uuid))
    flash(_("The user was read again from the directory."), "success")
    return redirect(url_for("admin.user", uuid=uuid))


def confirm_by_username(uuid: str, template: str) -> tuple[Any, str]:
    """A page that acts on a user only once their username is typed (delete, erase): (the
    page to answer — the form on GET, the form with an error (400) on a wrong name — or None
    when the POSTed name is right and the caller acts, the username)."""
    with console() as ctx:
        target = users.get(ctx, uuid, "users:accounts:delete")
        username = target.username
        if request.method == "GET":
            return render_template(template, active="admin.users", user=target), username
        if request.form.get("confirm_username", "").strip() != username:
            html = render_template(
                template,
                active="admin.users",
                user=target,
                error=_("Type the username %(name)s to confirm.", name=username),
            )
            return (html, 400), username
    return None, username


@bp.route("/users/<uuid>/delete", methods=["GET", "POST"])
def user_delete(uuid: str):
    page, username = confirm_by_username(uuid, "admin/user_delete.html")
    if page is not None:
        return page
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, "users:accounts:delete")
            users.delete(ctx, target, sessions=svc().sso_sessions)
    except Conflict as exc:
        flash(_field_error(exc)[1], "error")
        return redirect(url_for("admin.user", uuid=uuid))
    flash(_("The user %(name)s was deleted.", name=username), "success")
    return redirect(url_for("admin.users"))


def _error_page(code: int, title: str, message: str):
    return render_template(
        "error.html", code=code, title=title, message=message, reference=new_reference()
    ), code


@bp.errorhandler(Forbidden)
def _forbidden(exc: Forbidden):
    """manage's refusals on console pages are the 403 page (the API answers its own way)."""
    return _error_page(403, _("Forbidden"), _("You may not do this."))


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    """Missing, or outside a delegated administrator's reach: the same 404 page."""
    return _error_page(404, _("Not found"), _("There is nothing here."))
