"""Admin console: roles (``/admin/roles``) and permission groups (``/admin/permission-groups``).

A role's page shows its permissions (add: module:feature:action with ``*`` wildcards, checked
by ``idp.manage``; remove), the roles it includes (composites; a cycle is refused), its
permission groups, the permissions it carries in effect, who holds it (delegated holders with
their company / department scope: grant and revoke here), and deletion (refused while in use,
with the usage shown). The seeded role templates are marked; "new role from a template" copies
the template's permissions into a new role."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import ValidationError
from ...manage import org as manage_org
from ...manage import permission_groups as manage_pgs
from ...manage import roles as manage_roles
from ...manage import users as manage_users
from ...manage.context import Context
from .blueprint import bp
from .directory import user_by_name
from .directory_common import (
    BadTime,
    attempt,
    optional,
    permission_lines,
    refusals,
    text,
    until,
)
from .guard import console
from .paging import paging, whole_number

KINDS = ("global", "client")


def _roles_page(error: str | None = None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:200]
    kind = request.args.get("kind") if request.args.get("kind") in KINDS else None
    page, per_page = paging()
    with refusals(), console() as ctx:
        rows, total = manage_roles.search(
            ctx, manage_roles.RoleQuery(q=q or None, kind=kind, page=page, per_page=per_page)
        )
        perms = manage_roles.permissions_of(ctx, [r.id for r in rows])
        templates, _n = manage_roles.search(
            ctx, manage_roles.RoleQuery(kind="global", per_page=100)
        )
        return render_template(
            "admin/roles.html",
            active="admin.roles",
            roles=rows,
            perms=perms,
            templates=[t for t in templates if t.template],
            total=total,
            page=page,
            per_page=per_page,
            q=q,
            kind=kind or "",
            may_create=ctx.allowed("roles:roles:create"),
            form=request.form,
            error=error,
        ), status


@bp.route("/roles")
def roles():
    return _roles_page()


@bp.route("/roles", methods=["POST"])
def roles_create():
    name = text("name", 200)
    template_id = whole_number(request.form.get("template_id"))

    def run():
        with console() as ctx:
            permissions = permission_lines(text("permissions", 20_000))
            if template_id is not None:
                template = manage_roles.get(ctx, template_id)
                permissions = manage_roles.details(ctx, template).permissions + permissions
            return manage_roles.create(
                ctx, name, permissions, description=optional("description")
            ).id

    role_id, error = attempt(run)
    if error is not None:
        return _roles_page(error, 409 if "exists" in error else 400)
    flash(_("Role %(name)s created.", name=name), "success")
    return redirect(url_for("admin.role", role_id=role_id))


def _role_page(role_id: int, errors: dict[str, str] | None = None, status: int = 200):
    page, per_page = paging()
    with refusals(), console() as ctx:
        role = manage_roles.get(ctx, role_id)
        details = manage_roles.details(ctx, role)
        usage = manage_roles.usage(ctx, role)
        holders, total = manage_roles.holders(ctx, role, page=page, per_page=per_page)
        others, _n = manage_roles.search(ctx, manage_roles.RoleQuery(per_page=100))
        included = {r.id for r in details.composites}
        pgs = manage_pgs.list_all(ctx) if ctx.allowed("roles:permission_groups:read") else []
        attached = {p.id for p in details.permission_groups}
        companies, departments = _scopes(ctx)
        return render_template(
            "admin/role.html",
            active="admin.roles",
            role=role,
            details=details,
            usage=usage,
            holders=holders,
            total=total,
            page=page,
            per_page=per_page,
            composite_choices=[r for r in others if r.id != role.id and r.id not in included],
            pg_choices=[p for p in pgs if p.id not in attached],
            companies=companies,
            departments=departments,
            may_update=ctx.allowed("roles:roles:update"),
            may_delete=ctx.allowed("roles:roles:delete"),
            may_assign=ctx.allowed("users:roles:assign"),
            errors=errors or {},
            form=request.form,
        ), status


def _scopes(ctx: Context):
    """The companies and departments a delegated assignment may be scoped to."""
    if not ctx.allowed("org:companies:read"):
        return [], []
    companies, _n = manage_org.search_companies(ctx, per_page=100)
    departments = []
    if ctx.allowed("org:departments:read"):
        rows, _n = manage_org.search_departments(ctx, per_page=100)
        names = {c.id: c.name for c in companies}
        departments = [(d, names.get(d.company_id, "")) for d in rows]
    return companies, departments


@bp.route("/roles/<int:role_id>")
def role(role_id: int):
    return _role_page(role_id)


def _role_change(role_id: int, field: str, fn, done: str, to=None):
    _result, error = attempt(fn)
    if error is not None:
        conflict = any(w in error for w in ("cycle", "in use", "exists", "away from you"))
        return _role_page(role_id, {field: error}, 409 if conflict else 400)
    flash(done, "success")
    return redirect(to or url_for("admin.role", role_id=role_id))


@bp.route("/roles/<int:role_id>/describe", methods=["POST"])
def role_describe(role_id: int):
    def run():
        with console() as ctx:
            manage_roles.update(
                ctx, manage_roles.get(ctx, role_id), description=optional("description")
            )

    return _role_change(role_id, "description", run, _("Role saved."))


@bp.route("/roles/<int:role_id>/permissions", methods=["POST"])
def role_permissions_add(role_id: int):
    wanted = permission_lines(text("permissions", 20_000))
    if not wanted:
        return _role_page(role_id, {"permissions": _("Enter at least one permission.")}, 400)

    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            for p in wanted:  # a bad one is named before anything is added
                try:
                    manage_roles.validate_permission(p)
                except ValidationError as exc:
                    raise ValidationError(
                        _(
                            "%(permission)s is not a permission (module:feature:action, "
                            "* allowed): %(why)s",
                            permission=p,
                            why=str(exc),
                        )
                    ) from None
            manage_roles.add_permissions(ctx, role, wanted)

    return _role_change(role_id, "permissions", run, _("Permissions added."))


@bp.route("/roles/<int:role_id>/permissions/remove", methods=["POST"])
def role_permission_remove(role_id: int):
    permission = text("permission", 300)

    def run():
        with console() as ctx:
            manage_roles.remove_permission(ctx, manage_roles.get(ctx, role_id), permission)

    return _role_change(role_id, "permission_list", run, _("Permission removed."))


@bp.route("/roles/<int:role_id>/composites", methods=["POST"])
def role_composite_add(role_id: int):
    child_id = whole_number(request.form.get("child_id"))
    if child_id is None:
        return _role_page(role_id, {"child_id": _("Choose a role.")}, 400)

    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            manage_roles.add_composite(ctx, role, manage_roles.get(ctx, child_id))

    return _role_change(role_id, "child_id", run, _("The role now includes the other role."))


@bp.route("/roles/<int:role_id>/composites/<int:child_id>/remove", methods=["POST"])
def role_composite_remove(role_id: int, child_id: int):
    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            manage_roles.remove_composite(ctx, role, manage_roles.get(ctx, child_id))

    return _role_change(role_id, "composites", run, _("Included role removed."))


@bp.route("/roles/<int:role_id>/permission-groups", methods=["POST"])
def role_pg_attach(role_id: int):
    pg_id = whole_number(request.form.get("pg_id"))
    if pg_id is None:
        return _role_page(role_id, {"pg_id": _("Choose a permission group.")}, 400)

    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            manage_pgs.attach(ctx, role, manage_pgs.get(ctx, pg_id))

    return _role_change(role_id, "pg_id", run, _("Permission group attached."))


@bp.route("/roles/<int:role_id>/permission-groups/<int:pg_id>/remove", methods=["POST"])
def role_pg_detach(role_id: int, pg_id: int):
    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            manage_pgs.detach(ctx, role, manage_pgs.get(ctx, pg_id))

    return _role_change(role_id, "permission_groups", run, _("Permission group detached."))


@bp.route("/roles/<int:role_id>/delete", methods=["POST"])
def role_delete(role_id: int):
    def run():
        with console() as ctx:
            manage_roles.delete(ctx, manage_roles.get(ctx, role_id))

    return _role_change(role_id, "delete", run, _("Role deleted."), to=url_for("admin.roles"))


@bp.route("/roles/<int:role_id>/holders", methods=["POST"])
def role_holder_grant(role_id: int):
    """Assign the role to a user: everywhere, or scoped to a company or a department subtree
    (delegated administration), permanently or until a time."""
    username = text("username", 200)
    scope = text("scope", 40)
    try:
        expires_at = until("expires_at")
    except BadTime:
        return _role_page(role_id, {"expires_at": _("Enter a date and time.")}, 400)
    if not username:
        return _role_page(role_id, {"username": _("Enter a username.")}, 400)

    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            user = user_by_name(ctx, username, "users:roles:assign")
            company = department = None
            kind, _sep, ref = scope.partition(":")
            if kind == "company":
                company = manage_org.get_company(ctx, whole_number(ref) or 0)
            elif kind == "department":
                department = manage_org.get_department(ctx, whole_number(ref) or 0)
            elif scope:
                raise ValidationError(_("Choose where the role applies."))
            manage_users.assign_role(
                ctx,
                user,
                role,
                scope_company=company,
                scope_department=department,
                expires_at=expires_at,
            )

    return _role_change(role_id, "username", run, _("%(user)s now holds the role.", user=username))


@bp.route("/roles/<int:role_id>/holders/<user_ref>/remove", methods=["POST"])
def role_holder_revoke(role_id: int, user_ref: str):
    def run():
        with console() as ctx:
            role = manage_roles.get(ctx, role_id)
            user = manage_users.get(ctx, user_ref, "users:roles:assign")
            manage_users.remove_role(ctx, user, role)

    return _role_change(role_id, "holders", run, _("Role taken away."))


# --- permission groups ---------------------------------------------------------------------------


def _pgs_page(error: str | None = None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:200]
    page, per_page = paging()
    with refusals(), console() as ctx:
        rows, total = manage_pgs.search(ctx, q=q or None, page=page, per_page=per_page)
        return render_template(
            "admin/permission_groups.html",
            active="admin.permission_groups",
            groups=rows,
            total=total,
            page=page,
            per_page=per_page,
            q=q,
            may_create=ctx.allowed("roles:permission_groups:create"),
            form=request.form,
            error=error,
        ), status


@bp.route("/permission-groups")
def permission_groups():
    return _pgs_page()


@bp.route("/permission-groups", methods=["POST"])
def permission_groups_create():
    name = text("name", 200)

    def run():
        with console() as ctx:
            return manage_pgs.create(
                ctx, name, permission_lines(text("permissions", 20_000)), optional("description")
            ).id

    pg_id, error = attempt(run)
    if error is not None:
        return _pgs_page(error, 409 if "exists" in error else 400)
    flash(_("Permission group %(name)s created.", name=name), "success")
    return redirect(url_for("admin.permission_group", pg_id=pg_id))


def _pg_page(pg_id: int, error: str | None = None, status: int = 200):
    with refusals(), console() as ctx:
        pg = manage_pgs.get(ctx, pg_id)
        return render_template(
            "admin/permission_group.html",
            active="admin.permission_groups",
            pg=pg,
            roles=manage_pgs.roles_of(ctx, pg),
            may_update=ctx.allowed("roles:permission_groups:update"),
            may_delete=ctx.allowed("roles:permission_groups:delete"),
            form=request.form,
            error=error,
        ), status


@bp.route("/permission-groups/<int:pg_id>")
def permission_group(pg_id: int):
    return _pg_page(pg_id)


@bp.route("/permission-groups/<int:pg_id>", methods=["POST"])
def permission_group_update(pg_id: int):
    def run():
        with console() as ctx:
            manage_pgs.patch(
                ctx,
                manage_pgs.get(ctx, pg_id),
                name=text("name", 200),
                permissions=permission_lines(text("permissions", 20_000)),
                description=optional("description"),
            )

    _result, error = attempt(run)
    if error is not None:
        return _pg_page(pg_id, error, 409 if "exists" in error or "away" in error else 400)
    flash(_("Permission group saved."), "success")
    return redirect(url_for("admin.permission_group", pg_id=pg_id))


@bp.route("/permission-groups/<int:pg_id>/delete", methods=["POST"])
def permission_group_delete(pg_id: int):
    def run():
        with console() as ctx:
            manage_pgs.delete(ctx, manage_pgs.get(ctx, pg_id))

    _result, error = attempt(run)
    if error is not None:
        return _pg_page(pg_id, error, 409)
    flash(_("Permission group deleted."), "success")
    return redirect(url_for("admin.permission_groups"))
