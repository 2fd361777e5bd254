"""The person's data export (GDPR art. 15 / 20): /account/export as JSON and as a readable page,
and the administrator's export of a user (REST API and console), audited. Complete (profile,
groups, roles, sessions, devices, consents, second factors, tokens, terms, requests, own audit
events) and without secrets (no password hash, TOTP seed, code hash, key or token hash)."""

from __future__ import annotations

import json

from admin_kit import make_admin, signed_in
from api_kit import api, service_token, user_token
from directory_api_kit import snapshot
from gdpr_kit import PERSON, rich_user
from login_kit import GOOD, make_user
from sqlalchemy import select

from idp.storage.models import AuditEvent

SECRETS = ("sealed", "rt-erin", "rd1", "h1", "$argon2", "cred-erin")


def _check_complete(data: dict) -> None:
    assert data["profile"]["email"] == PERSON["email"]
    assert data["profile"]["custom"] == {"nickname": "Erinna"}
    assert data["profile"]["has_picture"] is True
    assert [g["path"] for g in data["groups"]] == ["erins-team"]
    assert [r["name"] for r in data["roles"]] == ["Auditor"]
    assert len(data["sessions"]) == 1 and data["sessions"][0]["user_agent"] is not None
    assert data["remembered_devices"][0]["user_agent"] == "Erinna's laptop"
    assert data["mfa"]["totp"]["name"] == "Erinna's phone"
    assert data["mfa"]["security_keys"][0]["name"] == "Erinna's key"
    assert data["mfa"]["code_channels"][0]["destination"] == PERSON["phone"]
    assert data["mfa"]["backup_codes_left"] == 1
    assert [a["key"] for a in data["applications"]] == ["shop"]
    assert data["tokens"][0]["client_id"] == "shop"
    assert data["terms"][0]["version"] == "2024-05"
    assert data["deletion_requests"][0]["status"] == "pending"
    actions = {e["action"] for e in data["activity"]}
    assert {"login.success", "email.change_requested"} <= actions
    text = json.dumps(data)
    for secret in SECRETS:
        assert secret not in text, secret


def test_account_export_json_and_html(app, svc):
    person = rich_user(app)
    client = person["client"]
    resp = client.get("/account/export")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert "attachment" in resp.headers["Content-Disposition"]
    _check_complete(resp.json)
    page = client.get("/account/export?format=html")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for shown in ("Erinna&#39;s laptop", "erins-team", "Auditor", "2024-05", "login.success"):
        assert shown in html, shown
    assert "sealed" not in html
    with svc.sessions() as db:
        formats = [
            e.details.get("format")
            for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "account.exported"))
        ]
    assert formats == ["json", "html"]


def test_signed_out_export_redirects(app):
    assert app.test_client().get("/account/export").status_code in (302, 303)


def test_admin_export_api_and_console_audited(app, svc):
    person = rich_user(app)
    token = service_token(app)
    resp = api(app.test_client(), "GET", f"/api/v1/users/{person['uuid']}/export", token)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    _check_complete(resp.json)
    make_admin(svc)
    admin = signed_in(app)
    got = admin.get(f"/admin/users/{person['uuid']}/export")
    assert got.status_code == 200 and got.mimetype == "application/json"
    _check_complete(json.loads(got.data))
    with svc.sessions() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "user.data_exported")))
    assert [r.target for r in rows] == [person["uuid"], person["uuid"]]


def test_admin_export_refusals_change_nothing(app, svc):
    make_user(svc, "ann")
    make_admin(svc, "nobody", role="Read-only")
    with svc.sessions() as db:
        from idp.storage.models import User

        ann = db.scalar(select(User.uuid).where(User.username == "ann"))
    token = service_token(app)
    c = app.test_client()
    before = snapshot(svc)
    missing = api(c, "GET", "/api/v1/users/00000000-0000-4000-8000-000000000000/export", token)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert c.get(f"/api/v1/users/{ann}/export").status_code == 401
    assert snapshot(svc)["audit_events"] == before["audit_events"]
    plain = user_token(app, "ann", GOOD, scope="openid")
    assert api(c, "GET", f"/api/v1/users/{ann}/export", plain).status_code in (401, 403)
