"""``/api/v1/companies``, ``/api/v1/departments``, ``/api/v1/positions``: the organization.

Companies are addressed by id or slug, departments and positions by id. A company's
departments are a tree (``/companies/{company}/departments/tree``) or a flat, filtered,
paginated list with each department's parent (``/departments``). Permissions: see
``idp.manage.org``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...manage import Context
from ...manage import org as manage_org
from ...storage.models import Company, Department, Position
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, etag_of, operation
from .shapes import AS_SENT, Id, Name, Names, QueryId, Text, created, data_refusal, given

TAG = "organization"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


# --- shapes --------------------------------------------------------------------------------------


class CompanyOut(ApiModel):
    id: int
    slug: str
    name: str
    names: dict[str, str]


class CompanyPage(Page[CompanyOut]):
    pass


class CompaniesQuery(PageQuery):
    q: Text | None = Field(None, max_length=200, description="contained in slug or name")


class CompanyIn(Strict):
    slug: Annotated[str, AS_SENT, Field(pattern=SLUG_PATTERN, max_length=64)]
    name: Name
    names: Names = {}


class CompanyPatch(Strict):
    """A JSON merge patch; ``names`` replaces every translation. The slug stays."""

    name: Name = Field(None)
    names: Names = Field(None)


class DepartmentOut(ApiModel):
    id: int
    company_id: int
    company: str = Field(description="the company's slug")
    parent_id: int | None
    name: str
    names: dict[str, str]
    path: str = Field(description='the ids from the root: "/1/7/42/"')


class DepartmentPage(Page[DepartmentOut]):
    pass


class DepartmentsQuery(PageQuery):
    company: Text | None = Field(None, max_length=64, description="company id or slug")
    parent_id: QueryId | None = Field(
        None, description="only the direct sub-departments of this one"
    )
    top_level: bool = Field(False, description="only departments without a parent")
    q: Text | None = Field(None, max_length=200, description="contained in the name")


class DepartmentNode(ApiModel):
    id: int
    name: str
    names: dict[str, str]
    path: str
    children: list[DepartmentNode]


class DepartmentTree(ApiModel):
    company: CompanyOut
    departments: list[DepartmentNode] = Field(description="the roots, children by name")


class DepartmentIn(Strict):
    company: Text = Field(min_length=1, max_length=64, description="company id or slug")
    name: Name
    parent_id: Id | None = Field(None, description="create it below this department")
    names: Names = {}


class DepartmentPatch(Strict):
    """A JSON merge patch: ``name`` / ``names`` rename, ``parent_id`` moves the department with
    its subtree (null: to the top of its company)."""

    name: Name = Field(None)
    names: Names = Field(None)
    parent_id: Id | None = None


class PositionOut(ApiModel):
    id: int
    company_id: int
    company: str
    name: str
    names: dict[str, str]


class PositionPage(Page[PositionOut]):
    pass


class PositionIn(Strict):
    name: Name
    names: Names = {}


class PositionPatch(Strict):
    name: Name = Field(None)
    names: Names = Field(None)


# --- rendering -----------------------------------------------------------------------------------


def _company(c: Company) -> CompanyOut:
    return CompanyOut(id=c.id, slug=c.slug, name=c.name, names=dict(c.names or {}))


def _department(ctx: Context, d: Department) -> DepartmentOut:
    return DepartmentOut(
        id=d.id,
        company_id=d.company_id,
        company=manage_org.find_company(ctx, d.company_id).slug,
        parent_id=d.parent_id,
        name=d.name,
        names=dict(d.names or {}),
        path=d.path,
    )


def _node(n: manage_org.DepartmentNode) -> DepartmentNode:
    d = n.department
    return DepartmentNode(
        id=d.id,
        name=d.name,
        names=dict(d.names or {}),
        path=d.path,
        children=[_node(c) for c in n.children],
    )


def _position(ctx: Context, p: Position) -> PositionOut:
    return PositionOut(
        id=p.id,
        company_id=p.company_id,
        company=manage_org.find_company(ctx, p.company_id).slug,
        name=p.name,
        names=dict(p.names or {}),
    )


# --- companies -----------------------------------------------------------------------------------


@operation(
    "GET",
    "/companies",
    tag=TAG,
    summary="List companies",
    query=CompaniesQuery,
    response=CompanyPage,
)
def list_companies(call: Call) -> Reply:
    """By slug (``org:companies:read``)."""
    q: CompaniesQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_org.search_companies(ctx, q=q.q, page=q.page, per_page=q.per_page)
        items = [_company(c) for c in rows]
    return Reply(body=CompanyPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/companies",
    tag=TAG,
    summary="Create a company",
    body=CompanyIn,
    response=CompanyOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_company(call: Call) -> Reply:
    """``org:companies:create``. 409: the slug is taken."""
    body: CompanyIn = call.body
    with call.transaction() as ctx:
        out = _company(manage_org.create_company(ctx, body.slug, body.name, body.names))
    return created(f"/companies/{out.id}", out)


@operation(
    "GET",
    "/companies/{company}",
    tag=TAG,
    summary="Read a company (by id or slug)",
    response=CompanyOut,
    etag=True,
)
def read_company(call: Call, company: str) -> Reply:
    """``org:companies:read``."""
    with call.transaction() as ctx:
        out = _company(manage_org.get_company(ctx, company))
    return Reply(body=out)


@operation(
    "PATCH",
    "/companies/{company}",
    tag=TAG,
    summary="Rename a company",
    body=CompanyPatch,
    response=CompanyOut,
    etag=True,
)
def update_company(call: Call, company: str) -> Reply:
    """``org:companies:update``."""
    changes = given(call.body)
    with call.transaction() as ctx:
        row = manage_org.get_company(ctx, company)
        call.if_match(etag_of(_company(row)))
        out = _company(manage_org.update_company(ctx, row, **changes))
    return Reply(body=out)


@operation(
    "DELETE",
    "/companies/{company}",
    tag=TAG,
    summary="Delete an empty company",
    status=204,
    etag=True,
    errors=(409,),
)
def delete_company(call: Call, company: str) -> Reply:
    """``org:companies:delete``. 409 while users, departments, positions, groups or role
    assignments scoped to it remain (the problem says how many of each)."""
    with call.transaction() as ctx:
        row = manage_org.get_company(ctx, company)
        call.if_match(etag_of(_company(row)))
        manage_org.delete_company(ctx, row)
    return Reply(status=204)


@operation(
    "GET",
    "/companies/{company}/departments/tree",
    tag=TAG,
    summary="A company's departments as a tree",
    response=DepartmentTree,
)
def department_tree(call: Call, company: str) -> Reply:
    """``org:departments:read``."""
    with call.transaction() as ctx:
        row, roots = manage_org.department_tree(ctx, company)
        out = DepartmentTree(company=_company(row), departments=[_node(n) for n in roots])
    return Reply(body=out)


# --- departments ---------------------------------------------------------------------------------


@operation(
    "GET",
    "/departments",
    tag=TAG,
    summary="List departments (flat, with their parent)",
    query=DepartmentsQuery,
    response=DepartmentPage,
    errors=(404,),
)
def list_departments(call: Call) -> Reply:
    """In tree order within each company (``org:departments:read``). 404: the ``company`` or
    ``parent_id`` filter names nothing."""
    q: DepartmentsQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_org.search_departments(
            ctx,
            company=q.company,
            parent_id=q.parent_id,
            top_level=q.top_level,
            q=q.q,
            page=q.page,
            per_page=q.per_page,
        )
        items = [_department(ctx, d) for d in rows]
    return Reply(body=DepartmentPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/departments",
    tag=TAG,
    summary="Create a department",
    body=DepartmentIn,
    response=DepartmentOut,
    status=201,
    etag=True,
    errors=(404, 409),
)
def create_department(call: Call) -> Reply:
    """``org:departments:create``. 409: the parent is in another company; 404: no such company
    or parent; 409: the name is taken below the same parent."""
    body: DepartmentIn = call.body
    with call.transaction() as ctx:
        with data_refusal():
            dept = manage_org.add_department(
                ctx, body.company, body.name, body.parent_id, body.names
            )
        out = _department(ctx, dept)
    return created(f"/departments/{out.id}", out)


@operation(
    "GET",
    "/departments/{department_id}",
    tag=TAG,
    summary="Read a department",
    response=DepartmentOut,
    etag=True,
)
def read_department(call: Call, department_id: str) -> Reply:
    """``org:departments:read``."""
    with call.transaction() as ctx:
        out = _department(ctx, manage_org.get_department(ctx, department_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/departments/{department_id}",
    tag=TAG,
    summary="Rename or move a department",
    body=DepartmentPatch,
    response=DepartmentOut,
    etag=True,
    errors=(409,),
)
def update_department(call: Call, department_id: str) -> Reply:
    """``org:departments:update``. 409: the new parent is in another company; 404: no such
    parent; 409: the name is taken there, or the move would put the department under itself
    or its own subtree (a cycle)."""
    changes = given(call.body)
    with call.transaction() as ctx:
        dept = manage_org.get_department(ctx, department_id)
        call.if_match(etag_of(_department(ctx, dept)))
        names = {k: v for k, v in changes.items() if k in ("name", "names")}
        with data_refusal():
            manage_org.update_department(ctx, dept, **names)
            if "parent_id" in changes:
                parent_id = changes["parent_id"]
                parent = manage_org.find_department(ctx, parent_id) if parent_id else None
                if (parent.id if parent else None) != dept.parent_id:
                    dept = manage_org.move_department(ctx, dept, parent)
        out = _department(ctx, dept)
    return Reply(body=out)


@operation(
    "DELETE",
    "/departments/{department_id}",
    tag=TAG,
    summary="Delete an empty department",
    status=204,
    etag=True,
    errors=(409,),
)
def delete_department(call: Call, department_id: str) -> Reply:
    """``org:departments:delete``. 409 while it has sub-departments, users, or role
    assignments scoped to it."""
    with call.transaction() as ctx:
        dept = manage_org.get_department(ctx, department_id)
        call.if_match(etag_of(_department(ctx, dept)))
        manage_org.delete_department(ctx, dept)
    return Reply(status=204)


# --- positions -----------------------------------------------------------------------------------


@operation(
    "GET",
    "/companies/{company}/positions",
    tag=TAG,
    summary="List a company's positions",
    query=PageQuery,
    response=PositionPage,
)
def list_positions(call: Call, company: str) -> Reply:
    """By name (``org:positions:read``)."""
    q: PageQuery = call.query
    with call.transaction() as ctx:
        rows, total = manage_org.search_positions(ctx, company, page=q.page, per_page=q.per_page)
        items = [_position(ctx, p) for p in rows]
    return Reply(body=PositionPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/companies/{company}/positions",
    tag=TAG,
    summary="Create a position",
    body=PositionIn,
    response=PositionOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_position(call: Call, company: str) -> Reply:
    """``org:positions:create``. 409: the company has a position of that name."""
    body: PositionIn = call.body
    with call.transaction() as ctx:
        out = _position(ctx, manage_org.add_position(ctx, company, body.name, body.names))
    return created(f"/positions/{out.id}", out)


@operation(
    "GET",
    "/positions/{position_id}",
    tag=TAG,
    summary="Read a position",
    response=PositionOut,
    etag=True,
)
def read_position(call: Call, position_id: str) -> Reply:
    """``org:positions:read``."""
    with call.transaction() as ctx:
        out = _position(ctx, manage_org.get_position(ctx, position_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/positions/{position_id}",
    tag=TAG,
    summary="Rename a position",
    body=PositionPatch,
    response=PositionOut,
    etag=True,
    errors=(409,),
)
def update_position(call: Call, position_id: str) -> Reply:
    """``org:positions:update``. 409: the company has a position of that name."""
    changes = given(call.body)
    with call.transaction() as ctx:
        pos = manage_org.get_position(ctx, position_id)
        call.if_match(etag_of(_position(ctx, pos)))
        out = _position(ctx, manage_org.update_position(ctx, pos, **changes))
    return Reply(body=out)


@operation(
    "DELETE",
    "/positions/{position_id}",
    tag=TAG,
    summary="Delete a position",
    status=204,
    etag=True,
    errors=(409,),
)
def delete_position(call: Call, position_id: str) -> Reply:
    """``org:positions:delete``. 409 while users hold it."""
    with call.transaction() as ctx:
        pos = manage_org.get_position(ctx, position_id)
        call.if_match(etag_of(_position(ctx, pos)))
        manage_org.delete_position(ctx, pos)
    return Reply(status=204)
