"""The admin API's shared behaviour: Bearer authentication (RFC 6750), problem+json errors
(RFC 9457), the OpenAPI 3.1 document, and the audit log read-out."""

from __future__ import annotations

import pytest
from api_kit import api, service_token, user_token
from login_kit import make_user

from idp.storage.directory import Directory

PROBLEM = "application/problem+json"


def test_no_token_is_401_with_bearer_challenge(client):
    resp = client.get("/api/v1/audit/events")
    assert resp.status_code == 401
    assert resp.mimetype == PROBLEM
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    body = resp.json
    assert body["status"] == 401 and body["title"] and body["detail"] and body["type"]


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer not-a-token", "bearer x.y.z"])
def test_bad_token_is_401(client, header):
    resp = client.get("/api/v1/audit/events", headers={"Authorization": header})
    assert resp.status_code == 401 and resp.mimetype == PROBLEM
    assert "error=" in resp.headers["WWW-Authenticate"]


def test_token_without_admin_scope_is_403(app, client):
    token = service_token(app, scope="scim")
    resp = api(client, "GET", "/api/v1/audit/events", token)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]


def test_service_account_without_permission_is_403(app, client):
    # Helpdesk may hold the admin scope but not read the audit log.
    token = service_token(app, roles=("Helpdesk",))
    resp = api(client, "GET", "/api/v1/audit/events", token)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert "audit:log:read" in resp.json["detail"]


def test_token_for_another_resource_server_is_refused(app, client):
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    svc = app.extensions["idp"]
    with transaction(svc, Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx,
            "rs-client",
            grant_types=["client_credentials"],
            scope="admin",
            roles=["Administrator"],
            extra={"resources": ["https://api.example.org/"]},
        )
    import base64

    basic = base64.b64encode(f"rs-client:{secret}".encode()).decode()
    got = client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": "admin",
            "resource": "https://api.example.org/",
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    assert got.status_code == 200, got.json
    resp = api(client, "GET", "/api/v1/audit/events", got.json["access_token"])
    assert resp.status_code == 401


def test_audit_events_filtered_and_paginated(app, client):
    token = service_token(app)
    made = api(client, "GET", "/api/v1/audit/events", token, query_string={"action": "client."})
    assert made.status_code == 200, made.json
    assert made.json["total"] >= 1
    assert all(e["action"].startswith("client.") for e in made.json["items"])
    one = api(client, "GET", "/api/v1/audit/events", token, query_string={"per_page": 10})
    assert one.json["per_page"] == 10 and len(one.json["items"]) <= 10


@pytest.mark.parametrize(
    "query",
    [
        {"per_page": "7"},
        {"page": "0"},
        {"since": "yesterday"},
        {"bogus": "1"},
        {"page": ["1", "2"]},
    ],
)
def test_bad_query_is_400_naming_the_field(app, client, query):
    token = service_token(app)
    resp = api(client, "GET", "/api/v1/audit/events", token, query_string=query)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    field = next(iter(query))
    assert any(e["field"] == field for e in resp.json["errors"]), resp.json


def test_user_token_from_the_code_flow_acts_as_the_user(app, client):
    svc = app.extensions["idp"]
    make_user(svc, "auditor", "Good-Password-123")
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.assign_role(d.user_by_username("auditor"), d.role_by_name("Auditor"))
    make_user(svc, "plain", "Good-Password-123")
    token = user_token(app, "auditor", "Good-Password-123")
    assert api(client, "GET", "/api/v1/audit/events", token).status_code == 200
    # Without oauth:scope:admin the flow does not hand out the scope: the API says 403.
    plain = user_token(app, "plain", "Good-Password-123", scope="openid")
    assert api(client, "GET", "/api/v1/audit/events", plain).status_code == 403


def test_unknown_path_and_method_are_problem_json(app, client):
    token = service_token(app)
    assert api(client, "GET", "/api/v1/nothing-here", token).mimetype == PROBLEM
    resp = api(client, "DELETE", "/api/v1/audit/events", token)
    assert resp.status_code == 405 and resp.mimetype == PROBLEM


def test_openapi_document_is_3_1_and_lists_the_operations(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    op = doc["paths"]["/api/v1/audit/events"]["get"]
    assert op["security"] and "401" in op["responses"]
    assert {p["name"] for p in op["parameters"]} >= {"page", "per_page", "action"}


@pytest.mark.parametrize("bound", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_audit_time_bounds_beyond_utc_range_bound_nothing(app, client, bound):
    token = service_token(app)
    resp = api(
        client, "GET", "/api/v1/audit/events", token, query_string={"since": bound, "until": bound}
    )
    assert resp.status_code == 200, resp.json


@pytest.mark.parametrize("bound", ["0", "0.0", "1700000000", "2030-01-31", "tomorrow"])
def test_audit_time_bounds_are_rfc3339_only(app, client, bound):
    token = service_token(app)
    resp = api(client, "GET", "/api/v1/audit/events", token, query_string={"until": bound})
    assert resp.status_code == 400 and resp.json["errors"][0]["field"] == "until"
