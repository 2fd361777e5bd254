"""``POST /api/v1/users/batch``: one action for many users, each with the caller's permission
over that user and a transaction of their own; a refused request changes nothing."""

from __future__ import annotations

from directory_api_kit import Caller, admin_user, refused, service_caller, user_uuid
from login_kit import make_user, outbox
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import User


def status_of(svc, name: str) -> str:
    with svc.sessions() as db:
        return db.scalar(select(User.status).where(User.username == name))


def test_deactivate_reports_each_user(app, admin: Caller, svc):
    for name in ("ann", "bob"):
        make_user(svc, name)
    ids = [user_uuid(svc, "ann"), user_uuid(svc, "bob"), "missing", user_uuid(svc, "ann")]
    response = admin.post("/users/batch", {"action": "deactivate", "user_ids": ids})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["done"], body["failed"]) == (2, 1)
    assert [r["username"] for r in body["results"]] == ["ann", "bob", None]
    assert body["results"][2]["error"] == "no such user"
    assert status_of(svc, "ann") == status_of(svc, "bob") == "inactive"


def test_password_reset_mails_the_users(app, admin: Caller, svc):
    make_user(svc, "ann")
    body = admin.post(
        "/users/batch", {"action": "password_reset", "user_ids": [user_uuid(svc, "ann")]}
    ).get_json()
    assert body["done"] == 1
    assert [m["To"] for m in outbox(svc)] == ["ann@example.org"]


def test_refusals_change_nothing(app, admin: Caller, svc):
    make_user(svc, "ann")
    ann = [user_uuid(svc, "ann")]
    refused(
        app, 400, lambda: admin.post("/users/batch", {"action": "assign_role", "user_ids": ann})
    )
    refused(app, 400, lambda: admin.post("/users/batch", {"action": "fly", "user_ids": ann}))
    refused(app, 400, lambda: admin.post("/users/batch", {"action": "deactivate", "user_ids": []}))
    refused(
        app,
        404,
        lambda: admin.post(
            "/users/batch", {"action": "add_to_group", "user_ids": ann, "group": "nowhere"}
        ),
    )


def test_a_delegated_caller_fails_on_other_companies_users(app, svc):
    for name in ("ann", "gus"):
        make_user(svc, name)
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.place_user(d.user_by_username("ann"), company=d.create_company("acme", "Acme"))
        d.place_user(d.user_by_username("gus"), company=d.create_company("globex", "Globex"))
    token = admin_user(app, "lead", ["User Manager"], scope_company="acme")
    caller = Caller(app.test_client(), token)
    body = caller.post(
        "/users/batch",
        {"action": "deactivate", "user_ids": [user_uuid(svc, "ann"), user_uuid(svc, "gus")]},
    ).get_json()
    assert [(r["ok"], r["username"]) for r in body["results"]] == [(True, "ann"), (False, None)]
    assert status_of(svc, "gus") == "active"


def test_a_caller_without_the_permission_anywhere_is_403(app, svc):
    make_user(svc, "ann")
    auditor = service_caller(app, roles=("Auditor",))
    refused(
        app,
        403,
        lambda: auditor.post(
            "/users/batch", {"action": "deactivate", "user_ids": [user_uuid(svc, "ann")]}
        ),
    )
