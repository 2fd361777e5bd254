"""The organization: companies, departments, positions, and placing users in them.

Permissions: ``org:companies:read`` / ``create`` / ``update`` / ``delete``, the same for
``org:departments`` and ``org:positions``; placing a user needs ``users:accounts:update`` over
the user where they are and where they go (a delegated admin cannot move someone out of, or
into, a branch they do not manage). Deleting a company, department or position is refused while
anything still belongs to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from ..errors import NotFound
from ..storage.models import Company, Department, Position, User
from .context import Context

ID_MAX = 2**31 - 1  # ids are 32-bit integers on PostgreSQL


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
    audit_placed(ctx, user)
    return user


def audit_placed(ctx: Context, user: User) -> None:
    """The audit row of a user's (new) place: company, department, position and manager."""
    ctx.audit(
        "user.placed",
        user.uuid,
        company_id=user.company_id,
        department_id=user.department_id,
        position_id=user.position_id,
        manager_id=user.manager_id,
    )


def _id(ref: str | int) -> int | None:
    """A database id from a reference, or None when it cannot be one."""
    text = str(ref)
    if text.isascii() and text.isdigit() and 0 < int(text) <= ID_MAX:
        return int(text)
    return None


# --- companies -----------------------------------------------------------------------------------


def find_company(ctx: Context, ref: str | int) -> Company:
    """A company by id or slug, or NotFound (no permission check: callers check theirs)."""
    key = _id(ref)
    row = (
        ctx.db.get(Company, key)
        if key is not None
        else None
        if "\x00" in str(ref)
        else ctx.db.scalar(select(Company).where(Company.slug == str(ref)))
    )
    if row is None:
        raise NotFound(f"no company {str(ref)!r}")
    return row


def get_company(ctx: Context, ref: str | int) -> Company:
    ctx.require("org:companies:read")
    return find_company(ctx, ref)


def search_companies(
    ctx: Context, *, q: str | None = None, page: int = 1, per_page: int = 25
) -> tuple[list[Company], int]:
    """(companies of the page by slug, total matching); ``q`` is contained in slug or name."""
    ctx.require("org:companies:read")
    where = []
    if q:
        where.append(
            Company.slug.contains(q, autoescape=True) | Company.name.contains(q, autoescape=True)
        )
    total = ctx.db.scalar(select(func.count(Company.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Company)
        .where(*where)
        .order_by(Company.slug)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), int(total)


def update_company(
    ctx: Context,
    company: Company,
    *,
    name: str | None = None,
    names: dict[str, str] | None = None,
) -> Company:
    """Rename the company (``name``, and the translations in ``names``, replaced whole)."""
    ctx.require("org:companies:update")
    before = {"name": company.name, "names": dict(company.names or {})}
    ctx.directory.update_company(company, name=name, names=names)
    changes = {
        k: [before[k], getattr(company, k)] for k in before if before[k] != getattr(company, k)
    }
    if changes:
        ctx.audit("org.company_updated", company.slug, company_id=company.id, changes=changes)
    return company


def delete_company(ctx: Context, company: Company) -> None:
    """Delete a company; refused while users, departments, positions, groups or role
    assignments scoped to it remain."""
    ctx.require("org:companies:delete")
    slug, company_id = company.slug, company.id
    ctx.directory.delete_company(company)
    ctx.audit("org.company_deleted", slug, company_id=company_id)


# --- departments ---------------------------------------------------------------------------------


def find_department(ctx: Context, ref: str | int) -> Department:
    """A department by id, or NotFound (no permission check: callers check theirs)."""
    key = _id(ref)
    row = ctx.db.get(Department, key) if key is not None else None
    if row is None:
        raise NotFound(f"no department {str(ref)!r}")
    return row


def get_department(ctx: Context, ref: str | int) -> Department:
    ctx.require("org:departments:read")
    return find_department(ctx, ref)


def search_departments(
    ctx: Context,
    *,
    company: str | int | None = None,
    parent_id: int | None = None,
    top_level: bool = False,
    q: str | None = None,
    page: int = 1,
    per_page: int = 25,
) -> tuple[list[Department], int]:
    """(departments of the page, in tree order within each company; total matching).
    ``company`` (id or slug) and ``parent_id`` must name existing rows."""
    ctx.require("org:departments:read")
    where = []
    if company is not None:
        where.append(Department.company_id == find_company(ctx, company).id)
    if parent_id is not None:
        where.append(Department.parent_id == find_department(ctx, parent_id).id)
    if top_level:
        where.append(Department.parent_id.is_(None))
    if q:
        where.append(Department.name.contains(q, autoescape=True))
    total = ctx.db.scalar(select(func.count(Department.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Department)
        .where(*where)
        .order_by(Department.company_id, Department.path)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), int(total)


@dataclass
class DepartmentNode:
    department: Department
    children: list[DepartmentNode] = field(default_factory=list)


def department_tree(ctx: Context, company_ref: str | int) -> tuple[Company, list[DepartmentNode]]:
    """The company (id or slug) and its departments as a tree (roots, children by name)."""
    ctx.require("org:departments:read")
    company = find_company(ctx, company_ref)
    rows = list(
        ctx.db.scalars(
            select(Department)
            .where(Department.company_id == company.id)
            .order_by(Department.name, Department.id)
        )
    )
    nodes = {d.id: DepartmentNode(d) for d in rows}
    roots: list[DepartmentNode] = []
    for d in rows:
        parent = nodes.get(d.parent_id) if d.parent_id is not None else None
        (parent.children if parent is not None else roots).append(nodes[d.id])
    return company, roots


def add_department(
    ctx: Context,
    company_ref: str | int,
    name: str,
    parent_id: int | None = None,
    names: dict[str, str] | None = None,
) -> Department:
    """``create_department`` by references: the company by id or slug, the parent by id."""
    ctx.require("org:departments:create")
    company = find_company(ctx, company_ref)
    parent = find_department(ctx, parent_id) if parent_id is not None else None
    return create_department(ctx, company, name, parent, names)


def update_department(
    ctx: Context,
    dept: Department,
    *,
    name: str | None = None,
    names: dict[str, str] | None = None,
) -> Department:
    """Rename a department (``name``, and the translations in ``names``, replaced whole)."""
    ctx.require("org:departments:update")
    before = {"name": dept.name, "names": dict(dept.names or {})}
    ctx.directory.rename_department(dept, name=name, names=names)
    changes = {k: [before[k], getattr(dept, k)] for k in before if before[k] != getattr(dept, k)}
    if changes:
        ctx.audit("org.department_updated", dept.path, department_id=dept.id, changes=changes)
    return dept


def delete_department(ctx: Context, dept: Department) -> None:
    """Delete a department; refused while it has sub-departments, users, or role assignments
    scoped to it."""
    ctx.require("org:departments:delete")
    path, dept_id, name = dept.path, dept.id, dept.name
    ctx.directory.delete_department(dept)
    ctx.audit("org.department_deleted", path, department_id=dept_id, name=name)


# --- positions -----------------------------------------------------------------------------------


def find_position(ctx: Context, ref: str | int) -> Position:
    key = _id(ref)
    row = ctx.db.get(Position, key) if key is not None else None
    if row is None:
        raise NotFound(f"no position {str(ref)!r}")
    return row


def get_position(ctx: Context, ref: str | int) -> Position:
    ctx.require("org:positions:read")
    return find_position(ctx, ref)


def search_positions(
    ctx: Context, company_ref: str | int, *, page: int = 1, per_page: int = 25
) -> tuple[list[Position], int]:
    """(the company's positions of the page by name, total); the company by id or slug."""
    ctx.require("org:positions:read")
    where = [Position.company_id == find_company(ctx, company_ref).id]
    total = ctx.db.scalar(select(func.count(Position.id)).where(*where)) or 0
    rows = ctx.db.scalars(
        select(Position)
        .where(*where)
        .order_by(Position.name)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), int(total)


def add_position(
    ctx: Context, company_ref: str | int, name: str, names: dict[str, str] | None = None
) -> Position:
    """``create_position`` in the company with this id or slug."""
    ctx.require("org:positions:create")
    return create_position(ctx, find_company(ctx, company_ref), name, names)


def update_position(
    ctx: Context,
    pos: Position,
    *,
    name: str | None = None,
    names: dict[str, str] | None = None,
) -> Position:
    ctx.require("org:positions:update")
    before = {"name": pos.name, "names": dict(pos.names or {})}
    ctx.directory.rename_position(pos, name=name, names=names)
    changes = {k: [before[k], getattr(pos, k)] for k in before if before[k] != getattr(pos, k)}
    if changes:
        ctx.audit("org.position_updated", pos.name, position_id=pos.id, changes=changes)
    return pos


def delete_position(ctx: Context, pos: Position) -> None:
    """Delete a position; refused while users hold it."""
    ctx.require("org:positions:delete")
    name, pos_id, company_id = pos.name, pos.id, pos.company_id
    ctx.directory.delete_position(pos)
    ctx.audit("org.position_deleted", name, position_id=pos_id, company_id=company_id)
