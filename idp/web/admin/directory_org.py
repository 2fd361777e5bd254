"""Admin console: the organisation (``/admin/org``): companies, their departments as a tree,
and their positions. Create, rename, move a department (with its subtree; a cycle is refused
beside the field), delete (refused while anything still belongs to it, with why)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...manage import org as manage_org
from .blueprint import bp
from .directory_common import attempt, refusals, text
from .guard import console
from .paging import paging, whole_number


def _companies_page(error: str | None = None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:200]
    page, per_page = paging()
    with refusals(), console() as ctx:
        rows, total = manage_org.search_companies(ctx, q=q or None, page=page, per_page=per_page)
        return render_template(
            "admin/org.html",
            active="admin.org",
            companies=rows,
            total=total,
            page=page,
            per_page=per_page,
            q=q,
            may_create=ctx.allowed("org:companies:create"),
            form=request.form,
            error=error,
        ), status


@bp.route("/org")
def org():
    return _companies_page()


@bp.route("/org", methods=["POST"])
def org_company_create():
    slug, name = text("slug", 64), text("name", 200)

    def run():
        with console() as ctx:
            return manage_org.create_company(ctx, slug, name).id

    company_id, error = attempt(run)
    if error is not None:
        return _companies_page(error, 409 if "exists" in error else 400)
    flash(_("Company %(name)s created.", name=name), "success")
    return redirect(url_for("admin.org_company", company_id=company_id))


def _company_page(company_id: int, errors: dict[str, str] | None = None, status: int = 200):
    with refusals(), console() as ctx:
        company = manage_org.get_company(ctx, company_id)
        tree = []
        if ctx.allowed("org:departments:read"):
            company, tree = manage_org.department_tree(ctx, company.id)
        positions, positions_total = [], 0
        if ctx.allowed("org:positions:read"):
            positions, positions_total = manage_org.search_positions(ctx, company.id, per_page=100)
        return render_template(
            "admin/org_company.html",
            active="admin.org",
            company=company,
            tree=tree,
            flat=_flatten(tree),
            positions=positions,
            positions_total=positions_total,
            may=_may(ctx),
            errors=errors or {},
            form=request.form,
        ), status


def _may(ctx) -> dict[str, bool]:
    return {
        f"{thing}_{action}": ctx.allowed(f"org:{thing}:{action}")
        for thing in ("companies", "departments", "positions")
        for action in ("create", "update", "delete")
    }


def _flatten(nodes, depth: int = 0) -> list:
    """(department, depth) in tree order: the choices of a parent select."""
    out = []
    for node in nodes:
        out.append((node.department, depth))
        out.extend(_flatten(node.children, depth + 1))
    return out


@bp.route("/org/companies/<int:company_id>")
def org_company(company_id: int):
    return _company_page(company_id)


def _company_change(company_id: int, field: str, fn, done: str, to=None):
    _result, error = attempt(fn)
    if error is not None:
        conflict = any(w in error for w in ("cycle", "exists", "not empty", "still", "sub-"))
        return _company_page(company_id, {field: error}, 409 if conflict else 400)
    flash(done, "success")
    return redirect(to or url_for("admin.org_company", company_id=company_id))


@bp.route("/org/companies/<int:company_id>/rename", methods=["POST"])
def org_company_rename(company_id: int):
    def run():
        with console() as ctx:
            company = manage_org.get_company(ctx, company_id)
            manage_org.update_company(ctx, company, name=text("name", 200))

    return _company_change(company_id, "company_name", run, _("Company renamed."))


@bp.route("/org/companies/<int:company_id>/delete", methods=["POST"])
def org_company_delete(company_id: int):
    def run():
        with console() as ctx:
            manage_org.delete_company(ctx, manage_org.get_company(ctx, company_id))

    return _company_change(
        company_id, "company_delete", run, _("Company deleted."), to=url_for("admin.org")
    )


@bp.route("/org/companies/<int:company_id>/departments", methods=["POST"])
def org_department_create(company_id: int):
    name = text("name", 200)
    parent_id = whole_number(request.form.get("parent_id"))

    def run():
        with console() as ctx:
            manage_org.add_department(ctx, company_id, name, parent_id)

    return _company_change(
        company_id, "department_name", run, _("Department %(name)s created.", name=name)
    )


@bp.route("/org/companies/<int:company_id>/positions", methods=["POST"])
def org_position_create(company_id: int):
    name = text("name", 200)

    def run():
        with console() as ctx:
            manage_org.add_position(ctx, company_id, name)

    return _company_change(
        company_id, "position_name", run, _("Position %(name)s created.", name=name)
    )


@bp.route("/org/positions/<int:position_id>/rename", methods=["POST"])
def org_position_rename(position_id: int):
    company_id = _position_company(position_id)

    def run():
        with console() as ctx:
            pos = manage_org.get_position(ctx, position_id)
            manage_org.update_position(ctx, pos, name=text("name", 200))

    return _company_change(company_id, f"position-{position_id}", run, _("Position renamed."))


@bp.route("/org/positions/<int:position_id>/delete", methods=["POST"])
def org_position_delete(position_id: int):
    company_id = _position_company(position_id)

    def run():
        with console() as ctx:
            manage_org.delete_position(ctx, manage_org.get_position(ctx, position_id))

    return _company_change(company_id, f"position-{position_id}", run, _("Position deleted."))


def _position_company(position_id: int) -> int:
    with refusals(), console() as ctx:
        return manage_org.get_position(ctx, position_id).company_id


# --- a department ----------------------------------------------------------------------------


def _department_page(dept_id: int, errors: dict[str, str] | None = None, status: int = 200):
    with refusals(), console() as ctx:
        dept = manage_org.get_department(ctx, dept_id)
        company, tree = manage_org.department_tree(ctx, dept.company_id)
        chain = ctx.directory.department_chain(dept)
        return render_template(
            "admin/org_department.html",
            active="admin.org",
            dept=dept,
            company=company,
            chain=chain,
            flat=_flatten(tree),
            may=_may(ctx),
            errors=errors or {},
            form=request.form,
        ), status


@bp.route("/org/departments/<int:dept_id>")
def org_department(dept_id: int):
    return _department_page(dept_id)


def _department_change(dept_id: int, field: str, fn, done: str, to=None):
    _result, error = attempt(fn)
    if error is not None:
        conflict = any(w in error for w in ("cycle", "exists", "still", "sub-"))
        return _department_page(dept_id, {field: error}, 409 if conflict else 400)
    flash(done, "success")
    return redirect(to or url_for("admin.org_department", dept_id=dept_id))


@bp.route("/org/departments/<int:dept_id>/rename", methods=["POST"])
def org_department_rename(dept_id: int):
    def run():
        with console() as ctx:
            dept = manage_org.get_department(ctx, dept_id)
            manage_org.update_department(ctx, dept, name=text("name", 200))

    return _department_change(dept_id, "name", run, _("Department renamed."))


@bp.route("/org/departments/<int:dept_id>/move", methods=["POST"])
def org_department_move(dept_id: int):
    parent_id = whole_number(request.form.get("parent_id"))

    def run():
        with console() as ctx:
            dept = manage_org.get_department(ctx, dept_id)
            parent = manage_org.get_department(ctx, parent_id) if parent_id else None
            manage_org.move_department(ctx, dept, parent)

    return _department_change(dept_id, "parent_id", run, _("Department moved."))


@bp.route("/org/departments/<int:dept_id>/delete", methods=["POST"])
def org_department_delete(dept_id: int):
    with refusals(), console() as ctx:
        company_id = manage_org.get_department(ctx, dept_id).company_id

    def run():
        with console() as ctx:
            manage_org.delete_department(ctx, manage_org.get_department(ctx, dept_id))

    return _department_change(
        dept_id,
        "delete",
        run,
        _("Department deleted."),
        to=url_for("admin.org_company", company_id=company_id),
    )
