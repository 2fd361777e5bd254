"""RFC 6749 §4.1 / OIDC Core §3.1: the code flow end to end, ID token claims checked with an
independent JWT library (PyJWT) against the published JWKS; RFC 9207 iss; form_post."""

from __future__ import annotations

import threading

import jwt as pyjwt
import pytest
from oidc_support import PASSWORD, RP, authorize, login, token
from support import clock_swapped
from werkzeug.datastructures import MultiDict

from idp.storage.models_oauth import RefreshToken


def _verify_id_token(client, id_token: str, audience: str, nonce: str | None = None) -> dict:
    jwks = client.get("/jwks").json
    header = pyjwt.get_unverified_header(id_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = pyjwt.decode(id_token, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                          audience=audience, issuer="http://127.0.0.1:5000")
    if nonce is not None:
        assert claims["nonce"] == nonce
    return claims


def test_code_flow_issues_verifiable_tokens_with_iss_and_state(env):
    c = env.client()
    got = authorize(c, nonce="n-123")
    assert got["iss"] == "http://127.0.0.1:5000"  # RFC 9207
    assert got["state"].startswith("st-") and "code" in got
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=("web", env.secrets["web"]))
    assert resp.status_code == 200, resp.json
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    claims = _verify_id_token(c, body["id_token"], "web", nonce="n-123")
    assert claims["sub"] and claims["auth_time"] and claims["sid"]
    assert claims["amr"] == ["pwd"] and claims["azp"] == "web"
    assert claims["email"] == "alice@example.org" and claims["given_name"] == "Alice"
    assert "at_hash" in claims
    at_header = pyjwt.get_unverified_header(body["access_token"])
    assert at_header["typ"] == "at+jwt"  # RFC 9068
    info = c.get("/oauth2/userinfo",
                 headers={"Authorization": f"Bearer {body['access_token']}"}).json
    assert info["sub"] == claims["sub"] and info["email"] == "alice@example.org"


def test_roles_and_groups_reach_id_token_and_userinfo(env):
    c = env.client()
    got = authorize(c, scope="openid groups roles")
    body = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    claims = _verify_id_token(c, body["id_token"], "web")
    info = c.get("/oauth2/userinfo",
                 headers={"Authorization": f"Bearer {body['access_token']}"}).json
    for doc in (claims, info):
        assert "editor" in doc["roles"]
        assert any("engineering" in g for g in doc["groups"])
    assert "email" not in info  # not asked for


def test_form_post_response_mode(env):
    c = env.client()
    login(c)
    resp = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web", "redirect_uri": RP, "scope": "openid",
        "state": "s1", "response_mode": "form_post"})
    if resp.status_code == 303:  # consent on first use
        authorize(c, scope="openid")
        resp = c.get("/oauth2/authorize", query_string={
            "response_type": "code", "client_id": "web", "redirect_uri": RP,
            "scope": "openid", "state": "s1", "response_mode": "form_post"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and f'action="{RP}"' in html
    assert 'name="code"' in html and 'name="state" value="s1"' in html
    assert 'name="iss" value="http://127.0.0.1:5000"' in html


def test_code_is_single_use_and_replay_revokes_what_it_issued(env):
    c = env.client()
    got = authorize(c)
    first = token(c, {"grant_type": "authorization_code", "code": got["code"],
                      "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    again = token(c, {"grant_type": "authorization_code", "code": got["code"],
                      "redirect_uri": RP}, auth=("web", env.secrets["web"]))
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"
    # The first use's tokens are dead: access token rejected, refresh token family revoked.
    info = c.get("/oauth2/userinfo",
                 headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 401
    refreshed = token(c, {"grant_type": "refresh_token",
                          "refresh_token": first["refresh_token"]},
                      auth=("web", env.secrets["web"]))
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"


def test_parallel_redemption_has_exactly_one_winner(env):
    c = env.client()
    got = authorize(c)
    results = []

    def redeem():
        results.append(token(env.client(), {"grant_type": "authorization_code",
                                             "code": got["code"], "redirect_uri": RP},
                             auth=("web", env.secrets["web"])).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [400] * 5


def test_code_bound_to_client_and_redirect_uri(env):
    c = env.client()
    got = authorize(c)
    wrong_uri = token(c, {"grant_type": "authorization_code", "code": got["code"],
                          "redirect_uri": "http://127.0.0.1:9999/cb"},
                      auth=("web", env.secrets["web"]))
    assert wrong_uri.json["error"] == "invalid_grant"
    got = authorize(c)
    other_client = token(c, {"grant_type": "authorization_code", "code": got["code"],
                             "redirect_uri": RP}, auth=("web2", env.secrets["web2"]))
    assert other_client.json["error"] == "invalid_grant"


def test_expired_code_is_refused(env):
    from idp.clock import FrozenClock

    c = env.client()
    got = authorize(c)
    with clock_swapped(env.svc, FrozenClock(env.svc.clock.now() + 61)):  # code_lifetime 60 s
        resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                         "redirect_uri": RP}, auth=("web", env.secrets["web"]))
    assert resp.json["error"] == "invalid_grant"


@pytest.mark.parametrize("bad", [
    {"grant_type": "authorization_code", "code": "x" * 500, "redirect_uri": RP},
    {"grant_type": "authorization_code", "redirect_uri": RP},
    {"grant_type": "password", "username": "alice", "password": PASSWORD},
    # RFC 8628 is supported, but not for "web" (no device grant registered).
    {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
])
def test_bad_token_requests_get_rfc6749_errors(env, bad):
    c = env.client()
    before = env.svc.sessions().query(RefreshToken).count()
    resp = token(c, bad, auth=("web", env.secrets["web"]))
    assert resp.status_code == 400
    assert resp.json["error"] in ("invalid_grant", "invalid_request", "unsupported_grant_type",
                                  "unauthorized_client")
    assert env.svc.sessions().query(RefreshToken).count() == before


def test_duplicated_and_oversized_token_parameters_refused(env):
    c = env.client()
    dup = c.post("/oauth2/token", data=MultiDict([("grant_type", "client_credentials"),
                                                  ("grant_type", "client_credentials")]),
                 headers={"Authorization": "Basic c3ZjOng="})
    assert dup.status_code == 400 and dup.json["error"] == "invalid_request"
    big = c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                        "scope": "a" * 70000})
    assert big.status_code == 413 and big.json["error"] == "invalid_request"


def test_bad_client_authentication_is_401_with_www_authenticate(env):
    c = env.client()
    resp = token(c, {"grant_type": "client_credentials"}, auth=("svc", "wrong"))
    assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
    assert resp.headers.get("WWW-Authenticate", "").startswith("Basic")
