"""GET / PUT the IP rules of a role, a group, a client and an SAML SP, and the global ones,
through /api/v1: stored canonical and audited; bad entries, unknown fields, other scopes'
ids, missing permissions, stale versions and rules locking out the caller are refused with
problem+json and change no row."""

from __future__ import annotations

import pytest
from directory_api_kit import Caller, refused, service_caller, snapshot
from ip_rules_kit import make_scopes, provider_id, rules
from sqlalchemy import select

from idp.storage.models import AuditEvent


@pytest.fixture
def scopes(svc):
    return make_scopes(svc)


def _path(scopes, kind: str) -> str:
    return {
        "role": f"/roles/{scopes.role}",
        "group": f"/groups/{scopes.group}",
        "client": f"/clients/{scopes.client}",
        "sp": f"/saml/providers/{provider_id(scopes.sp)}",
    }[kind] + "/ip-rules"


KINDS = ("role", "group", "client", "sp")


@pytest.mark.parametrize("kind", KINDS)
def test_each_scope_reads_and_replaces_its_rules_audited(app, svc, admin, scopes, kind):
    path = _path(scopes, kind)
    empty = admin.get(path)
    assert empty.status_code == 200 and empty.json == {"allow": [], "deny": []}
    body = {"allow": ["10.0.0.0/8", " 2001:DB8::/32 ", "10.0.0.0/8"], "deny": ["10.66.0.5"]}
    put = admin.put(path, body)
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.json == {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.5/32"]}
    assert admin.get(path).json == put.json
    assert rules(svc, kind, scopes.key(kind)) == put.json
    with svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "ip_rules.set")).one()
    assert row.target == f"{kind}:{scopes.key(kind)}"
    assert row.details["old"] == {"allow": [], "deny": []} and row.details["new"] == put.json
    cleared = admin.put(path, {"allow": [], "deny": []})
    assert cleared.json == {"allow": [], "deny": []}
    assert rules(svc, kind, scopes.key(kind)) == {"allow": [], "deny": []}


@pytest.mark.parametrize(
    ("body", "status", "field", "detail"),
    [
        ({"allow": ["10.0.0.0/8"], "deny": ["192.0.2.0/24", "nope"]}, 400, "deny.1", "pattern"),
        ({"allow": ["10.0.0.0/8", "x 10.0.0.1"], "deny": []}, 400, "allow.1", "pattern"),
        ({"allow": ["10.1.2.3/8"], "deny": []}, 409, "allow.0", "did you mean 10.0.0.0/8"),
        ({"allow": ["10.0.0.0/33"], "deny": []}, 409, "allow.0", "10.0.0.0/33"),
        ({"allow": [], "deny": ["", "300.1.1.1"]}, 409, "deny.1", "300.1.1.1"),
        ({"allow": ["::ffff:::1"], "deny": []}, 409, "allow.0", "::ffff:::1"),
    ],
)
def test_a_bad_entry_is_refused_naming_it_and_nothing_is_stored(
    app, admin, scopes, body, status, field, detail
):
    for kind in KINDS:
        admin.put(_path(scopes, kind), {"allow": ["198.51.100.0/24"], "deny": []})
        resp = refused(app, status, lambda k=kind: admin.put(_path(scopes, k), body))
        problem = resp.json
        assert problem["errors"][0]["field"] == field
        assert detail in problem["detail"]
        assert rules(app.extensions["idp"], kind, scopes.key(kind))["allow"] == ["198.51.100.0/24"]
    refused(app, status, lambda: admin.put("/ip-rules", body))


@pytest.mark.parametrize(
    "body",
    [
        {"allow": ["10.0.0.0/8"]},  # both lists are required: a PUT replaces the whole
        {"allow": [], "deny": [], "client_id": "other"},
        {"allow": [10], "deny": []},
        {"allow": "10.0.0.0/8", "deny": []},
        {"allow": ["10.0.0.0/8\x00"], "deny": []},
        {"allow": ["1" * 101], "deny": []},
        {"allow": [f"10.0.{i // 256}.{i % 256}" for i in range(201)], "deny": []},
        ["10.0.0.0/8"],
    ],
)
def test_malformed_bodies_are_400_and_change_nothing(app, admin, scopes, body):
    for kind in KINDS:
        resp = refused(app, 400, lambda k=kind: admin.put(_path(scopes, k), body))
        assert resp.json["errors"]


def test_unknown_or_foreign_ids_are_404(app, admin, scopes):
    for path in [
        "/roles/999999/ip-rules",
        "/roles/abc/ip-rules",
        "/groups/999999/ip-rules",
        "/clients/nope/ip-rules",
        f"/saml/providers/{provider_id('https://other.example/sp')}/ip-rules",
        "/saml/providers/%%%/ip-rules",
    ]:
        assert admin.get(path).status_code == 404, path
        refused(app, 404, lambda p=path: admin.put(p, {"allow": ["10.0.0.0/8"], "deny": []}))


def test_reading_needs_the_scopes_read_and_changing_its_update_permission(app, svc, scopes):
    reader = service_caller(app, roles=("Read-only",))
    helpdesk = service_caller(app, roles=("Helpdesk",))
    body = {"allow": ["10.0.0.0/8"], "deny": []}
    for kind in KINDS:
        assert reader.get(_path(scopes, kind)).status_code == 200
        resp = refused(app, 403, lambda k=kind: reader.put(_path(scopes, k), body))
        assert ":update" in resp.json["detail"]
        refused(app, 403, lambda k=kind: helpdesk.get(_path(scopes, k)))
        refused(app, 403, lambda k=kind: helpdesk.put(_path(scopes, k), body))
    assert reader.get("/ip-rules").status_code == 200
    refused(app, 403, lambda: reader.put("/ip-rules", body))
    refused(app, 403, lambda: helpdesk.get("/ip-rules"))


def test_a_stale_if_match_is_412_and_changes_nothing(app, admin, scopes):
    path = _path(scopes, "role")
    etag = admin.get(path).headers["ETag"]
    admin.put(path, {"allow": ["10.0.0.0/8"], "deny": []})
    refused(
        app,
        412,
        lambda: admin.put(path, {"allow": [], "deny": []}, headers={"If-Match": etag}),
    )
    fresh = admin.get(path).headers["ETag"]
    ok = admin.put(path, {"allow": [], "deny": []}, headers={"If-Match": fresh})
    assert ok.status_code == 200


# --- global rules ------------------------------------------------------------------------------


def test_global_rules_are_replaced_audited_and_apply_from_the_next_request(app, svc, admin):
    assert admin.get("/ip-rules").json == {"allow": [], "deny": [], "editable": True}
    # The test client calls from 127.0.0.1: keeping it in is what lets the change through.
    put = admin.put("/ip-rules", {"allow": ["127.0.0.0/8", "198.51.100.0/24"], "deny": []})
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.json == {"allow": ["127.0.0.0/8", "198.51.100.0/24"], "deny": [], "editable": True}
    outside = app.test_client()
    outside.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert outside.get("/login").status_code == 403
    with svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "config.policy_set")).one()
    assert row.target == "ip_rules.allow" and row.details["old"] == []


def test_global_rules_that_refuse_the_callers_own_address_are_409(app, svc, admin):
    resp = refused(app, 409, lambda: admin.put("/ip-rules", {"allow": ["10.0.0.0/8"], "deny": []}))
    assert "your own address 127.0.0.1" in resp.json["detail"]
    assert resp.json["errors"][0]["field"] == "ip_rules.allow"
    resp = refused(app, 409, lambda: admin.put("/ip-rules", {"allow": [], "deny": ["127.0.0.1"]}))
    assert resp.json["errors"][0]["field"] == "ip_rules.deny"
    assert app.test_client().get("/login").status_code == 200


def test_patch_settings_refuses_ip_rules_that_lock_the_caller_out(app, svc, admin):
    before = snapshot(svc)
    for patch, field in [
        ({"ip_rules": {"allow": ["10.0.0.0/8"]}}, "ip_rules.allow"),
        ({"ip_rules": {"deny": ["127.0.0.0/8"]}}, "ip_rules.deny"),
        (
            {"lockout": {"max_failures": 3}, "ip_rules": {"deny": ["::ffff:127.0.0.1"]}},
            "ip_rules.deny",
        ),
    ]:
        resp = admin.patch("/settings", patch)
        assert resp.status_code == 409, resp.get_data(as_text=True)
        assert resp.mimetype == "application/problem+json"
        assert resp.json["errors"][0]["field"] == field
        assert "your own address" in resp.json["detail"]
    assert snapshot(svc) == before
    ok = admin.patch("/settings", {"ip_rules": {"deny": ["192.0.2.0/24"]}})
    assert ok.status_code == 200
    assert list(svc.settings.ip_rules.deny) == ["192.0.2.0/24"]


def test_global_rules_set_by_the_environment_are_409(monkeypatch, make_app):
    monkeypatch.setenv("IDP_IP_RULES_DENY", '["192.0.2.0/24"]')
    app = make_app()
    admin = service_caller(app)
    assert admin.get("/ip-rules").json == {"allow": [], "deny": ["192.0.2.0/24"], "editable": False}
    resp = refused(app, 409, lambda: admin.put("/ip-rules", {"allow": [], "deny": []}))
    assert "environment variable" in resp.json["detail"]


def test_the_openapi_document_describes_the_operations(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    for path in [
        "/roles/{role_id}/ip-rules",
        "/groups/{group_id}/ip-rules",
        "/clients/{client_id}/ip-rules",
        "/saml/providers/{provider_id}/ip-rules",
        "/ip-rules",
    ]:
        ops = doc["paths"]["/api/v1" + path]
        assert set(ops) >= {"get", "put"}, path
        assert ops["put"]["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/IpRulesIn"
        }
        assert "400" in ops["put"]["responses"]
    schema = doc["components"]["schemas"]["IpRulesIn"]
    assert schema["required"] == ["allow", "deny"] and schema["additionalProperties"] is False


def test_a_caller_token_without_a_bearer_is_401(app, scopes):
    caller = Caller(app.test_client(), "not-a-token")
    assert caller.get(_path(scopes, "role")).status_code == 401
