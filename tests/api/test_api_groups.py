"""``/api/v1/groups``: nested groups by id with their path, rename / describe / move with
If-Match, delete, members (temporary ones included) and group roles; refusals change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from directory_api_kit import (
    PROBLEM,
    Caller,
    admin_user,
    audit_actions,
    last_audit_id,
    refused,
    service_caller,
    user_uuid,
)
from login_kit import make_user

from idp.storage.directory import Directory


def make(admin: Caller, name: str, parent_id: int | None = None, **extra) -> dict:
    resp = admin.post("/groups", {"name": name, "parent_id": parent_id, **extra})
    assert resp.status_code == 201, resp.json
    return resp.json


def test_create_read_and_list(app, admin, svc):
    mark = last_audit_id(svc)
    resp = admin.post("/groups", {"name": "staff", "description": "Everyone employed"})
    assert resp.status_code == 201
    staff = resp.json
    assert resp.headers["Location"] == f"/api/v1/groups/{staff['id']}"
    assert staff["path"] == "staff" and staff["parent_id"] is None and staff["roles"] == []
    it = make(admin, "it", staff["id"])
    assert it["path"] == "staff/it" and it["parent_id"] == staff["id"]
    assert audit_actions(svc, mark) == ["group.created", "group.created"]

    read = admin.get(resp.headers["Location"].removeprefix("/api/v1"))
    assert read.status_code == 200 and read.json == staff
    assert read.headers["ETag"] == resp.headers["ETag"]

    for i in range(11):
        make(admin, f"team-{i:02}", staff["id"])
    children = admin.get("/groups", query_string={"parent_id": staff["id"], "per_page": 10})
    assert children.json["total"] == 12 and len(children.json["items"]) == 10
    page2 = admin.get("/groups", query_string={"parent_id": staff["id"], "per_page": 10, "page": 2})
    assert [g["path"] for g in page2.json["items"]] == ["staff/team-09", "staff/team-10"]
    top = admin.get("/groups", query_string={"top_level": "true"})
    assert [g["path"] for g in top.json["items"]] == ["staff"]
    found = admin.get("/groups", query_string={"q": "it"})
    assert [g["path"] for g in found.json["items"]] == ["staff/it"]


def test_rename_describe_and_move_with_if_match(app, admin, svc):
    staff = make(admin, "staff")
    it = make(admin, "it", staff["id"])
    ops = make(admin, "ops", it["id"])
    other = make(admin, "other")
    etag = admin.get(f"/groups/{it['id']}").headers["ETag"]
    mark = last_audit_id(svc)

    resp = admin.patch(f"/groups/{it['id']}", {"name": "tech", "description": "IT"}, etag)
    assert resp.status_code == 200, resp.json
    assert resp.json["path"] == "staff/tech" and resp.json["description"] == "IT"
    assert resp.headers["ETag"] != etag
    assert admin.get(f"/groups/{ops['id']}").json["path"] == "staff/tech/ops"

    moved = admin.patch(f"/groups/{it['id']}", {"parent_id": other["id"]})
    assert moved.json["path"] == "other/tech" and moved.json["parent_id"] == other["id"]
    assert admin.get(f"/groups/{ops['id']}").json["path"] == "other/tech/ops"
    top = admin.patch(f"/groups/{it['id']}", {"parent_id": None, "description": None})
    assert top.json["path"] == "tech" and top.json["description"] is None
    assert audit_actions(svc, mark) == [
        "group.renamed",
        "group.updated",
        "group.moved",
        "group.updated",
        "group.moved",
    ]


def test_stale_if_match_is_412_and_nothing_changes(app, admin):
    staff = make(admin, "staff")
    old = admin.get(f"/groups/{staff['id']}").headers["ETag"]
    assert admin.patch(f"/groups/{staff['id']}", {"description": "new"}, old).status_code == 200
    resp = refused(app, 412, lambda: admin.patch(f"/groups/{staff['id']}", {"name": "x"}, old))
    assert resp.json["status"] == 412
    refused(app, 412, lambda: admin.delete(f"/groups/{staff['id']}", old))
    assert admin.get(f"/groups/{staff['id']}").json["name"] == "staff"


def test_a_group_under_itself_or_its_subgroup_is_409_and_nothing_changes(app, admin):
    staff = make(admin, "staff")
    it = make(admin, "it", staff["id"])
    ops = make(admin, "ops", it["id"])
    resp = refused(
        app, 409, lambda: admin.patch(f"/groups/{staff['id']}", {"parent_id": ops["id"]})
    )
    assert "cycle" in resp.json["detail"]
    refused(app, 409, lambda: admin.patch(f"/groups/{it['id']}", {"parent_id": it["id"]}))
    # A rename in the same patch is rolled back with the refused move.
    refused(
        app,
        409,
        lambda: admin.patch(f"/groups/{it['id']}", {"name": "tech", "parent_id": ops["id"]}),
    )
    assert admin.get(f"/groups/{ops['id']}").json["path"] == "staff/it/ops"


def test_duplicate_paths_are_409(app, admin):
    staff = make(admin, "staff")
    make(admin, "it", staff["id"])
    sales = make(admin, "sales", staff["id"])
    refused(app, 409, lambda: admin.post("/groups", {"name": "it", "parent_id": staff["id"]}))
    refused(app, 409, lambda: admin.patch(f"/groups/{sales['id']}", {"name": "it"}))
    # The same name elsewhere in the tree is fine.
    assert make(admin, "it")["path"] == "it"


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"name": "x", "id": 7}),
        ("POST", {"name": "x", "path": "a/b"}),
        ("POST", {"name": "x", "company_id": 1}),
        ("PATCH", {"path": "elsewhere"}),
        ("PATCH", {"roles": [1]}),
        ("PATCH", {"name": None}),
        ("PATCH", {"name": "a/b"}),
        ("POST", {"name": " padded "}),
    ],
)
def test_unknown_or_invalid_fields_are_400_naming_the_field(app, admin, method, body):
    staff = make(admin, "staff")
    path = "/groups" if method == "POST" else f"/groups/{staff['id']}"
    resp = refused(app, 400, lambda: admin(method, path, json=body))
    assert resp.json["errors"][0]["field"].split(".")[0] in body


def test_delete(app, admin, svc):
    staff = make(admin, "staff")
    it = make(admin, "it", staff["id"])
    resp = refused(app, 409, lambda: admin.delete(f"/groups/{staff['id']}"))
    assert "subgroups" in resp.json["detail"]
    etag = admin.get(f"/groups/{it['id']}").headers["ETag"]
    mark = last_audit_id(svc)
    assert admin.delete(f"/groups/{it['id']}", etag).status_code == 204
    assert admin.get(f"/groups/{it['id']}").status_code == 404
    assert audit_actions(svc, mark) == ["group.deleted"]


@pytest.mark.parametrize(
    "path",
    [
        "/groups/abc",
        "/groups/0",
        "/groups/99999999999999999999999",
        "/groups/%C2%B2",
        "/groups/12345",
        "/groups/12345/members",
    ],
)
def test_unknown_ids_are_404_problems(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 404 and resp.mimetype == PROBLEM


def test_members_temporary_and_permanent_paginated(app, admin, svc, clock):
    staff = make(admin, "staff")
    for i in range(12):
        make_user(svc, f"user{i:02}")
    until = (clock.utcnow() + timedelta(days=30)).isoformat()
    mark = last_audit_id(svc)
    resp = admin.put(
        f"/groups/{staff['id']}/members/{user_uuid(svc, 'user00')}", {"expires_at": until}
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["username"] == "user00" and resp.json["expires_at"].startswith(until[:19])
    for i in range(1, 12):
        assert (
            admin.put(f"/groups/{staff['id']}/members/{user_uuid(svc, f'user{i:02}')}").status_code
            == 200
        )
    assert audit_actions(svc, mark) == ["group.member_added"] * 12

    page = admin.get(f"/groups/{staff['id']}/members", query_string={"per_page": 10})
    assert page.json["total"] == 12 and len(page.json["items"]) == 10
    assert page.json["items"][0]["expires_at"] and page.json["items"][1]["expires_at"] is None
    last = admin.get(f"/groups/{staff['id']}/members", query_string={"per_page": 10, "page": 2})
    assert [m["username"] for m in last.json["items"]] == ["user10", "user11"]

    # Past what UTC can hold is the end of time.
    far = admin.put(
        f"/groups/{staff['id']}/members/{user_uuid(svc, 'user00')}",
        {"expires_at": "9999-12-31T23:00:00-05:00"},
    )
    assert far.status_code == 200 and far.json["expires_at"].startswith("9999-12-31T23:59:59")
    # Again without expiry: the membership becomes permanent.
    again = admin.put(f"/groups/{staff['id']}/members/{user_uuid(svc, 'user00')}")
    assert again.json["expires_at"] is None

    # A temporary membership that ended is no longer listed.
    assert (
        admin.put(
            f"/groups/{staff['id']}/members/{user_uuid(svc, 'user01')}", {"expires_at": until}
        ).status_code
        == 200
    )
    clock.advance(timedelta(days=31).total_seconds())
    admin = service_caller(app)  # a token of the new day
    assert admin.get(f"/groups/{staff['id']}/members").json["total"] == 11
    uuid = user_uuid(svc, "user05")
    assert admin.delete(f"/groups/{staff['id']}/members/{uuid}").status_code == 204
    assert admin.delete(f"/groups/{staff['id']}/members/{uuid}").status_code == 404
    assert admin.get(f"/groups/{staff['id']}/members").json["total"] == 10


def test_member_refusals_change_nothing(app, admin, svc, clock):
    staff = make(admin, "staff")
    make_user(svc, "ann")
    ann = user_uuid(svc, "ann")
    past = (clock.utcnow() - timedelta(days=1)).isoformat()
    # The request matches its schema; the clock refuses it.
    resp = refused(
        app, 409, lambda: admin.put(f"/groups/{staff['id']}/members/{ann}", {"expires_at": past})
    )
    assert "past" in resp.json["detail"]
    naive = "2031-01-01T00:00:00"
    refused(
        app, 400, lambda: admin.put(f"/groups/{staff['id']}/members/{ann}", {"expires_at": naive})
    )
    refused(app, 404, lambda: admin.put(f"/groups/{staff['id']}/members/no-such-user"))
    refused(app, 404, lambda: admin.put(f"/groups/{staff['id']}/members/a%00b"))
    seconds = {"expires_at": 1_900_000_000}  # RFC 3339 text only, not seconds since 1970
    refused(app, 400, lambda: admin.put(f"/groups/{staff['id']}/members/{ann}", seconds))
    refused(app, 404, lambda: admin.put(f"/groups/4242/members/{ann}"))
    refused(app, 400, lambda: admin.put(f"/groups/{staff['id']}/members/{ann}", {"role": 1}))


def test_group_roles(app, admin, svc):
    staff = make(admin, "staff")
    auditor_id = admin.get("/roles", query_string={"q": "Auditor"}).json["items"][0]["id"]
    mark = last_audit_id(svc)
    resp = admin.put(f"/groups/{staff['id']}/roles/{auditor_id}")
    assert resp.status_code == 200
    assert [r["name"] for r in resp.json["roles"]] == ["Auditor"]
    assert [r["name"] for r in admin.get(f"/groups/{staff['id']}").json["roles"]] == ["Auditor"]
    removed = admin.delete(f"/groups/{staff['id']}/roles/{auditor_id}")
    assert removed.status_code == 200 and removed.json["roles"] == []
    assert admin.delete(f"/groups/{staff['id']}/roles/{auditor_id}").status_code == 404
    assert audit_actions(svc, mark) == ["group.role_assigned", "group.role_unassigned"]
    assert admin.put(f"/groups/{staff['id']}/roles/4242").status_code == 404


def test_without_permission_403_and_nothing_changes(app, admin, svc):
    staff = make(admin, "staff")
    make_user(svc, "ann")
    ann = user_uuid(svc, "ann")
    admin_role = admin.get("/roles", query_string={"q": "Administrator"}).json["items"][0]["id"]
    helpdesk = service_caller(app, roles=("Helpdesk",))
    for request in (
        lambda: helpdesk.get("/groups"),
        lambda: helpdesk.get(f"/groups/{staff['id']}"),
        lambda: helpdesk.post("/groups", {"name": "mine"}),
        lambda: helpdesk.patch(f"/groups/{staff['id']}", {"name": "mine"}),
        lambda: helpdesk.delete(f"/groups/{staff['id']}"),
        lambda: helpdesk.put(f"/groups/{staff['id']}/members/{ann}"),
        lambda: helpdesk.put(f"/groups/{staff['id']}/roles/{admin_role}"),
    ):
        resp = refused(app, 403, request)
        assert "is required" in resp.json["detail"]

    # An Auditor reads groups and members, and changes nothing.
    auditor = service_caller(app, roles=("Auditor",))
    assert auditor.get(f"/groups/{staff['id']}/members").status_code == 200
    refused(app, 403, lambda: auditor.post("/groups", {"name": "mine"}))
    # A User Manager runs groups but cannot give a group the Administrator role.
    manager = service_caller(app, roles=("User Manager",))
    resp = refused(app, 403, lambda: manager.put(f"/groups/{staff['id']}/roles/{admin_role}"))
    assert "you do not hold" in resp.json["detail"]


def test_a_delegated_admin_adds_only_their_own_users_to_groups_they_could_grant(app, admin, svc):
    """A User Manager scoped to acme (who reads groups everywhere): members from acme only
    (others are 404, not 403), not into a group whose roles carry more than they hold, and the
    member list shows only the people they may read."""
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.create_company("acme", "Acme")
        d.create_company("globex", "Globex")
        d.create_role("Group Reader", ["groups:groups:read"])
    for name, company in (("inside", "acme"), ("outside", "globex")):
        make_user(svc, name)
        with svc.sessions.begin() as db:
            d = Directory(db, svc.clock)
            d.place_user(d.user_by_username(name), company=d.company(company))
    token = admin_user(
        app, "lead", ["User Manager"], scope_company="acme", global_roles=("Group Reader",)
    )
    lead = Caller(app.test_client(), token)
    staff = make(admin, "staff")
    admins = make(admin, "admins")
    admin_role = admin.get("/roles", query_string={"q": "Administrator"}).json["items"][0]["id"]
    assert admin.put(f"/groups/{admins['id']}/roles/{admin_role}").status_code == 200
    inside, outside = user_uuid(svc, "inside"), user_uuid(svc, "outside")

    resp = lead.put(f"/groups/{staff['id']}/members/{inside}")
    assert resp.status_code == 200, resp.json
    refused(app, 404, lambda: lead.put(f"/groups/{staff['id']}/members/{outside}"))
    resp = refused(app, 403, lambda: lead.put(f"/groups/{admins['id']}/members/{inside}"))
    assert "you do not hold" in resp.json["detail"]
    # Group administration itself is global: a scoped grant does not reach it.
    refused(app, 403, lambda: lead.post("/groups", {"name": "mine"}))

    assert admin.put(f"/groups/{staff['id']}/members/{outside}").status_code == 200
    assert admin.get(f"/groups/{staff['id']}/members").json["total"] == 2
    seen = lead.get(f"/groups/{staff['id']}/members").json
    assert seen["total"] == 1 and [m["username"] for m in seen["items"]] == ["inside"]
    refused(app, 404, lambda: lead.delete(f"/groups/{staff['id']}/members/{outside}"))
