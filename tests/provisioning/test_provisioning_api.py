"""The admin API of provisioning targets: create (the token never comes back), refusal of a URL
the outbound policy forbids as problem+json with nothing stored, status with failed items,
retry, full sync, delete; every change audited; the OpenAPI document lists the operations."""

from __future__ import annotations

import json

from api_kit import api, service_token
from provisioning_kit import Stub, drain
from sqlalchemy import func, select

from idp.storage.models import AuditEvent
from idp.storage.models_provisioning import ProvisioningQueueItem, ProvisioningTarget

BASE = "/api/v1/provisioning/targets"


def _count(svc, model) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_a_refused_url_is_a_problem_and_nothing_is_stored(app):
    svc = app.extensions["idp"]
    token = service_token(app)
    client = app.test_client()
    audit_before = _count(svc, AuditEvent)
    resp = api(client, "POST", BASE, token, json={
        "name": "crm", "base_url": "http://crm.example.org/scim/v2", "token": "secret-1",
    })
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    assert resp.json["detail"] == "the base URL is refused: only https URLs are fetched"
    assert _count(svc, ProvisioningTarget) == 0
    assert _count(svc, AuditEvent) == audit_before


def test_targets_through_the_api(make_app, clock):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})
    svc = app.extensions["idp"]
    token = service_token(app)
    client = app.test_client()
    stub = Stub()
    try:
        stub.script["POST /Users"] = [(400, b'{"detail": "no"}', {})]
        resp = api(client, "POST", BASE, token, json={
            "name": "crm", "base_url": stub.url, "token": "secret-token-1",
            "mapping": {"userName": "email"},
        })
        assert resp.status_code == 201, resp.json
        target = resp.json
        assert resp.headers["Location"].endswith(f"{BASE}/{target['id']}")
        assert target["token_set"] is True and "token" not in target
        assert "secret-token-1" not in resp.get_data(as_text=True)
        assert target["mapping"]["userName"] == "email"

        resp = api(client, "POST", "/api/v1/users", token, json={
            "username": "bob", "email": "bob@example.org",
        })
        assert resp.status_code == 201, resp.json
        drain(svc)
        status = api(client, "GET", f"{BASE}/{target['id']}/status", token).json
        assert status["queue"] == {"pending": 0, "failed": 1}
        [failed] = status["failed"]
        assert failed["name"] == "bob" and failed["error"] == "POST /Users: HTTP 400: no"

        resp = api(client, "POST", f"{BASE}/{target['id']}/retry", token, json={})
        assert resp.json == {"queued": 1}
        drain(svc)
        assert stub.posts()[-1]["userName"] == "bob@example.org"
        status = api(client, "GET", f"{BASE}/{target['id']}/status", token).json
        assert status["queue"] == {"pending": 0, "failed": 0} and status["objects"] == 1
        assert status["target"]["last_success_at"]

        resp = api(client, "POST", f"{BASE}/{target['id']}/full-sync", token)
        assert resp.json == {"queued": 1}  # bob (the only user)
        resp = api(client, "PATCH", f"{BASE}/{target['id']}", token, json={"enabled": False})
        assert resp.json["enabled"] is False
        resp = api(client, "DELETE", f"{BASE}/{target['id']}", token)
        assert resp.status_code == 204
        assert _count(svc, ProvisioningTarget) == 0
        assert _count(svc, ProvisioningQueueItem) == 0
    finally:
        stub.close()
    with svc.sessions() as db:
        rows = db.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith("provisioning."))
            .order_by(AuditEvent.id)
        ).all()
    assert [r.action for r in rows] == [
        "provisioning.target_created",
        "provisioning.retried",
        "provisioning.full_sync",
        "provisioning.target_updated",
        "provisioning.target_deleted",
    ]
    assert all("secret-token-1" not in json.dumps(r.details, default=str) for r in rows)


def test_the_openapi_document_lists_the_operations(app):
    paths = app.test_client().get("/api/v1/openapi.json").json["paths"]
    one = BASE + "/{target_id}"
    assert {"get", "post"} <= set(paths[BASE])
    assert {"get", "patch", "delete"} <= set(paths[one])
    assert "post" in paths[one + "/retry"] and "post" in paths[one + "/full-sync"]
    schema = paths[one + "/status"]["get"]["responses"]["200"]["content"]["application/json"]
    assert schema["schema"]["$ref"].endswith("TargetStatus")
