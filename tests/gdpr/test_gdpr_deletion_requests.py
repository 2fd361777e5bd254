"""Deletion on request (docs/gdpr.md): "Delete my account" on /account/ asks for the password;
``[gdpr] deletion = "immediate"`` erases at once and signs out, ``"approval"`` files a request
that administrators approve (erasure) or reject in the console and the REST API, the person is
mailed either way, and may withdraw a waiting request; ``"off"`` hides the page. Refusals
(wrong password, a second request, deciding twice, no permission) change nothing."""

from __future__ import annotations

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from api_kit import api, service_token, user_token
from directory_api_kit import snapshot
from gdpr_kit import PERSON, rich_user, traces
from login_kit import GOOD, login, make_user, outbox, text_of
from sqlalchemy import select

from idp.storage.models import AuditEvent, User
from idp.storage.models_gdpr import DeletionRequest


def _form(client, data: dict):
    token = console_csrf(client, "/account/delete")
    return client.post("/account/delete", data={"csrf_token": token, **data})


def _requests(svc) -> list[tuple[str, str]]:
    with svc.sessions() as db:
        return list(db.execute(select(DeletionRequest.user_uuid, DeletionRequest.status)).all())


@pytest.fixture
def immediate(make_app):
    return make_app(gdpr={"deletion": "immediate"})


def test_immediate_deletion_erases_and_signs_out(immediate):
    svc = immediate.extensions["idp"]
    person = rich_user(immediate)
    client = person["client"]
    page = client.get("/account/delete").get_data(as_text=True)
    assert "Delete my account now" in page and 'name="password"' in page
    before = snapshot(svc)
    wrong = _form(client, {"action": "delete", "password": "not-my-password"})
    assert wrong.status_code == 401 and "not correct" in wrong.get_data(as_text=True)
    after = snapshot(svc)
    assert (
        after["users"] == before["users"]
        and after["oauth_refresh_tokens"] == before["oauth_refresh_tokens"]
    )
    with svc.sessions() as db:
        failed = db.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
        assert failed.action == "account.delete_reauth_failed"
    done = _form(client, {"action": "delete", "password": GOOD})
    assert done.status_code == 200
    assert "Your account was deleted" in done.get_data(as_text=True)
    assert client.get("/account/").status_code in (302, 303)
    # The person is told, at the address they had; nothing of them is left in the database.
    mails = [m for m in outbox(svc) if m["Subject"] == "Your account was deleted"]
    assert [m["To"] for m in mails] == [PERSON["email"]]
    # The outbox file holds the address (a sent mail); the database does not.
    assert traces(svc) == []
    with svc.sessions() as db:
        row = db.scalar(select(AuditEvent).where(AuditEvent.action == "user.erased"))
        assert row.target == person["uuid"] and row.details["why"] == "request"


def test_last_administrator_cannot_delete_themselves(make_app):
    app = make_app(gdpr={"deletion": "immediate"})
    svc = app.extensions["idp"]
    make_admin(svc, "solo")
    client = signed_in(app, "solo")
    before = snapshot(svc)
    resp = _form(client, {"action": "delete", "password": GOOD})
    assert resp.status_code == 409 and "last administrator" in resp.get_data(as_text=True)
    after = snapshot(svc)
    assert after["users"] == before["users"] and after["user_roles"] == before["user_roles"]


def test_off_hides_the_page(make_app):
    app = make_app(gdpr={"deletion": "off"})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = signed_in(app, "ann")
    assert client.get("/account/delete").status_code == 404
    assert "/account/delete" not in client.get("/account/").get_data(as_text=True)


def test_request_withdraw_and_ask_again(app, svc):
    make_user(svc, "ann")
    client = signed_in(app, "ann")
    assert "Ask for deletion" in client.get("/account/delete").get_data(as_text=True)
    resp = _form(client, {"action": "delete", "password": GOOD})
    assert resp.status_code in (302, 303)
    assert [s for _u, s in _requests(svc)] == ["pending"]
    assert "waiting for an administrator" in client.get("/account/delete").get_data(as_text=True)
    # A second request while one waits: refused, nothing added.
    before = snapshot(svc)
    again = _form(client, {"action": "delete", "password": GOOD})
    assert again.status_code == 409
    assert snapshot(svc)["gdpr_deletion_requests"] == before["gdpr_deletion_requests"]
    assert _form(client, {"action": "withdraw"}).status_code in (302, 303)
    assert [s for _u, s in _requests(svc)] == ["withdrawn"]
    # Nothing to withdraw now: refused, nothing changed.
    before = snapshot(svc)
    assert _form(client, {"action": "withdraw"}).status_code == 409
    assert snapshot(svc)["gdpr_deletion_requests"] == before["gdpr_deletion_requests"]
    assert User is not None and login(app.test_client(), "ann", GOOD).status_code in (302, 303)


def test_console_approve_erases_and_mails(app, svc):
    make_admin(svc)
    person = rich_user(app)
    with svc.sessions.begin() as db:  # the rich user's request is already filed
        assert db.scalar(select(DeletionRequest.status)) == "pending"
    admin = signed_in(app)
    page = admin.get("/admin/deletion-requests").get_data(as_text=True)
    assert PERSON["username"] in page and "Approve and erase" in page
    with svc.sessions() as db:
        req_id = db.scalar(select(DeletionRequest.id))
    token = console_csrf(admin, "/admin/deletion-requests")
    resp = admin.post(f"/admin/deletion-requests/{req_id}/approve", data={"csrf_token": token})
    assert resp.status_code in (302, 303)
    assert traces(svc) == []
    assert _requests(svc) == [(person["uuid"], "approved")]
    mails = [m for m in outbox(svc) if m["Subject"] == "Your account was deleted"]
    assert [m["To"] for m in mails] == [PERSON["email"]]
    # Deciding it again: refused, nothing changed.
    before = snapshot(svc)
    again = admin.post(f"/admin/deletion-requests/{req_id}/approve", data={"csrf_token": token})
    assert again.status_code in (302, 303)
    assert "already approved" in admin.get("/admin/deletion-requests").get_data(as_text=True)
    after = snapshot(svc)
    assert {k: v for k, v in after.items() if k != "kv_store"} == {
        k: v for k, v in before.items() if k != "kv_store"
    }


def test_api_reject_keeps_the_account_and_mails_the_note(app, svc):
    make_user(svc, "ann")
    client = signed_in(app, "ann")
    _form(client, {"action": "delete", "password": GOOD})
    token = service_token(app)
    c = app.test_client()
    listed = api(c, "GET", "/api/v1/gdpr/deletion-requests", token)
    assert listed.status_code == 200 and listed.json["total"] == 1
    item = listed.json["items"][0]
    assert item["username"] == "ann" and item["status"] == "pending"
    resp = api(
        c,
        "POST",
        f"/api/v1/gdpr/deletion-requests/{item['id']}/reject",
        token,
        json={"note": "You still have open invoices."},
    )
    assert resp.status_code == 200 and resp.json["status"] == "rejected"
    mails = [m for m in outbox(svc) if "not approved" in m["Subject"]]
    assert len(mails) == 1 and "open invoices" in text_of(mails[0])
    assert login(app.test_client(), "ann", GOOD).status_code in (302, 303)
    page = client.get("/account/delete").get_data(as_text=True)
    assert "did not approve" in page and "open invoices" in page
    # Hostile: decide again, unknown id, a bad body, a caller without the permission.
    before = snapshot(svc)
    again = api(c, "POST", f"/api/v1/gdpr/deletion-requests/{item['id']}/approve", token)
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert api(c, "POST", "/api/v1/gdpr/deletion-requests/999/approve", token).status_code == 404
    bad = api(
        c,
        "POST",
        f"/api/v1/gdpr/deletion-requests/{item['id']}/reject",
        token,
        json={"reason": "x"},
    )
    assert bad.status_code == 400
    assert api(c, "GET", "/api/v1/gdpr/deletion-requests?status=odd", token).status_code == 400
    assert snapshot(svc) == before


def test_api_approve_needs_the_permission(app, svc):
    make_user(svc, "ann")
    _form(signed_in(app, "ann"), {"action": "delete", "password": GOOD})
    make_admin(svc, "helper", role="Helpdesk")
    helper = user_token(app, "helper", GOOD)
    c = app.test_client()
    with svc.sessions() as db:
        req_id = db.scalar(select(DeletionRequest.id))
    before = snapshot(svc)
    resp = api(c, "POST", f"/api/v1/gdpr/deletion-requests/{req_id}/approve", helper)
    assert resp.status_code in (403, 404) and resp.mimetype == "application/problem+json"
    after = snapshot(svc)
    assert after["users"] == before["users"]
    assert after["gdpr_deletion_requests"] == before["gdpr_deletion_requests"]
