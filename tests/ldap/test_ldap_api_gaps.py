"""A directory (LDAP) account made a local user, and one read again, through the admin API
(``POST /api/v1/users/from-directory``, ``POST /api/v1/users/{id}/directory-refresh``) and the
console's "wrap an existing directory account", against a real slapd: the same
``idp.manage.directory_users`` operations. Hostile: unknown username 404, no permission 403,
a local user or no directory 409, an unreachable directory 503; each changes nothing."""

from __future__ import annotations

import time

from admin_kit import console_csrf, make_admin, signed_in
from directory_api_kit import audit_actions, refused, service_caller, user_uuid
from login_kit import GOOD, make_user
from sqlalchemy import select

from idp.storage.models import User

from . import slapd_server as s


def _user(svc, username: str) -> User | None:
    with svc.sessions() as db:
        return db.scalar(select(User).where(User.username == username))


def test_from_directory_and_refresh_through_the_api(ldap_app, slapd):
    app = ldap_app()
    svc = app.extensions["idp"]
    admin = service_caller(app)
    helpdesk = service_caller(app, roles=("Helpdesk",))
    refused(app, 403, lambda: helpdesk.post("/users/from-directory", {"username": "alice"}))
    refused(app, 404, lambda: admin.post("/users/from-directory", {"username": "ghost"}))
    refused(app, 400, lambda: admin.post("/users/from-directory", {"username": ""}))

    added = admin.post("/users/from-directory", {"username": "alice"})
    assert added.status_code == 201, added.get_data(as_text=True)
    body = added.get_json()
    assert body["username"] == "alice" and body["source"] == "ldap"
    assert body["email"] == "alice@example.org"
    assert added.headers["Location"].endswith(f"/users/{body['id']}")
    assert "user.created" in audit_actions(svc)

    conn = slapd.admin()
    try:
        time.sleep(1.1)
        conn.modify(s.user_dn("alice"), {"sn": [("MODIFY_REPLACE", ["Pleasance"])]})
        refused(app, 403, lambda: helpdesk.post(f"/users/{body['id']}/directory-refresh"))
        refreshed = admin.post(f"/users/{body['id']}/directory-refresh")
        assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
        result = refreshed.get_json()
        assert result["change"] == "updated" and result["status"] == "active"
        assert result["groups"] == ["backend", "developers", "engineering"]
        assert _user(svc, "alice").family_name == "Pleasance"
        assert audit_actions(svc)[-1] == "user.ldap_refreshed"
    finally:
        conn.modify(s.user_dn("alice"), {"sn": [("MODIFY_REPLACE", ["Liddell"])]})
        conn.unbind()

    # A local user is not a directory user; an unknown id is nobody.
    make_user(svc, "lena", GOOD)
    refused(app, 409, lambda: admin.post(f"/users/{user_uuid(svc, 'lena')}/directory-refresh"))
    refused(
        app,
        404,
        lambda: admin.post("/users/00000000-0000-0000-0000-000000000000/directory-refresh"),
    )


def test_no_directory_is_409_and_an_unreachable_one_503(make_app, ldap_app):
    plain = make_app()
    caller = service_caller(plain)
    refused(plain, 409, lambda: caller.post("/users/from-directory", {"username": "alice"}))
    down = ldap_app(url=f"ldap://127.0.0.1:{s.free_port()}", connect_timeout=1)
    caller = service_caller(down)
    resp = refused(down, 503, lambda: caller.post("/users/from-directory", {"username": "bob"}))
    assert resp.get_json()["type"].endswith("/directory-unavailable")


def test_console_wraps_an_existing_directory_account(ldap_app, slapd):
    app = ldap_app()
    svc = app.extensions["idp"]
    make_admin(svc, "root")
    console = signed_in(app, "root")

    def create(username: str):
        data = {
            "csrf_token": console_csrf(console, "/admin/users/new"),
            "source": "ldap",
            "username": username,
            "first_access": "none",
        }
        return console.post("/admin/users/new", data=data, content_type="multipart/form-data")

    missing = create("ghost")
    assert missing.status_code == 409
    assert "The directory has no account with this username." in missing.get_data(as_text=True)
    assert _user(svc, "ghost") is None

    resp = create("bob")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    bob = _user(svc, "bob")
    assert bob.source == "ldap" and resp.headers["Location"].endswith(f"/admin/users/{bob.uuid}")
    # The console's "refresh from directory" is the same operation.
    data = {"csrf_token": console_csrf(console, f"/admin/users/{bob.uuid}")}
    again = console.post(f"/admin/users/{bob.uuid}/ldap-refresh", data=data)
    assert again.status_code == 302
    assert audit_actions(svc)[-1] == "user.ldap_refreshed"
