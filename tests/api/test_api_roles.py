"""``/api/v1/roles`` and ``/api/v1/permission-groups``: roles with permissions, permission groups
and composites; deleting a used role says what uses it; nobody gives what they do not hold or
takes away their own access; refusals change nothing."""

from __future__ import annotations

import pytest
from directory_api_kit import (
    Caller,
    admin_user,
    audit_actions,
    last_audit_id,
    refused,
    service_caller,
)
from login_kit import make_user

from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients
from idp.storage.directory import Directory


def role_id(admin: Caller, name: str) -> int:
    items = admin.get("/roles", query_string={"q": name, "kind": "global"}).json["items"]
    return next(r["id"] for r in items if r["name"] == name)


def make(admin: Caller, name: str, permissions=(), **extra) -> dict:
    resp = admin.post("/roles", {"name": name, "permissions": list(permissions), **extra})
    assert resp.status_code == 201, resp.json
    return resp.json


def add_client(svc, client_id: str) -> None:
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_clients.create(ctx, client_id, redirect_uris=["https://app.example/cb"])


def test_list_filters_and_paginates(app, admin, svc):
    add_client(svc, "app")
    make(admin, "Editor", client_id="app")
    everything = admin.get("/roles").json
    names = [r["name"] for r in everything["items"]]
    assert {"Administrator", "Auditor", "Helpdesk", "Read-only", "User Manager"} <= set(names)
    # Global roles first, then client roles.
    assert names[-1] == "Editor" and everything["items"][-1]["client_id"] == "app"
    admin_row = next(r for r in everything["items"] if r["name"] == "Administrator")
    assert admin_row["permissions"] == ["*"] and admin_row["template"] == "Administrator"

    client_roles = admin.get("/roles", query_string={"client_id": "app"}).json
    assert [r["name"] for r in client_roles["items"]] == ["Editor"]
    assert admin.get("/roles", query_string={"kind": "client"}).json["total"] == 1
    globals_ = admin.get("/roles", query_string={"kind": "global", "per_page": 10})
    assert all(r["client_id"] is None for r in globals_.json["items"])
    for i in range(10):
        make(admin, f"Extra {i}")
    page = admin.get("/roles", query_string={"kind": "global", "per_page": 10, "page": 2}).json
    assert page["total"] == globals_.json["total"] + 10 and len(page["items"]) == 5


def test_create_read_update_with_etag(app, admin, svc):
    mark = last_audit_id(svc)
    resp = admin.post(
        "/roles",
        {"name": "Reader", "description": "reads", "permissions": ["users:accounts:read"]},
    )
    assert resp.status_code == 201
    role = resp.json
    assert resp.headers["Location"] == f"/api/v1/roles/{role['id']}"
    assert role["permissions"] == ["users:accounts:read"]
    assert role["effective_permissions"] == ["users:accounts:read"]
    assert role["client_id"] is None and role["composites"] == []

    read = admin.get(f"/roles/{role['id']}")
    assert read.json == role and read.headers["ETag"] == resp.headers["ETag"]
    changed = admin.patch(
        f"/roles/{role['id']}", {"description": "reads users"}, read.headers["ETag"]
    )
    assert changed.status_code == 200 and changed.json["description"] == "reads users"
    refused(
        app,
        412,
        lambda: admin.patch(f"/roles/{role['id']}", {"description": "x"}, read.headers["ETag"]),
    )
    assert audit_actions(svc, mark) == ["role.created", "role.updated"]


def test_client_roles(app, admin, svc):
    add_client(svc, "app")
    role = make(admin, "Editor", ["app:documents:write"], client_id="app")
    assert role["client_id"] == "app" and role["permissions"] == ["app:documents:write"]
    # Client roles carry no IdP permissions.
    assert role["effective_permissions"] == []
    # The same name may exist globally and for another client.
    assert make(admin, "Editor")["client_id"] is None
    refused(app, 409, lambda: admin.post("/roles", {"name": "Editor", "client_id": "app"}))
    refused(app, 404, lambda: admin.post("/roles", {"name": "X", "client_id": "no-such-app"}))


def test_duplicate_and_invalid_input(app, admin):
    refused(app, 409, lambda: admin.post("/roles", {"name": "Auditor"}))
    refused(app, 400, lambda: admin.post("/roles", {"name": "X", "permissions": ["Not Valid"]}))
    for body in (
        {"name": "X", "template": "Administrator"},
        {"name": "X", "id": 1},
        {"name": "X", "composites": [1]},
    ):
        resp = refused(app, 400, lambda body=body: admin.post("/roles", body))
        assert resp.json["errors"][0]["field"] in body
    rid = role_id(admin, "Auditor")
    resp = refused(app, 400, lambda: admin.patch(f"/roles/{rid}", {"name": "Renamed"}))
    assert resp.json["errors"][0]["field"] == "name"


def test_permissions_add_and_remove(app, admin, svc):
    role = make(admin, "Desk", ["users:accounts:read"])
    mark = last_audit_id(svc)
    resp = admin.post(
        f"/roles/{role['id']}/permissions", {"permissions": ["users:password:reset", "groups:*"]}
    )
    assert resp.status_code == 200
    assert resp.json["permissions"] == ["groups:*", "users:accounts:read", "users:password:reset"]
    removed = admin.delete(f"/roles/{role['id']}/permissions/groups:*")
    assert removed.status_code == 200
    assert removed.json["permissions"] == ["users:accounts:read", "users:password:reset"]
    assert admin.delete(f"/roles/{role['id']}/permissions/groups:*").status_code == 404
    assert admin.delete(f"/roles/{role['id']}/permissions/not%00one").status_code == 404
    refused(
        app, 400, lambda: admin.post(f"/roles/{role['id']}/permissions", {"permissions": ["a b"]})
    )
    refused(app, 400, lambda: admin.post(f"/roles/{role['id']}/permissions", {"permissions": []}))
    assert audit_actions(svc, mark) == ["role.permissions_added", "role.permission_removed"]


def test_composites_and_their_cycles(app, admin, svc):
    a = make(admin, "A", ["app:a:read"])
    b = make(admin, "B", ["app:b:read"])
    c = make(admin, "C", ["app:c:read"])
    assert admin.put(f"/roles/{a['id']}/composites/{b['id']}").status_code == 200
    resp = admin.put(f"/roles/{b['id']}/composites/{c['id']}")
    assert [r["name"] for r in resp.json["composites"]] == ["C"]
    read = admin.get(f"/roles/{a['id']}").json
    assert [r["name"] for r in read["composites"]] == ["B"]
    assert read["effective_permissions"] == ["app:a:read", "app:b:read", "app:c:read"]

    # C -> A would close A -> B -> C -> A; a role including itself is a cycle too.
    resp = refused(app, 409, lambda: admin.put(f"/roles/{c['id']}/composites/{a['id']}"))
    assert "cycle" in resp.json["detail"]
    refused(app, 409, lambda: admin.put(f"/roles/{a['id']}/composites/{a['id']}"))

    mark = last_audit_id(svc)
    resp = admin.delete(f"/roles/{a['id']}/composites/{b['id']}")
    assert resp.status_code == 200 and resp.json["composites"] == []
    assert admin.delete(f"/roles/{a['id']}/composites/{b['id']}").status_code == 404
    assert audit_actions(svc, mark) == ["role.composite_removed"]


def test_permission_groups(app, admin, svc):
    mark = last_audit_id(svc)
    resp = admin.post(
        "/permission-groups",
        {"name": "Directory read", "permissions": ["users:accounts:read", "groups:groups:read"]},
    )
    assert resp.status_code == 201, resp.json
    pg = resp.json
    assert resp.headers["Location"] == f"/api/v1/permission-groups/{pg['id']}"
    assert pg["permissions"] == ["groups:groups:read", "users:accounts:read"]
    role = make(admin, "Viewer")
    with_pg = admin.put(f"/roles/{role['id']}/permission-groups/{pg['id']}")
    assert with_pg.status_code == 200
    assert with_pg.json["permission_groups"] == [{"id": pg["id"], "name": "Directory read"}]
    assert with_pg.json["effective_permissions"] == pg["permissions"]

    listed = admin.get("/permission-groups").json
    assert [p["name"] for p in listed["items"]] == ["Directory read"]
    read = admin.get(f"/permission-groups/{pg['id']}")
    assert read.json["roles"] == [{"id": role["id"], "name": "Viewer", "client_id": None}]

    patched = admin.patch(
        f"/permission-groups/{pg['id']}",
        {"name": "Directory", "permissions": ["users:accounts:read"]},
        read.headers["ETag"],
    )
    assert patched.status_code == 200 and patched.json["name"] == "Directory"
    # Every role that includes the group changes with it.
    assert admin.get(f"/roles/{role['id']}").json["effective_permissions"] == [
        "users:accounts:read"
    ]
    refused(
        app,
        412,
        lambda: admin.patch(f"/permission-groups/{pg['id']}", {"description": "x"}, '"old"'),
    )
    other = admin.post("/permission-groups", {"name": "Other"}).json
    refused(
        app, 409, lambda: admin.patch(f"/permission-groups/{other['id']}", {"name": "Directory"})
    )
    refused(app, 409, lambda: admin.post("/permission-groups", {"name": "Directory"}))

    assert admin.delete(f"/roles/{role['id']}/permission-groups/{pg['id']}").status_code == 200
    assert admin.put(f"/roles/{role['id']}/permission-groups/{pg['id']}").status_code == 200
    assert admin.delete(f"/permission-groups/{pg['id']}").status_code == 204
    assert admin.get(f"/roles/{role['id']}").json["effective_permissions"] == []
    assert audit_actions(svc, mark) == [
        "permission_group.created",
        "role.created",
        "role.permission_group_added",
        "permission_group.renamed",
        "permission_group.updated",
        "permission_group.created",
        "role.permission_group_removed",
        "role.permission_group_added",
        "permission_group.deleted",
    ]


def test_deleting_a_used_role_is_409_with_its_usage_unless_forced(app, admin, svc):
    make_user(svc, "ann")
    role = make(admin, "Desk", ["users:accounts:read"])
    parent = make(admin, "Bigger")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        desk = d.role_by_name("Desk")
        d.assign_role(d.user_by_username("ann"), desk)
        d.assign_group_role(d.create_group("staff"), desk)
        d.add_composite(d.role_by_name("Bigger"), desk)

    resp = refused(app, 409, lambda: admin.delete(f"/roles/{role['id']}"))
    assert resp.json["usage"] == {
        "users": ["ann"],
        "groups": ["staff"],
        "included_by_roles": ["Bigger"],
        "client_service_accounts": [],
        "pending_requests": [],
    }
    assert "ann" in resp.json["detail"]
    assert admin.get(f"/roles/{role['id']}/usage").json == resp.json["usage"]

    etag = admin.get(f"/roles/{role['id']}").headers["ETag"]
    refused(
        app,
        412,
        lambda: admin.delete(f"/roles/{role['id']}", '"stale"', query_string={"force": "true"}),
    )
    mark = last_audit_id(svc)
    gone = admin.delete(f"/roles/{role['id']}", etag, query_string={"force": "true"})
    assert gone.status_code == 204
    assert admin.get(f"/roles/{role['id']}").status_code == 404
    assert admin.get(f"/roles/{parent['id']}").json["composites"] == []
    assert audit_actions(svc, mark) == ["role.deleted"]
    unused = make(admin, "Unused")
    assert admin.delete(f"/roles/{unused['id']}").status_code == 204


def test_nobody_takes_away_their_own_access(app, admin):
    """The caller's own Administrator role: removing its '*' or force-deleting it would leave
    the caller unable to do it again; another administrator has to."""
    admin_id = role_id(admin, "Administrator")
    resp = refused(app, 409, lambda: admin.delete(f"/roles/{admin_id}/permissions/*"))
    assert "away from you" in resp.json["detail"]
    refused(app, 409, lambda: admin.delete(f"/roles/{admin_id}", query_string={"force": "true"}))
    assert admin.get(f"/roles/{admin_id}").json["permissions"] == ["*"]


def test_without_permission_403_and_nothing_changes(app, admin):
    role = make(admin, "Desk", ["users:accounts:read"])
    auditor_id = role_id(admin, "Auditor")
    # The User Manager template reads roles and changes none.
    manager = service_caller(app, roles=("User Manager",))
    assert manager.get(f"/roles/{role['id']}").status_code == 200
    for request in (
        lambda: manager.post("/roles", {"name": "Mine"}),
        lambda: manager.patch(f"/roles/{role['id']}", {"description": "mine"}),
        lambda: manager.delete(f"/roles/{role['id']}"),
        lambda: manager.post(f"/roles/{role['id']}/permissions", {"permissions": ["users:*"]}),
        lambda: manager.delete(f"/roles/{role['id']}/permissions/users:accounts:read"),
        lambda: manager.put(f"/roles/{role['id']}/composites/{auditor_id}"),
        lambda: manager.post("/permission-groups", {"name": "Mine"}),
    ):
        resp = refused(app, 403, request)
        assert "is required" in resp.json["detail"]
    helpdesk = service_caller(app, roles=("Helpdesk",))
    refused(app, 403, lambda: helpdesk.get("/roles"))
    refused(app, 403, lambda: helpdesk.get("/permission-groups"))


def test_a_delegated_admin_creates_no_global_roles_and_gives_nothing_they_lack(app, admin, svc):
    """An Administrator only inside company acme: role administration is global, so nothing.
    With a global role-editing role besides, still nothing they do not hold themselves."""
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.create_company("acme", "Acme")
        d.create_role("Role Editor", ["roles:*:*"])
    scoped = Caller(
        app.test_client(), admin_user(app, "lead", ["Administrator"], scope_company="acme")
    )
    resp = refused(app, 403, lambda: scoped.post("/roles", {"name": "Mine"}))
    assert "roles:roles:create" in resp.json["detail"]
    desk = make(admin, "Desk", ["users:accounts:read"])
    refused(
        app, 403, lambda: scoped.post(f"/roles/{desk['id']}/permissions", {"permissions": ["*"]})
    )

    token = admin_user(
        app, "editor", ["Administrator"], scope_company="acme", global_roles=("Role Editor",)
    )
    editor = Caller(app.test_client(), token)
    for request in (
        lambda: editor.post("/roles", {"name": "Mine", "permissions": ["users:accounts:delete"]}),
        lambda: editor.post(
            f"/roles/{desk['id']}/permissions", {"permissions": ["audit:log:read"]}
        ),
        lambda: editor.put(f"/roles/{desk['id']}/composites/{role_id(admin, 'Administrator')}"),
        lambda: editor.post("/permission-groups", {"name": "PG", "permissions": ["*"]}),
    ):
        resp = refused(app, 403, request)
        assert "you do not hold" in resp.json["detail"]
    pg = admin.post("/permission-groups", {"name": "Audit", "permissions": ["audit:log:read"]})
    resp = refused(
        app, 403, lambda: editor.put(f"/roles/{desk['id']}/permission-groups/{pg.json['id']}")
    )
    assert "you do not hold" in resp.json["detail"]
    # What they hold globally they may put into a role.
    assert (
        editor.post("/roles", {"name": "Mine", "permissions": ["roles:roles:read"]}).status_code
        == 201
    )


@pytest.mark.parametrize(
    "path",
    [
        "/roles/abc",
        "/roles/0",
        "/roles/99999999999999999999999",
        "/roles/4242",
        "/roles/4242/usage",
        "/permission-groups/4242",
        "/permission-groups/x",
    ],
)
def test_unknown_ids_are_404_problems(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
