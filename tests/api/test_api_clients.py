"""``/api/v1/clients``: OIDC clients through the admin API. Every operation, and the hostile
cases: unsafe redirect URIs refused naming the field with the stored client unchanged, the
secret never in a read, rotation ending the old secret at the token endpoint (at once, or
after the grace period asked for), no permission -> 403 with nothing changed, stale
``If-Match`` -> 412."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from api_kit import api, service_token
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, Client, ClientServiceRole, Role

PROBLEM = "application/problem+json"
CB = "https://app.example.org/cb"


@pytest.fixture
def admin(app):
    return service_token(app)


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token_status(client, client_id: str, secret: str) -> int:
    """What the token endpoint says to a client_credentials request with this secret."""
    resp = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client_id, secret),
    )
    return resp.status_code


def create(client, token, **body) -> dict:
    body.setdefault("metadata", {"redirect_uris": [CB]})
    resp = api(client, "POST", "/api/v1/clients", token, json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def service_client(client, token, client_id: str = "worker") -> str:
    made = create(
        client, token, client_id=client_id, metadata={"grant_types": ["client_credentials"]}
    )
    return made["client_secret"]


def row(svc, client_id: str) -> dict | None:
    with svc.sessions() as db:
        found = db.get(Client, client_id)
        if found is None:
            return None
        return {
            "meta": dict(found.meta),
            "name": found.name,
            "enabled": found.enabled,
            "secret_hash": found.secret_hash,
            "updated_at": found.updated_at,
        }


def audits(svc, action: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        db.expunge_all()
        return list(rows)


def limited_token(app, name: str, permissions: list[str]) -> str:
    """A service token whose roles hold exactly ``permissions`` (plus the admin scope)."""
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        Directory(db).create_role(name, [*permissions, "oauth:scope:admin"])
    return service_token(app, roles=(name,))


# --- create, read, list ---------------------------------------------------------------------------


def test_create_answers_201_with_location_and_the_secret_once(app, client, admin):
    made = create(client, admin, client_id="web-app", name="Web app")
    secret = made["client_secret"]
    assert secret and made["client_id"] == "web-app"
    assert made["metadata"]["redirect_uris"] == [CB]
    assert made["metadata"]["token_endpoint_auth_method"] == "client_secret_basic"

    got = api(client, "GET", "/api/v1/clients/web-app", admin)
    assert got.status_code == 200 and got.headers["ETag"]
    assert "client_secret" not in got.get_json()
    assert secret not in got.get_data(as_text=True)
    listed = api(client, "GET", "/api/v1/clients", admin, query_string={"q": "web"})
    assert [c["client_id"] for c in listed.get_json()["items"]] == ["web-app"]
    assert secret not in listed.get_data(as_text=True)
    assert all("client_secret" not in item for item in listed.get_json()["items"])
    svc = app.extensions["idp"]
    assert row(svc, "web-app")["secret_hash"] != secret  # stored as a keyed hash only


def test_location_points_at_the_new_client(client, admin):
    resp = api(
        client,
        "POST",
        "/api/v1/clients",
        admin,
        json={"client_id": "loc", "metadata": {"redirect_uris": [CB]}},
    )
    assert resp.headers["Location"] == "/api/v1/clients/loc"
    assert api(client, "GET", resp.headers["Location"], admin).status_code == 200


def test_public_client_gets_no_secret(client, admin):
    made = create(
        client,
        admin,
        client_id="spa",
        metadata={"redirect_uris": [CB], "token_endpoint_auth_method": "none"},
    )
    assert made["client_secret"] is None


def test_list_filters_by_enabled_and_pages(client, admin):
    for name in ("a1", "a2", "a3"):
        create(client, admin, client_id=name)
    api(client, "PATCH", "/api/v1/clients/a2", admin, json={"enabled": False})
    off = api(client, "GET", "/api/v1/clients", admin, query_string={"enabled": "false"})
    assert [c["client_id"] for c in off.get_json()["items"]] == ["a2"]
    page = api(
        client, "GET", "/api/v1/clients", admin, query_string={"q": "a", "per_page": 10, "page": 1}
    ).get_json()
    assert page["total"] >= 3 and page["per_page"] == 10


def test_secret_never_reaches_audit_or_log(app, client, admin, caplog):
    caplog.set_level(logging.DEBUG)
    secret = service_client(client, admin, "quiet")
    rotated = api(client, "POST", "/api/v1/clients/quiet/secret", admin).get_json()
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        dumped = json.dumps([e.details for e in db.scalars(select(AuditEvent))], default=str)
    for value in (secret, rotated["client_secret"]):
        assert value not in dumped
        assert value not in caplog.text
    assert audits(svc, "client.created") and audits(svc, "client.secret_rotated")


# --- hostile input --------------------------------------------------------------------------------

UNSAFE = [
    pytest.param("javascript:alert(document.cookie)", "forbidden scheme", id="javascript"),
    pytest.param("JavaScript:alert(1)", "forbidden scheme", id="javascript-case"),
    pytest.param("data:text/html,<script>x</script>", "forbidden scheme", id="data"),
    pytest.param("https://app.example.org/cb#token", "fragment", id="fragment"),
    pytest.param("http://evil.example/cb", "https", id="http-not-loopback"),
    pytest.param("https://user@app.example.org/cb", "user information", id="userinfo"),
    pytest.param("\thttps://app.example.org/cb", "printable", id="leading-tab"),
    pytest.param(" https://app.example.org/cb", "printable", id="leading-space"),
    pytest.param("/relative/cb", "absolute", id="relative"),
]


@pytest.mark.parametrize(("uri", "why"), UNSAFE)
def test_unsafe_redirect_uri_on_create_is_400_and_nothing_stored(app, client, admin, uri, why):
    resp = api(
        client,
        "POST",
        "/api/v1/clients",
        admin,
        json={"client_id": "bad", "metadata": {"redirect_uris": [uri]}},
    )
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    fields = [e["field"] for e in resp.get_json()["errors"]]
    assert any(f.startswith("metadata.redirect_uris") for f in fields), fields
    assert why in resp.get_json()["detail"]
    assert row(app.extensions["idp"], "bad") is None


@pytest.mark.parametrize(("uri", "why"), UNSAFE)
def test_unsafe_redirect_uri_on_patch_is_400_and_client_unchanged(app, client, admin, uri, why):
    create(client, admin, client_id="kept")
    svc = app.extensions["idp"]
    before = row(svc, "kept")
    resp = api(
        client,
        "PATCH",
        "/api/v1/clients/kept",
        admin,
        json={"name": "renamed", "metadata": {"redirect_uris": [CB, uri]}},
    )
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    assert any(e["field"].startswith("metadata.redirect_uris") for e in resp.get_json()["errors"])
    assert row(svc, "kept") == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("post_logout_redirect_uris", ["javascript:alert(1)"]),
        ("backchannel_logout_uri", "https://127.0.0.1/logout"),
        ("jwks_uri", "http://keys.example.org/jwks"),
        ("logo_uri", "data:image/png;base64,AAAA"),
        ("frontchannel_logout_uri", "https://rp.example.org/logout#x"),
    ],
)
def test_other_unsafe_uris_are_refused_naming_the_field(app, client, admin, field, value):
    create(client, admin, client_id="kept")
    svc = app.extensions["idp"]
    before = row(svc, "kept")
    resp = api(client, "PATCH", "/api/v1/clients/kept", admin, json={"metadata": {field: value}})
    assert resp.status_code == 400
    assert any(e["field"].startswith(f"metadata.{field}") for e in resp.get_json()["errors"])
    assert row(svc, "kept") == before


@pytest.mark.parametrize(
    "body",
    [
        {"client_id": "x", "client_secret": "chosen-by-me", "metadata": {"redirect_uris": [CB]}},
        {"client_id": "x", "metadata": {"redirect_uris": [CB], "client_secret": "s"}},
        {"client_id": "x", "metadata": {"redirect_uris": [CB], "registration_access_token": "t"}},
        {"client_id": "has space", "metadata": {"redirect_uris": [CB]}},
        {"client_id": "x", "metadata": {}},  # the authorization_code grant needs redirect URIs
        {
            "client_id": "x",
            "metadata": {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "none",
            },
        },
        {
            "client_id": "x",
            "metadata": {"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"},
        },
        {"client_id": "x", "metadata": {"redirect_uris": [CB], "access_token_lifetime": 10**6}},
    ],
)
def test_bad_create_bodies_are_400_and_store_nothing(app, client, admin, body):
    resp = api(client, "POST", "/api/v1/clients", admin, json=body)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM, resp.get_json()
    with app.extensions["idp"].sessions() as db:
        assert db.scalar(select(Client).where(Client.client_id.in_(["x", "has space"]))) is None


def test_patch_cannot_set_the_secret_or_change_the_auth_method(app, client, admin):
    create(client, admin, client_id="kept")
    svc = app.extensions["idp"]
    before = row(svc, "kept")
    for body in (
        {"client_secret": "mine"},
        {"metadata": {"client_secret": "mine"}},
        {"metadata": {"token_endpoint_auth_method": "none"}},
        {"enabled": None},
    ):
        resp = api(client, "PATCH", "/api/v1/clients/kept", admin, json=body)
        assert resp.status_code == 400, (body, resp.get_json())
    assert row(svc, "kept") == before


# --- update ---------------------------------------------------------------------------------------


def test_patch_is_a_merge_patch_of_the_metadata(app, client, admin):
    create(
        client,
        admin,
        client_id="m",
        metadata={"redirect_uris": [CB], "logo_uri": "https://app.example.org/logo.png"},
    )
    resp = api(
        client,
        "PATCH",
        "/api/v1/clients/m",
        admin,
        json={
            "name": "Renamed",
            "first_party": True,
            "metadata": {
                "redirect_uris": [CB, "http://127.0.0.1:8080/cb", "com.example.app:/cb"],
                "logo_uri": None,
                "access_token_lifetime": 120,
                "require_pkce": True,
                "require_pushed_authorization_requests": True,
                "require_signed_request_object": True,
                "request_object_signing_alg": "ES256",
            },
        },
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["name"] == "Renamed" and body["first_party"] is True
    meta = body["metadata"]
    assert "logo_uri" not in meta and meta["access_token_lifetime"] == 120
    assert meta["require_pushed_authorization_requests"] is True
    assert meta["require_signed_request_object"] is True
    assert meta["request_object_signing_alg"] == "ES256"
    assert meta["redirect_uris"][1] == "http://127.0.0.1:8080/cb"
    assert meta["client_name"] == "Renamed"
    assert meta["token_endpoint_auth_method"] == "client_secret_basic"  # untouched
    (event,) = audits(app.extensions["idp"], "client.updated")
    assert {"logo_uri", "redirect_uris", "access_token_lifetime"} <= set(event.details["changed"])


def test_patch_that_breaks_a_rule_of_the_stored_metadata_is_409(app, client, admin):
    create(client, admin, client_id="web")
    svc = app.extensions["idp"]
    before = row(svc, "web")
    resp = api(
        client, "PATCH", "/api/v1/clients/web", admin, json={"metadata": {"redirect_uris": None}}
    )
    assert resp.status_code == 409 and resp.mimetype == PROBLEM
    assert resp.get_json()["errors"][0]["field"] == "metadata.redirect_uris"
    assert row(svc, "web") == before
    assert not audits(svc, "client.updated")


def test_disable_and_enable(client, admin):
    secret = service_client(client, admin)
    assert token_status(client, "worker", secret) == 200
    off = api(client, "PATCH", "/api/v1/clients/worker", admin, json={"enabled": False})
    assert off.get_json()["enabled"] is False
    assert token_status(client, "worker", secret) == 401
    api(client, "PATCH", "/api/v1/clients/worker", admin, json={"enabled": True})
    assert token_status(client, "worker", secret) == 200


def test_service_roles_are_set_and_replaced(app, client, admin):
    made = create(
        client,
        admin,
        client_id="robot",
        service_roles=["Helpdesk"],
        metadata={"grant_types": ["client_credentials"]},
    )
    assert made["service_roles"] == ["Helpdesk"]
    resp = api(client, "PATCH", "/api/v1/clients/robot", admin, json={"service_roles": ["Auditor"]})
    assert resp.get_json()["service_roles"] == ["Auditor"]
    (event,) = audits(app.extensions["idp"], "client.updated")
    assert event.details["roles_added"] == ["Auditor"]
    assert event.details["roles_removed"] == ["Helpdesk"]


def test_unknown_service_role_is_404_and_nothing_stored(app, client, admin):
    resp = api(
        client,
        "POST",
        "/api/v1/clients",
        admin,
        json={
            "client_id": "ghost",
            "service_roles": ["No Such Role"],
            "metadata": {"grant_types": ["client_credentials"]},
        },
    )
    assert resp.status_code == 404 and "service_roles" in resp.get_json()["detail"]
    assert row(app.extensions["idp"], "ghost") is None


def test_nobody_gives_a_client_roles_they_do_not_hold(app, client, admin):
    token = limited_token(app, "Client Admin", ["clients:clients:*"])
    resp = api(
        client,
        "POST",
        "/api/v1/clients",
        token,
        json={
            "client_id": "escalate",
            "service_roles": ["Administrator"],
            "metadata": {"grant_types": ["client_credentials"]},
        },
    )
    assert resp.status_code == 403
    assert row(app.extensions["idp"], "escalate") is None
    create(client, token, client_id="plain", metadata={"grant_types": ["client_credentials"]})
    resp = api(
        client, "PATCH", "/api/v1/clients/plain", token, json={"service_roles": ["Administrator"]}
    )
    assert resp.status_code == 403
    with app.extensions["idp"].sessions() as db:
        assert not db.scalars(
            select(ClientServiceRole).where(ClientServiceRole.client_id == "plain")
        ).all()


# --- delete ---------------------------------------------------------------------------------------


def test_delete_removes_the_client_and_its_roles(app, client, admin):
    secret = service_client(client, admin, "gone")
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        Directory(db).create_role("gone-reader", [], client_id="gone")
    resp = api(client, "DELETE", "/api/v1/clients/gone", admin)
    assert resp.status_code == 204
    assert api(client, "GET", "/api/v1/clients/gone", admin).status_code == 404
    assert token_status(client, "gone", secret) == 401
    with svc.sessions() as db:
        assert db.scalar(select(Role).where(Role.client_id == "gone")) is None
    assert audits(svc, "client.deleted")[0].target == "gone"


# --- ETag / If-Match ------------------------------------------------------------------------------


def test_stale_if_match_is_412_and_changes_nothing(app, client, admin):
    create(client, admin, client_id="etag")
    svc = app.extensions["idp"]
    first = api(client, "GET", "/api/v1/clients/etag", admin).headers["ETag"]
    ok = api(
        client,
        "PATCH",
        "/api/v1/clients/etag",
        admin,
        json={"name": "one"},
        headers={"If-Match": first},
    )
    assert ok.status_code == 200 and ok.headers["ETag"] != first
    before = row(svc, "etag")
    stale = api(
        client,
        "PATCH",
        "/api/v1/clients/etag",
        admin,
        json={"name": "two"},
        headers={"If-Match": first},
    )
    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    gone = api(client, "DELETE", "/api/v1/clients/etag", admin, headers={"If-Match": first})
    assert gone.status_code == 412
    assert row(svc, "etag") == before
    current = ok.headers["ETag"]
    done = api(client, "DELETE", "/api/v1/clients/etag", admin, headers={"If-Match": current})
    assert done.status_code == 204


# --- secret rotation ------------------------------------------------------------------------------


def test_rotation_ends_the_old_secret_at_once(app, client, admin):
    old = service_client(client, admin)
    assert token_status(client, "worker", old) == 200
    resp = api(client, "POST", "/api/v1/clients/worker/secret", admin)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    new = resp.get_json()["client_secret"]
    assert new and new != old and resp.get_json()["previous_secret_valid_until"] is None
    assert token_status(client, "worker", old) == 401
    assert token_status(client, "worker", new) == 200
    read = api(client, "GET", "/api/v1/clients/worker", admin).get_data(as_text=True)
    assert new not in read


def test_rotation_with_a_grace_period_keeps_the_old_secret_until_it_ends(app, client, admin, clock):
    old = service_client(client, admin)
    resp = api(
        client,
        "POST",
        "/api/v1/clients/worker/secret",
        admin,
        query_string={"grace_seconds": 600},
    )
    new = resp.get_json()["client_secret"]
    assert resp.get_json()["previous_secret_valid_until"]
    clock.advance(590)
    assert token_status(client, "worker", old) == 200  # inside the grace period
    assert token_status(client, "worker", new) == 200
    clock.advance(20)
    assert token_status(client, "worker", old) == 401  # after it
    assert token_status(client, "worker", new) == 200


def test_a_second_rotation_without_grace_ends_the_grace_at_once(client, admin):
    first = service_client(client, admin)
    second = api(
        client, "POST", "/api/v1/clients/worker/secret", admin, query_string={"grace_seconds": 600}
    ).get_json()["client_secret"]
    third = api(client, "POST", "/api/v1/clients/worker/secret", admin).get_json()["client_secret"]
    assert token_status(client, "worker", first) == 401
    assert token_status(client, "worker", second) == 401
    assert token_status(client, "worker", third) == 200


def test_rotation_refusals(app, client, admin):
    create(
        client,
        admin,
        client_id="spa",
        metadata={"redirect_uris": [CB], "token_endpoint_auth_method": "none"},
    )
    assert api(client, "POST", "/api/v1/clients/spa/secret", admin).status_code == 409
    create(
        client,
        admin,
        client_id="hmac",
        metadata={"redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_jwt"},
    )
    svc = app.extensions["idp"]
    before = row(svc, "hmac")
    graced = api(
        client, "POST", "/api/v1/clients/hmac/secret", admin, query_string={"grace_seconds": 60}
    )
    assert graced.status_code == 400 and "grace_seconds" in graced.get_json()["detail"]
    assert row(svc, "hmac") == before
    too_long = api(
        client,
        "POST",
        "/api/v1/clients/hmac/secret",
        admin,
        query_string={"grace_seconds": 8 * 86400},
    )
    assert too_long.status_code == 400
    assert api(client, "POST", "/api/v1/clients/nope/secret", admin).status_code == 404


# --- permissions ----------------------------------------------------------------------------------


def test_without_permission_everything_is_403_and_nothing_changes(app, client, admin):
    secret = service_client(client, admin, "victim")
    svc = app.extensions["idp"]
    before = row(svc, "victim")
    helpdesk = service_token(app, roles=("Helpdesk",))
    calls = [
        ("GET", "/api/v1/clients", None),
        ("GET", "/api/v1/clients/victim", None),
        ("POST", "/api/v1/clients", {"client_id": "new", "metadata": {"redirect_uris": [CB]}}),
        ("PATCH", "/api/v1/clients/victim", {"name": "mine"}),
        ("DELETE", "/api/v1/clients/victim", None),
        ("POST", "/api/v1/clients/victim/secret", None),
    ]
    for method, path, body in calls:
        resp = api(client, method, path, helpdesk, json=body)
        assert resp.status_code == 403 and resp.mimetype == PROBLEM, (method, path)
    assert row(svc, "victim") == before
    assert row(svc, "new") is None
    assert token_status(client, "victim", secret) == 200


def test_read_only_role_reads_but_does_not_write(app, client, admin):
    create(client, admin, client_id="ro")
    reader = service_token(app, roles=("Read-only",))
    assert api(client, "GET", "/api/v1/clients/ro", reader).status_code == 200
    assert api(client, "PATCH", "/api/v1/clients/ro", reader, json={"name": "x"}).status_code == 403


@pytest.mark.parametrize("path", ["/api/v1/clients/no-such", "/api/v1/clients/%F0%9F%98%80"])
def test_unknown_client_is_404_problem(client, admin, path):
    for method in ("GET", "PATCH", "DELETE"):
        resp = api(client, method, path, admin, json={} if method == "PATCH" else None)
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, method


def test_deleting_a_client_ends_its_grace_period_for_a_namesake(client, admin):
    old = service_client(client, admin)
    api(client, "POST", "/api/v1/clients/worker/secret", admin, query_string={"grace_seconds": 600})
    assert api(client, "DELETE", "/api/v1/clients/worker", admin).status_code == 204
    fresh = service_client(client, admin)  # a new client under the same id
    assert token_status(client, "worker", fresh) == 200
    assert token_status(client, "worker", old) == 401


def test_setting_a_secret_ends_a_grace_period(app, client, admin):
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    old = service_client(client, admin)
    api(client, "POST", "/api/v1/clients/worker/secret", admin, query_string={"grace_seconds": 600})
    chosen = "c" * 40
    with transaction(app.extensions["idp"], Actor.operator("test")) as ctx:
        manage_clients.set_secret(ctx, "worker", chosen)
    assert token_status(client, "worker", chosen) == 200
    assert token_status(client, "worker", old) == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("require_pkce", 0.0),
        ("require_pkce", "true"),
        ("require_pushed_authorization_requests", "true"),
        ("require_signed_request_object", 1),
        ("request_object_signing_alg", "none"),
        ("refresh_token_rotation", 1),
        ("default_max_age", "60"),
        ("access_token_lifetime", True),
    ],
)
def test_metadata_types_are_json_types_not_coerced(app, client, admin, field, value):
    """JSON Schema's boolean and integer: 0.0, "true", 1 and "60" are not them (pydantic's lax
    mode would have taken them and stored what the client never said)."""
    with app.extensions["idp"].sessions() as db:
        before = len(db.scalars(select(Client)).all())
    body = {
        "client_id": "typed",
        "metadata": {"redirect_uris": ["https://rp.example.org/cb"], field: value},
    }
    resp = api(client, "POST", "/api/v1/clients", admin, json=body)
    assert resp.status_code == 400, resp.json
    assert any(field in e["field"] for e in resp.json["errors"]), resp.json
    with app.extensions["idp"].sessions() as db:
        assert len(db.scalars(select(Client)).all()) == before


def test_a_device_client_needs_no_redirect_uris(app, client, admin):
    """RFC 8628: the device grant is one the API gives, to a public client too."""
    device = "urn:ietf:params:oauth:grant-type:device_code"
    made = create(client, admin, client_id="tv",
                  metadata={"grant_types": [device], "token_endpoint_auth_method": "none"})
    assert made["metadata"]["grant_types"] == [device]
    assert row(app.extensions["idp"], "tv")["meta"]["grant_types"] == [device]


def test_fapi_profile_through_the_api(app, client, admin):
    """``fapi_profile`` (docs/oidc.md "FAPI 2.0 profile"): set on a private_key_jwt client;
    a client secret client, an RS256 ID token or an unknown profile is refused naming the member
    and nothing changes; ``null`` in a merge patch takes it off."""
    svc = app.extensions["idp"]
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k",
                      "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}
    made = create(client, admin, client_id="bank", metadata={
        "redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks,
        "fapi_profile": "fapi2-security"})
    assert made["metadata"]["fapi_profile"] == "fapi2-security" and made["client_secret"] is None
    create(client, admin, client_id="plain")
    before = (row(svc, "bank"), row(svc, "plain"))
    for path, metadata, field in (
        ("plain", {"fapi_profile": "fapi2-security"}, "token_endpoint_auth_method"),
        ("bank", {"id_token_signed_response_alg": "RS256"}, "id_token_signed_response_alg"),
        ("bank", {"fapi_profile": "fapi1"}, "fapi_profile"),
    ):
        resp = api(client, "PATCH", f"/api/v1/clients/{path}", admin,
                   json={"metadata": metadata})
        assert resp.status_code in (400, 409) and resp.mimetype == PROBLEM, resp.get_json()
        assert field in json.dumps(resp.get_json()), resp.get_json()
    assert (row(svc, "bank"), row(svc, "plain")) == before
    resp = api(client, "PATCH", "/api/v1/clients/bank", admin,
               json={"metadata": {"fapi_profile": None}})
    assert resp.status_code == 200 and "fapi_profile" not in resp.get_json()["metadata"]


def test_mtls_client_authentication_through_the_api(app, client, admin):
    """RFC 8705 §2: tls_client_auth with exactly one subject member; none, two, or one on
    another method is 400 naming the member, nothing stored."""
    made = create(client, admin, client_id="robot", metadata={
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": "robot.example.org"})
    assert made["client_secret"] is None
    assert made["metadata"]["tls_client_auth_san_dns"] == "robot.example.org"
    service = {"grant_types": ["client_credentials"]}
    for metadata, field in (
        ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
        ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=a",
          "tls_client_auth_san_uri": "https://a.example.org/"}, "token_endpoint_auth_method"),
        ({"tls_client_auth_subject_dn": "CN=a"}, "tls_client_auth_subject_dn"),
        ({"token_endpoint_auth_method": "self_signed_tls_client_auth"},
         "token_endpoint_auth_method"),
    ):
        resp = api(client, "POST", "/api/v1/clients", admin,
                   json={"client_id": "x", "metadata": {**service, **metadata}})
        assert resp.status_code == 400 and resp.mimetype == PROBLEM, resp.get_json()
        assert field in json.dumps(resp.get_json())
        assert row(app.extensions["idp"], "x") is None
