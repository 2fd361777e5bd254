"""``/api/v1/companies``, ``/departments``, ``/positions``: the organization tree. Departments
list as a tree or flat with their parent, move with their subtree (never under themselves),
and only empty things are deleted; refusals change nothing."""

from __future__ import annotations

import pytest
from directory_api_kit import (
    PROBLEM,
    Caller,
    audit_actions,
    last_audit_id,
    refused,
    service_caller,
)
from login_kit import make_user

from idp.storage.directory import Directory


def company(admin: Caller, slug: str, name: str | None = None) -> dict:
    resp = admin.post("/companies", {"slug": slug, "name": name or slug.title()})
    assert resp.status_code == 201, resp.json
    return resp.json


def dept(admin: Caller, company_ref, name: str, parent_id: int | None = None) -> dict:
    resp = admin.post(
        "/departments", {"company": str(company_ref), "name": name, "parent_id": parent_id}
    )
    assert resp.status_code == 201, resp.json
    return resp.json


def test_companies(app, admin, svc):
    mark = last_audit_id(svc)
    resp = admin.post("/companies", {"slug": "acme", "name": "Acme", "names": {"de": "Acme AG"}})
    assert resp.status_code == 201
    acme = resp.json
    assert resp.headers["Location"] == f"/api/v1/companies/{acme['id']}"
    assert acme == {"id": acme["id"], "slug": "acme", "name": "Acme", "names": {"de": "Acme AG"}}
    by_slug, by_id = admin.get("/companies/acme"), admin.get(f"/companies/{acme['id']}")
    assert by_slug.json == by_id.json == acme
    assert by_slug.headers["ETag"] == by_id.headers["ETag"] == resp.headers["ETag"]

    renamed = admin.patch("/companies/acme", {"name": "ACME Corp"}, by_slug.headers["ETag"])
    assert renamed.status_code == 200 and renamed.json["names"] == {"de": "Acme AG"}
    refused(
        app, 412, lambda: admin.patch("/companies/acme", {"name": "X"}, by_slug.headers["ETag"])
    )
    refused(app, 409, lambda: admin.post("/companies", {"slug": "acme", "name": "Again"}))
    refused(app, 400, lambda: admin.post("/companies", {"slug": "Not A Slug", "name": "X"}))
    refused(app, 400, lambda: admin.patch("/companies/acme", {"slug": "other"}))
    refused(
        app,
        400,
        lambda: admin.post("/companies", {"slug": "x", "name": "X", "control_word_hash": "h"}),
    )
    for slug in ("globex", "initech"):
        company(admin, slug)
    listed = admin.get("/companies", query_string={"per_page": 10}).json
    assert [c["slug"] for c in listed["items"]] == ["acme", "globex", "initech"]
    assert admin.get("/companies", query_string={"q": "glob"}).json["total"] == 1
    assert audit_actions(svc, mark) == [
        "org.company_created",
        "org.company_updated",
        "org.company_created",
        "org.company_created",
    ]


def test_only_an_empty_company_is_deleted(app, admin, svc):
    acme = company(admin, "acme")
    dept(admin, "acme", "Sales")
    resp = refused(app, 409, lambda: admin.delete("/companies/acme"))
    assert "1 departments" in resp.json["detail"]
    empty = company(admin, "empty")
    etag = admin.get("/companies/empty").headers["ETag"]
    refused(app, 412, lambda: admin.delete("/companies/empty", '"stale"'))
    assert admin.delete("/companies/empty", etag).status_code == 204
    assert admin.get(f"/companies/{empty['id']}").status_code == 404
    assert admin.get(f"/companies/{acme['id']}").status_code == 200


def test_departments_as_tree_and_flat_with_parent(app, admin):
    acme = company(admin, "acme")
    company(admin, "globex")
    eng = dept(admin, "acme", "Engineering")
    sales = dept(admin, acme["id"], "Sales")
    backend = dept(admin, "acme", "Backend", eng["id"])
    dept(admin, "acme", "Frontend", eng["id"])
    dept(admin, "globex", "Engineering")
    assert backend["path"] == f"/{eng['id']}/{backend['id']}/"
    assert backend["company"] == "acme" and backend["parent_id"] == eng["id"]

    tree = admin.get("/companies/acme/departments/tree").json
    assert tree["company"]["slug"] == "acme"
    assert [d["name"] for d in tree["departments"]] == ["Engineering", "Sales"]
    assert [c["name"] for c in tree["departments"][0]["children"]] == ["Backend", "Frontend"]
    assert tree["departments"][1]["children"] == []

    flat = admin.get("/departments", query_string={"company": "acme"}).json
    assert flat["total"] == 4
    assert {d["name"]: d["parent_id"] for d in flat["items"]} == {
        "Engineering": None,
        "Backend": eng["id"],
        "Frontend": eng["id"],
        "Sales": None,
    }
    kids = admin.get("/departments", query_string={"parent_id": eng["id"]}).json
    assert [d["name"] for d in kids["items"]] == ["Backend", "Frontend"]
    roots = admin.get("/departments", query_string={"top_level": "true", "per_page": 10}).json
    assert roots["total"] == 3
    assert admin.get("/departments", query_string={"company": "nope"}).status_code == 404
    read = admin.get(f"/departments/{sales['id']}")
    assert read.json["name"] == "Sales" and read.headers["ETag"]


def test_rename_and_move_departments(app, admin, svc):
    company(admin, "acme")
    eng = dept(admin, "acme", "Engineering")
    backend = dept(admin, "acme", "Backend", eng["id"])
    api = dept(admin, "acme", "API", backend["id"])
    sales = dept(admin, "acme", "Sales")
    etag = admin.get(f"/departments/{backend['id']}").headers["ETag"]
    mark = last_audit_id(svc)
    moved = admin.patch(
        f"/departments/{backend['id']}",
        {"name": "Platform", "names": {"de": "Plattform"}, "parent_id": sales["id"]},
        etag,
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["path"] == f"/{sales['id']}/{backend['id']}/"
    assert moved.json["name"] == "Platform" and moved.json["names"] == {"de": "Plattform"}
    assert admin.get(f"/departments/{api['id']}").json["path"] == (
        f"/{sales['id']}/{backend['id']}/{api['id']}/"
    )
    top = admin.patch(f"/departments/{backend['id']}", {"parent_id": None})
    assert top.json["path"] == f"/{backend['id']}/" and top.json["parent_id"] is None
    assert audit_actions(svc, mark) == [
        "org.department_updated",
        "org.department_moved",
        "org.department_moved",
    ]
    refused(app, 412, lambda: admin.patch(f"/departments/{backend['id']}", {"name": "X"}, etag))


def test_a_department_under_its_own_subtree_is_409_and_nothing_changes(app, admin):
    company(admin, "acme")
    eng = dept(admin, "acme", "Engineering")
    backend = dept(admin, "acme", "Backend", eng["id"])
    api = dept(admin, "acme", "API", backend["id"])
    resp = refused(
        app, 409, lambda: admin.patch(f"/departments/{eng['id']}", {"parent_id": api["id"]})
    )
    assert "cycle" in resp.json["detail"]
    refused(app, 409, lambda: admin.patch(f"/departments/{eng['id']}", {"parent_id": eng["id"]}))
    refused(
        app,
        409,
        lambda: admin.patch(
            f"/departments/{eng['id']}", {"name": "Renamed", "parent_id": backend["id"]}
        ),
    )
    company(admin, "globex")
    elsewhere = dept(admin, "globex", "Ops")
    # Across companies: the request matches its schema, the data refuses it.
    resp = refused(
        app, 409, lambda: admin.patch(f"/departments/{api['id']}", {"parent_id": elsewhere["id"]})
    )
    assert "company" in resp.json["detail"]
    refused(
        app,
        409,
        lambda: admin.post(
            "/departments", {"company": "acme", "name": "X", "parent_id": elsewhere["id"]}
        ),
    )


def test_duplicate_department_names_are_409(app, admin):
    company(admin, "acme")
    eng = dept(admin, "acme", "Engineering")
    sales = dept(admin, "acme", "Sales")
    refused(app, 409, lambda: admin.post("/departments", {"company": "acme", "name": "Sales"}))
    refused(app, 409, lambda: admin.patch(f"/departments/{sales['id']}", {"name": "Engineering"}))
    dept(admin, "acme", "Sales", eng["id"])  # the same name below another parent is fine
    refused(
        app,
        409,
        lambda: admin.patch(f"/departments/{sales['id']}", {"parent_id": eng["id"]}),
    )


def test_only_an_empty_department_is_deleted(app, admin, svc):
    company(admin, "acme")
    eng = dept(admin, "acme", "Engineering")
    backend = dept(admin, "acme", "Backend", eng["id"])
    resp = refused(app, 409, lambda: admin.delete(f"/departments/{eng['id']}"))
    assert "sub-departments" in resp.json["detail"]
    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.place_user(d.user_by_username("ann"), department=d.department(backend["id"]))
    resp = refused(app, 409, lambda: admin.delete(f"/departments/{backend['id']}"))
    assert "users" in resp.json["detail"]
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.place_user(d.user_by_username("ann"))
        d.assign_role(
            d.user_by_username("ann"),
            d.role_by_name("Helpdesk"),
            scope_department=d.department(backend["id"]),
        )
    resp = refused(app, 409, lambda: admin.delete(f"/departments/{backend['id']}"))
    assert "role assignments" in resp.json["detail"]
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.unassign_role(d.user_by_username("ann"), d.role_by_name("Helpdesk"))
    etag = admin.get(f"/departments/{backend['id']}").headers["ETag"]
    mark = last_audit_id(svc)
    assert admin.delete(f"/departments/{backend['id']}", etag).status_code == 204
    assert admin.delete(f"/departments/{eng['id']}").status_code == 204
    assert audit_actions(svc, mark) == ["org.department_deleted", "org.department_deleted"]


def test_positions(app, admin, svc):
    acme = company(admin, "acme")
    mark = last_audit_id(svc)
    resp = admin.post("/companies/acme/positions", {"name": "Engineer", "names": {"de": "Ing."}})
    assert resp.status_code == 201
    pos = resp.json
    assert resp.headers["Location"] == f"/api/v1/positions/{pos['id']}"
    assert pos["company"] == "acme" and pos["company_id"] == acme["id"]
    admin.post(f"/companies/{acme['id']}/positions", {"name": "Accountant"})
    listed = admin.get("/companies/acme/positions").json
    assert [p["name"] for p in listed["items"]] == ["Accountant", "Engineer"]
    refused(app, 409, lambda: admin.post("/companies/acme/positions", {"name": "Engineer"}))
    refused(app, 409, lambda: admin.patch(f"/positions/{pos['id']}", {"name": "Accountant"}))

    etag = admin.get(f"/positions/{pos['id']}").headers["ETag"]
    renamed = admin.patch(f"/positions/{pos['id']}", {"name": "Developer"}, etag)
    assert renamed.status_code == 200 and renamed.json["name"] == "Developer"
    refused(app, 412, lambda: admin.delete(f"/positions/{pos['id']}", etag))

    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.place_user(d.user_by_username("ann"), position=d.position(d.company("acme"), "Developer"))
    resp = refused(app, 409, lambda: admin.delete(f"/positions/{pos['id']}"))
    assert "held by 1" in resp.json["detail"]
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.place_user(d.user_by_username("ann"))
    assert admin.delete(f"/positions/{pos['id']}").status_code == 204
    assert audit_actions(svc, mark) == [
        "org.position_created",
        "org.position_created",
        "org.position_updated",
        "org.position_deleted",
    ]


def test_without_permission_403_and_nothing_changes(app, admin):
    company(admin, "acme")
    eng = dept(admin, "acme", "Engineering")
    pos = admin.post("/companies/acme/positions", {"name": "Engineer"}).json
    # The User Manager template reads the organization and changes none of it.
    manager = service_caller(app, roles=("User Manager",))
    assert manager.get("/companies/acme/departments/tree").status_code == 200
    for request in (
        lambda: manager.post("/companies", {"slug": "mine", "name": "Mine"}),
        lambda: manager.patch("/companies/acme", {"name": "Mine"}),
        lambda: manager.delete("/companies/acme"),
        lambda: manager.post("/departments", {"company": "acme", "name": "Mine"}),
        lambda: manager.patch(f"/departments/{eng['id']}", {"name": "Mine"}),
        lambda: manager.patch(f"/departments/{eng['id']}", {"parent_id": None}),
        lambda: manager.delete(f"/departments/{eng['id']}"),
        lambda: manager.post("/companies/acme/positions", {"name": "Mine"}),
        lambda: manager.patch(f"/positions/{pos['id']}", {"name": "Mine"}),
        lambda: manager.delete(f"/positions/{pos['id']}"),
    ):
        resp = refused(app, 403, request)
        assert "is required" in resp.json["detail"]
    helpdesk = service_caller(app, roles=("Helpdesk",))
    refused(app, 403, lambda: helpdesk.get("/companies"))
    refused(app, 403, lambda: helpdesk.get("/departments"))


@pytest.mark.parametrize(
    "path",
    [
        "/companies/nope",
        "/companies/4242",
        "/companies/99999999999999999999999",
        "/companies/%C2%B2",
        "/companies/a%00b",
        "/companies/nope/departments/tree",
        "/companies/nope/positions",
        "/departments/abc",
        "/departments/4242",
        "/departments/0",
        "/positions/4242",
    ],
)
def test_unknown_ids_are_404_problems(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 404 and resp.mimetype == PROBLEM
