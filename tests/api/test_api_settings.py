"""GET / PATCH /api/v1/settings: the policy settings kept in the database (the same operation
as the console's settings screen), checked with the settings' own rules, audited, applied on
the next request; refused values and other settings store nothing; permissions."""

from __future__ import annotations

from api_kit import api, service_token
from directory_api_kit import snapshot
from sqlalchemy import select

from idp.storage.models import AuditEvent


def _events(svc, action: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_api_reads_and_patches_the_same_settings(app):
    svc = app.extensions["idp"]
    token = service_token(app)
    client = app.test_client()
    body = api(client, "GET", "/api/v1/settings", token).get_json()
    assert body["sections"]["password_policy"]["min_length"] == {
        "value": 10,
        "source": "file",
        "editable": True,
    }
    resp = api(
        client,
        "PATCH",
        "/api/v1/settings",
        token,
        json={"lockout": {"max_failures": 3}, "registration": {"enabled": True}},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["sections"]["lockout"]["max_failures"]["source"] == "database"
    assert svc.settings.lockout.max_failures == 3 and svc.settings.registration.enabled
    assert {e.target for e in _events(svc, "config.policy_set")} == {
        "lockout.max_failures",
        "registration.enabled",
    }


def test_api_refuses_bad_values_and_other_settings_storing_nothing(app):
    svc = app.extensions["idp"]
    token = service_token(app)
    client = app.test_client()
    before = snapshot(svc)
    for patch, status, field in [
        ({"session": {"idle_minutes": 0}}, 409, "session.idle_minutes"),
        ({"lockout": {"max_failures": 3}, "mfa": {"totp_digits": 9}}, 409, "mfa.totp_digits"),
        ({"branding": {"primary_color": "red"}}, 409, "branding.primary_color"),
        ({"lockout": {"max_failures": "3"}}, 400, "lockout.max_failures"),
        ({"oidc": {"code_lifetime": 600}}, 400, "oidc"),
        ({"mfa": {"sms_password": "x"}}, 400, "mfa.sms_password"),
    ]:
        resp = api(client, "PATCH", "/api/v1/settings", token, json=patch)
        assert resp.status_code == status, resp.get_data(as_text=True)
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["errors"][0]["field"] == field
    assert snapshot(svc) == before
    assert svc.settings.lockout.max_failures == 5


def test_api_refuses_a_key_the_environment_sets(monkeypatch, make_app):
    monkeypatch.setenv("IDP_LOCKOUT_MAX_FAILURES", "4")
    app = make_app()
    svc = app.extensions["idp"]
    token = service_token(app)
    client = app.test_client()
    got = api(client, "GET", "/api/v1/settings", token).get_json()["sections"]["lockout"]
    assert got["max_failures"] == {"value": 4, "source": "environment", "editable": False}
    before = snapshot(svc)
    resp = api(client, "PATCH", "/api/v1/settings", token, json={"lockout": {"max_failures": 3}})
    assert resp.status_code == 409
    assert "environment variable" in resp.get_json()["detail"]
    assert resp.get_json()["errors"][0]["field"] == "lockout.max_failures"
    assert snapshot(svc) == before


def test_api_needs_the_policy_permissions(app):
    client = app.test_client()
    auditor = service_token(app, roles=("Auditor",))
    assert api(client, "GET", "/api/v1/settings", auditor).status_code == 403
    reader = service_token(app, roles=("Read-only",))
    assert api(client, "GET", "/api/v1/settings", reader).status_code == 200
    resp = api(client, "PATCH", "/api/v1/settings", reader, json={"lockout": {"max_failures": 3}})
    assert resp.status_code == 403
