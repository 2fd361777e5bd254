"""Admin console: the "Session limit" page of a role and of a group
(``/admin/roles/<id>/session-limit``, ``/admin/groups/<id>/session-limit``), linked from the
role's and the group's screen: the most SSO sessions each holder / member may have at once,
saved through ``idp.manage.session_limits`` (the same checks, permissions and audit rows as
``PUT /api/v1/.../session-limit``). An empty field removes the limit; anything but a whole
number from 1 to 10000 is refused beside the field and nothing is stored."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...manage import session_limits as limits
from ..current import svc
from .apps_common import mapped
from .blueprint import bp
from .guard import console

# What each page reads and writes, by scope kind: find, read, write, the update permission,
# the sidebar entry and the list page.
_KINDS = {
    "role": (
        manage_roles.get,
        limits.of_role,
        limits.set_for_role,
        "roles:roles:update",
        "admin.roles",
    ),
    "group": (
        manage_groups.get,
        limits.of_group,
        limits.set_for_group,
        "groups:groups:update",
        "admin.groups",
    ),
}


def _parsed(text: str) -> int | None:
    """The field's value: None for empty; ValueError for anything but 1..MAX."""
    text = text.strip()
    if not text:
        return None
    # ASCII digits only: int() would also take "٣" or "1_0".
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    value = int(text)
    if not 1 <= value <= limits.MAX:
        raise ValueError(text)
    return value


def _page(kind: str, key: int):
    find, read, write, permission, active = _KINDS[kind]
    errors: dict[str, str] = {}
    submitted = None
    if request.method == "POST":
        submitted = (request.form.get("max_sessions") or "")[:20]
        try:
            value = _parsed(submitted)
        except ValueError:
            errors["max_sessions"] = _(
                "Enter a whole number from 1 to %(max)s, or leave it empty for no limit.",
                max=limits.MAX,
            )
        else:
            with console() as ctx:
                target = find(ctx, key)
                before = read(ctx, target)
                if before != value:
                    write(ctx, target, value)
            if before == value:
                flash(_("Nothing changed."), "info")
            elif value is None:
                flash(_("The session limit was removed."), "success")
            else:
                flash(_("Session limit saved: at most %(n)s sessions at once.", n=value), "success")
            return redirect(request.path)
    with console() as ctx:
        target = find(ctx, key)
        current = read(ctx, target)
        may_update = ctx.allowed(permission)
        name = target.name
        if kind == "role":
            back = url_for("admin.role", role_id=target.id)
            crumbs = [(url_for("admin.roles"), _("Roles")), (back, name)]
        else:
            back = url_for("admin.group", group_id=target.id)
            crumbs = [(url_for("admin.groups"), _("Groups")), (back, name)]
    return render_template(
        "admin/session_limit.html",
        active=active,
        kind=kind,
        name=name,
        crumbs=crumbs,
        back=back,
        current=current,
        value=submitted if submitted is not None else ("" if current is None else current),
        default=svc().settings.session.max_per_user,
        errors=errors,
        may_update=may_update,
        maximum=limits.MAX,
    ), (400 if errors else 200)


@bp.route("/roles/<int:role_id>/session-limit", methods=["GET", "POST"])
@mapped
def role_session_limit(role_id: int):
    return _page("role", role_id)


@bp.route("/groups/<int:group_id>/session-limit", methods=["GET", "POST"])
@mapped
def group_session_limit(group_id: int):
    return _page("group", group_id)
