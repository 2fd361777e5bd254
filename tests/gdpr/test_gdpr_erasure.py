"""GDPR erasure (docs/gdpr.md) through the REST API, the command line and the console: after it
no table holds the person's name, e-mail, phone or address change, the picture file is gone,
sessions and links are dead, the audit rows of the person keep no personal field and the erasure
is recorded as ``user.erased`` naming only the uuid. Refusals (the last administrator, an
unknown user, oneself, no permission) change nothing."""

from __future__ import annotations

import json

from admin_kit import console_csrf, make_admin, signed_in
from api_kit import api, service_token, user_token
from directory_api_kit import snapshot
from gdpr_kit import PERSON, rich_user, traces
from login_kit import GOOD, login, make_user, outbox
from sqlalchemy import func, or_, select

from idp.cli import main
from idp.storage.models import AuditEvent, User
from idp.storage.models_gdpr import DeletionRequest

PROBLEM = "application/problem+json"


def _audit_of(svc, uuid: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(
            db.scalars(
                select(AuditEvent)
                .where(or_(AuditEvent.actor == uuid, AuditEvent.target == uuid))
                .order_by(AuditEvent.id)
            )
        )


def _assert_erased(app, person: dict) -> None:
    svc = app.extensions["idp"]
    assert traces(svc) == []
    assert not person["picture"].exists()
    with svc.sessions() as db:
        assert db.scalar(select(User).where(User.uuid == person["uuid"])) is None
        # The ended request keeps only the pseudonymous uuid.
        req = db.scalar(select(DeletionRequest).where(DeletionRequest.user_uuid == person["uuid"]))
        assert req.user_id is None and req.status == "approved"
    rows = _audit_of(svc, person["uuid"])
    assert len(rows) > 3  # the login, the address change, the reset link... are still recorded
    erased = [r for r in rows if r.action == "user.erased"]
    assert len(erased) == 1
    for row in rows:
        if row is not erased[0]:
            assert row.ip is None and row.details == {}, (row.action, row.details)
    assert set(erased[0].details) == {"why", "sessions_ended", "audit_rows_blanked"}
    assert erased[0].details["sessions_ended"] == 1
    # The signed-in browser is signed out.
    assert person["client"].get("/account/").status_code in (302, 303)


def test_api_erasure_leaves_no_trace(app, svc):
    person = rich_user(app)
    assert traces(svc)  # the scan does see the person before
    token = service_token(app)
    client = app.test_client()
    resp = api(client, "DELETE", f"/api/v1/users/{person['uuid']}?erase=true", token)
    assert resp.status_code == 204, resp.get_data(as_text=True)
    _assert_erased(app, person)
    assert api(client, "GET", f"/api/v1/users/{person['uuid']}", token).status_code == 404


def test_erasure_on_postgresql(make_app, pg_url):
    app = make_app(database_url=pg_url)
    svc = app.extensions["idp"]
    person = rich_user(app)
    token = service_token(app)
    resp = api(app.test_client(), "DELETE", f"/api/v1/users/{person['uuid']}?erase=true", token)
    assert resp.status_code == 204, resp.get_data(as_text=True)
    _assert_erased(app, person)
    assert svc.engine.dialect.name == "postgresql"


def test_cli_erasure(app, svc, monkeypatch, capsys, instance_dir):
    person = rich_user(app)
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    code = main(["users", "erase", PERSON["username"], "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["id"] == person["uuid"] and report["erased"] is True
    assert report["sessions_ended"] == 1 and report["directory_kept"] is False
    assert report["removed"]["refresh_tokens"] == 1 and report["removed"]["consents"] == 1
    assert report["removed"]["webauthn_credentials"] == 1
    _assert_erased(app, person)
    # Erasing again: the person is unknown now.
    code = main(["users", "erase", PERSON["username"]])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1 and "no user" in err


def test_console_erasure_asks_for_confirmation(app, svc):
    make_admin(svc)
    person = rich_user(app)
    admin = signed_in(app)
    page = admin.get(f"/admin/users/{person['uuid']}")
    assert f"/admin/users/{person['uuid']}/erase" in page.get_data(as_text=True)
    form = admin.get(f"/admin/users/{person['uuid']}/erase").get_data(as_text=True)
    assert "cannot be undone" in form
    before = snapshot(svc)
    token = console_csrf(admin, f"/admin/users/{person['uuid']}/erase")
    wrong = admin.post(
        f"/admin/users/{person['uuid']}/erase",
        data={"csrf_token": token, "confirm_username": "someone-else"},
    )
    assert wrong.status_code == 400 and "Traceback" not in wrong.get_data(as_text=True)
    assert snapshot(svc) == before
    done = admin.post(
        f"/admin/users/{person['uuid']}/erase",
        data={"csrf_token": token, "confirm_username": PERSON["username"]},
    )
    assert done.status_code in (302, 303)
    _assert_erased(app, person)


# --- refusals -------------------------------------------------------------------------------------


def _only_admin(svc) -> str:
    make_admin(svc, "solo")
    with svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == "solo"))


def test_last_administrator_is_refused_everywhere(app, svc, monkeypatch, capsys, instance_dir):
    uuid = _only_admin(svc)
    # The API's caller is a service account: it holds Administrator, but is no user.
    token = service_token(app)
    client = app.test_client()
    before = snapshot(svc)
    resp = api(client, "DELETE", f"/api/v1/users/{uuid}?erase=true", token)
    assert resp.status_code == 409 and resp.mimetype == PROBLEM
    assert "last administrator" in resp.json["detail"]
    # Plain deletion is refused the same way.
    assert api(client, "DELETE", f"/api/v1/users/{uuid}", token).status_code == 409
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    code = main(["users", "erase", "solo"])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and "last administrator" in err and err.count("\n") == 1
    assert snapshot(svc) == before
    # With a second administrator the first one can go.
    make_admin(svc, "second")
    assert api(client, "DELETE", f"/api/v1/users/{uuid}?erase=true", token).status_code == 204


def test_unknown_user_and_bad_query_change_nothing(app, svc):
    token = service_token(app)
    client = app.test_client()
    before = snapshot(svc)
    missing = "00000000-0000-4000-8000-000000000000"
    resp = api(client, "DELETE", f"/api/v1/users/{missing}?erase=true", token)
    assert resp.status_code == 404 and resp.mimetype == PROBLEM
    make_user(svc, "zed")
    with svc.sessions() as db:
        zed = db.scalar(select(User.uuid).where(User.username == "zed"))
    before = snapshot(svc)
    resp = api(client, "DELETE", f"/api/v1/users/{zed}?erase=maybe", token)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    resp = api(client, "DELETE", f"/api/v1/users/{zed}?wipe=true", token)
    assert resp.status_code == 400
    assert snapshot(svc) == before


def test_without_permission_or_on_oneself_nothing_changes(app, svc):
    make_admin(svc, "helper", role="Helpdesk", password=GOOD)
    make_admin(svc, "boss", password=GOOD)
    make_user(svc, "victim")
    with svc.sessions() as db:
        ids = dict(db.execute(select(User.username, User.uuid)).all())
    client = app.test_client()
    helper = user_token(app, "helper", GOOD)
    boss = user_token(app, "boss", GOOD)
    before = snapshot(svc)
    resp = api(client, "DELETE", f"/api/v1/users/{ids['victim']}?erase=true", helper)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    resp = api(client, "DELETE", f"/api/v1/users/{ids['boss']}?erase=true", boss)
    assert resp.status_code == 409 and resp.mimetype == PROBLEM
    after = snapshot(svc)
    # Only the sign-ins of the token flows may differ: no row of the two refusals.
    assert after["users"] == before["users"]
    assert {k: v for k, v in after.items() if k not in ("kv_store",)} == {
        k: v for k, v in before.items() if k not in ("kv_store",)
    }


def test_ldap_account_erases_the_local_copy_only(app, svc, monkeypatch, capsys, instance_dir):
    make_user(svc, "dirk", source="ldap", ldap_dn="uid=dirk,ou=people,dc=example,dc=org")
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    code = main(["users", "erase", "dirk"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "LDAP directory still holds the person" in out
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(User).where(User.username == "dirk")) == 0
    assert traces(svc, ["dirk"]) == []


def test_erased_user_cannot_sign_in(app, svc):
    person = rich_user(app)
    token = service_token(app)
    api(app.test_client(), "DELETE", f"/api/v1/users/{person['uuid']}?erase=true", token)
    page = login(app.test_client(), PERSON["username"], GOOD)
    assert page.status_code == 401
    assert outbox(svc) is not None
