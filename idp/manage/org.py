"""The organization: companies, departments, positions, and placing users in them.

Permissions: ``org:companies:create``, ``org:departments:create`` / ``org:departments:update``,
``org:positions:create``; placing a user needs ``users:accounts:update`` over the user where
they are and where they go (a delegated admin cannot move someone out of, or into, a branch
they do not manage).
"""

from __future__ import annotations

from ..storage.models import Company, Department, Position, User
from .context import Context


def create_company(
    ctx: Context, slug: str, name: str, names: dict[str, str] | None = None
) -> Company:
    ctx.require("org:companies:create")
    company = ctx.directory.create_company(slug, name, names)
    ctx.audit("org.company_created", company.slug, company_id=company.id, name=company.name)
    return company


def create_department(
    ctx: Context,
    company: Company,
    name: str,
    parent: Department | None = None,
    names: dict[str, str] | None = None,
) -> Department:
    ctx.require("org:departments:create")
    dept = ctx.directory.create_department(company, name, parent, names)
    ctx.audit(
        "org.department_created", dept.path, department_id=dept.id, company=company.slug, name=name
    )
    return dept


def move_department(ctx: Context, dept: Department, new_parent: Department | None) -> Department:
    """Move a department with its subtree; refused when it would create a cycle."""
    ctx.require("org:departments:update")
    old = dept.path
    dept = ctx.directory.move_department(dept, new_parent)
    ctx.audit("org.department_moved", dept.path, department_id=dept.id, old_path=old)
    return dept


def create_position(
    ctx: Context, company: Company, name: str, names: dict[str, str] | None = None
) -> Position:
    ctx.require("org:positions:create")
    pos = ctx.directory.create_position(company, name, names)
    ctx.audit("org.position_created", name, position_id=pos.id, company=company.slug)
    return pos


def place_user(
    ctx: Context,
    user: User,
    *,
    company: Company | None = None,
    department: Department | None = None,
    position: Position | None = None,
    manager: User | None = None,
) -> User:
    """Put a user into a company / department / position, with a manager."""
    ctx.require("users:accounts:update", user.id)
    ctx.directory.place_user(
        user, company=company, department=department, position=position, manager=manager
    )
    ctx.require("users:accounts:update", user.id)  # where they are now (flushed)
    ctx.audit(
        "user.placed",
        user.uuid,
        company_id=user.company_id,
        department_id=user.department_id,
        position_id=user.position_id,
        manager_id=user.manager_id,
    )
    return user
