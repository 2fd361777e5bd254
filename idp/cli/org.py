"""``idp org``: companies, departments, positions, and placing users in them."""

from __future__ import annotations

import click

from ..errors import ValidationError
from ..manage import org as manage_org
from .base import as_operator, emit, parse_names, ready


@click.group("org")
def org() -> None:
    """Companies, departments and positions."""


@org.command("company-create")
@click.argument("slug")
@click.argument("name")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_company_create(slug, name, names, as_json):
    with as_operator(ready()) as ctx:
        c = manage_org.create_company(ctx, slug, name, parse_names(names))
        result = {"id": c.id, "slug": c.slug, "name": c.name, "names": c.names}
    emit(as_json, result, f"created company {slug}")


@org.command("department-create")
@click.argument("company")
@click.argument("name")
@click.option("--parent", default=None, help="Parent department: id or company/Dept/Sub.")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_department_create(company, name, parent, names, as_json):
    with as_operator(ready()) as ctx:
        d = ctx.directory
        dept = manage_org.create_department(
            ctx, d.company(company), name, d.department(parent) if parent else None,
            parse_names(names),
        )
        result = {"id": dept.id, "name": dept.name, "path": dept.path}
    emit(as_json, result, f"created department {name} ({result['path']})")


@org.command("department-move")
@click.argument("department")
@click.option("--parent", default=None, help="New parent; omit to make it a top department.")
@click.option("--json", "as_json", is_flag=True)
def org_department_move(department, parent, as_json):
    """Move a department with its subtree; refused when it would create a cycle."""
    with as_operator(ready()) as ctx:
        d = ctx.directory
        dept = manage_org.move_department(
            ctx, d.department(department), d.department(parent) if parent else None
        )
        result = {"id": dept.id, "path": dept.path}
    emit(as_json, result, f"department is now at {result['path']}")


@org.command("position-create")
@click.argument("company")
@click.argument("name")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_position_create(company, name, names, as_json):
    with as_operator(ready()) as ctx:
        p = manage_org.create_position(
            ctx, ctx.directory.company(company), name, parse_names(names)
        )
        result = {"id": p.id, "name": p.name, "names": p.names}
    emit(as_json, result, f"created position {name}")


@org.command("place")
@click.argument("username")
@click.option("--department", default=None)
@click.option("--company", default=None)
@click.option("--position", default=None)
@click.option("--manager", default=None, help="The manager's username.")
@click.option("--json", "as_json", is_flag=True)
def org_place(username, department, company, position, manager, as_json):
    """Put a user into a company / department / position, with a manager."""
    with as_operator(ready()) as ctx:
        d = ctx.directory
        user = d.user_by_username(username)
        dept = d.department(department) if department else None
        comp = d.company(company) if company else None
        pos = None
        if position:
            pos_company = comp or (d.company(dept.company_id) if dept else None)
            if pos_company is None:
                raise ValidationError("--position needs --company or --department")
            pos = d.position(pos_company, position)
        manage_org.place_user(
            ctx,
            user,
            company=comp,
            department=dept,
            position=pos,
            manager=d.user_by_username(manager) if manager else None,
        )
        result = {
            "username": user.username,
            "company_id": user.company_id,
            "department_id": user.department_id,
            "position_id": user.position_id,
            "manager_id": user.manager_id,
        }
    emit(as_json, result, f"placed {username}")
