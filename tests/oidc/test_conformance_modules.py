"""Behaviour the OpenID conformance suite's Basic, Config and Dynamic OP plans check that the
other OIDC tests do not already cover (module names in each test's docstring; the full map is
docs/conformance.md)."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest
from oidc_support import RP, authorize, initial_access_token, login, query, serve_json, token

from idp.storage.models import Client


def _exchange(env, c, got, client_id="web"):
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=(client_id, env.secrets[client_id]))
    assert resp.status_code == 200, resp.json
    return resp.json


def _claims(jwt_value: str) -> dict:
    return pyjwt.decode(jwt_value, options={"verify_signature": False})


@pytest.mark.parametrize("extra", [
    {"display": "page"}, {"display": "popup"}, {"ui_locales": "de en"},
    {"claims_locales": "de"}, {"login_hint": "alice"}, {"extra": "foobar"},
    {"acr_values": "urn:idp:acr:1fa"},
])
def test_optional_parameters_are_accepted(env, extra):
    """oidcc-display-page/-popup, -ui-locales, -claims-locales, -login-hint,
    -ensure-request-with-unknown-parameter-succeeds, -ensure-request-with-acr-values-succeeds"""
    c = env.client()
    got = authorize(c, **extra)
    assert "code" in got and "error" not in got
    claims = _claims(_exchange(env, c, got)["id_token"])
    if "acr_values" in extra:
        assert claims["acr"] == "urn:idp:acr:1fa"


def test_alternate_scope_order_and_no_nonce(env):
    """oidcc-alternate-happy-flow, oidcc-ensure-request-without-nonce-succeeds-for-code-flow"""
    c = env.client()
    got = authorize(c, scope="email profile openid")
    claims = _claims(_exchange(env, c, got)["id_token"])
    assert "nonce" not in claims and claims["email"] == "alice@example.org"


def test_authorization_request_by_post(env):
    """oidcc-ensure-post-request-succeeds"""
    c = env.client()
    authorize(c)  # signed in, consent given
    resp = c.post("/oauth2/authorize", data={
        "response_type": "code", "client_id": "web", "redirect_uri": RP,
        "scope": "openid profile email", "state": "p1"})
    got = query(resp.headers["Location"])
    assert got["state"] == "p1" and "code" in got


@pytest.mark.parametrize("scope,expected,absent", [
    ("openid profile", {"name", "given_name", "family_name"}, {"email", "phone_number"}),
    ("openid email", {"email", "email_verified"}, {"given_name"}),
    ("openid phone", set(), {"email", "given_name"}),
    ("openid address", set(), {"email", "given_name"}),
])
def test_scope_claims_from_userinfo(env, scope, expected, absent):
    """oidcc-scope-profile / -email / -phone / -address / -all"""
    c = env.client()
    body = _exchange(env, c, authorize(c, scope=scope))
    info = c.get("/oauth2/userinfo",
                 headers={"Authorization": f"Bearer {body['access_token']}"}).json
    assert expected <= set(info) and not (absent & set(info))


def test_claims_parameter_essential_name(env):
    """oidcc-claims-essential: a claim asked for by the claims parameter is released even
    without its scope, in userinfo and in the ID token as requested."""
    c = env.client()
    request = json.dumps({"userinfo": {"name": {"essential": True}},
                          "id_token": {"email": None}})
    body = _exchange(env, c, authorize(c, scope="openid", claims=request))
    info = c.get("/oauth2/userinfo",
                 headers={"Authorization": f"Bearer {body['access_token']}"}).json
    assert info["name"]
    assert _claims(body["id_token"])["email"] == "alice@example.org"


def test_signed_userinfo_and_es256_id_token(env):
    """oidcc-userinfo-rs256 (signed userinfo on request), oidcc-idtoken-rs256 / alg per client"""
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web2")
        row.meta = dict(row.meta, userinfo_signed_response_alg="RS256",
                        id_token_signed_response_alg="PS256")
    from idp.oidc.clients import client_cache

    client_cache(env.svc).bump()
    c = env.client()
    got = authorize(c, client_id="web2", redirect_uri="https://other.example.org/cb")
    body = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": "https://other.example.org/cb"},
                 auth=("web2", env.secrets["web2"])).json
    assert pyjwt.get_unverified_header(body["id_token"])["alg"] == "PS256"
    resp = c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.mimetype == "application/jwt"
    jwks = c.get("/jwks").json
    header = pyjwt.get_unverified_header(resp.get_data(as_text=True))
    key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    signed = pyjwt.decode(resp.get_data(as_text=True), key, algorithms=["RS256"],
                          audience="web2", issuer="http://127.0.0.1:5000")
    assert signed["sub"] == _claims(body["id_token"])["sub"]


def test_offline_access_asks_for_consent_again(env):
    """oidcc-refresh-token: offline_access is consented explicitly (OIDC Core §11)."""
    c = env.client()
    authorize(c, scope="openid")
    resp = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web", "redirect_uri": RP,
        "scope": "openid offline_access", "state": "o"})
    assert resp.headers["Location"].startswith("/oauth2/consent")
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Keep access while you are away" in page


def test_prompt_none_without_consent_is_consent_required(env):
    c = env.client()
    login(c, "bob")
    resp = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web2",
        "redirect_uri": "https://other.example.org/cb", "scope": "openid", "prompt": "none"})
    assert query(resp.headers["Location"])["error"] == "consent_required"


def test_resource_indicator_sets_the_audience(env):
    """RFC 8707: resource narrows the access token's audience."""
    c = env.client()
    body = token(c, {"grant_type": "client_credentials", "scope": "api",
                     "resource": "https://api.example.org/"}, auth=("svc", env.secrets["svc"]))
    assert _claims(body.json["access_token"])["aud"] == "https://api.example.org/"
    bad = token(c, {"grant_type": "client_credentials", "scope": "api",
                    "resource": "not a uri"}, auth=("svc", env.secrets["svc"]))
    assert bad.status_code == 400 and bad.json["error"] == "invalid_target"


def test_registration_with_jwks_uri_then_private_key_jwt(env):
    """oidcc-registration-jwks-uri: the client's keys are fetched from its jwks_uri."""
    import time
    import uuid

    from joserfc import jwt as jose_jwt
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "dyn-1"})
    with serve_json({"keys": [key.as_dict(private=False)]}) as base:
        c = env.client()
        doc = c.post("/oauth2/register",
                     headers={"Authorization": f"Bearer {initial_access_token(env)}"}, json={
                         "grant_types": ["client_credentials"], "response_types": [],
                         "token_endpoint_auth_method": "private_key_jwt", "scope": "openid",
                         "jwks_uri": f"{base}/jwks"}).json
        now = int(time.time())
        assertion = jose_jwt.encode(
            {"alg": "ES256", "kid": "dyn-1"},
            {"iss": doc["client_id"], "sub": doc["client_id"], "aud": "http://127.0.0.1:5000",
             "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}, key, algorithms=["ES256"])
        resp = c.post("/oauth2/token", data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        assert resp.status_code == 200, resp.json


def test_open_registration_by_setting(make_app):
    """oidc.open_registration: no initial access token needed."""
    app = make_app(oidc={"open_registration": True})
    c = app.test_client()
    resp = c.post("/oauth2/register", json={"redirect_uris": ["https://open.example.org/cb"]})
    assert resp.status_code == 201 and resp.json["client_id"]


def test_key_rotation_new_key_signs_old_key_still_published(env):
    """oidcc-server-rotate-keys"""
    c = env.client()
    before = _exchange(env, c, authorize(c))["id_token"]
    old_kid = pyjwt.get_unverified_header(before)["kid"]
    env.svc.keys.rotate(ktys=("RSA",))
    after = _exchange(env, c, authorize(c))["id_token"]
    new_kid = pyjwt.get_unverified_header(after)["kid"]
    kids = {k["kid"] for k in c.get("/jwks").json["keys"]}
    assert new_kid != old_kid and {old_kid, new_kid} <= kids


def test_consent_page_shows_registered_logo_policy_and_terms(env):
    """oidcc-registration-logo-uri / -policy-uri / -tos-uri"""
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web2")
        row.meta = dict(row.meta, logo_uri="https://other.example.org/logo.png",
                        policy_uri="https://other.example.org/privacy",
                        tos_uri="https://other.example.org/terms")
    from idp.oidc.clients import client_cache

    client_cache(env.svc).bump()
    c = env.client()
    login(c, "bob")
    resp = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web2", "scope": "openid profile",
        "redirect_uri": "https://other.example.org/cb"})
    page = c.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    for uri in ("logo.png", "/privacy", "/terms"):
        assert f"https://other.example.org{'/' if uri == 'logo.png' else ''}{uri}" in html
    # The consent and authorization pages cannot be framed (RFC 9700 §4.16).
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("listed,status", [(True, 201), (False, 400)])
def test_sector_identifier_uri_must_list_the_redirect_uris(env, listed, status):
    """oidcc-registration-sector-uri / -sector-bad"""
    uris = ["https://sector.example.org/cb"]
    listed_uris = uris + ["https://sector.example.org/other"] if listed else [
        "https://sector.example.org/other"]
    with serve_json(listed_uris) as base:
        resp = env.client().post(
            "/oauth2/register", headers={"Authorization": f"Bearer {initial_access_token(env)}"},
            json={"redirect_uris": uris, "sector_identifier_uri": f"{base}/s.json"})
        assert resp.status_code == status, resp.json


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_id_token_algorithm_per_client_verifies_with_pyjwt(env, alg):
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "fapi")
        row.meta = dict(row.meta, id_token_signed_response_alg=alg)
    from idp.oidc.clients import client_cache

    client_cache(env.svc).bump()
    c = env.client()
    got = authorize(c, client_id="fapi")
    body = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=("fapi", env.secrets["fapi"])).json
    header = pyjwt.get_unverified_header(body["id_token"])
    assert header["alg"] == alg
    jwks = c.get("/jwks").json
    key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    claims = pyjwt.decode(body["id_token"], key, algorithms=[alg], audience="fapi",
                          issuer="http://127.0.0.1:5000")
    assert claims["azp"] == "fapi"

