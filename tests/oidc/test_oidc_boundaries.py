"""OAuth / OIDC limits at their boundaries, one second either side on the frozen clock: the
authorization code's lifetime, the access token's, an online refresh token against its SSO
session's idle expiry, an offline one against refresh_idle_days, the client assertion's
longest life; and user information in a loopback redirect URI, refused at registration and at
/authorize even where the port may vary (RFC 8252 §7.3, §8.3). Each refusal also asserts that
nothing changed (tokens, clients, the store)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from joserfc import jwt as jose_jwt
from oidc_support import RP, Env, authorize, build_env, initial_access_token, token
from sqlalchemy import func, select
from support import store_keys

from idp.clock import FrozenClock
from idp.storage.models import Client
from idp.storage.models_oauth import RefreshToken

LOCAL_RPS = {"allow_http": True, "allow_private_addresses": True}
IDLE = 30 * 60
CODE, ACCESS, ASSERTION_MAX = 60, 300, 600
TOKEN_URL = "http://127.0.0.1:5000/oauth2/token"


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    # Real time: authlib checks an assertion's exp against the system clock as well.
    return FrozenClock(float(int(time.time())))


@pytest.fixture(scope="module")
def env(tmp_path_factory, clock) -> Iterator[Env]:
    with build_env(tmp_path_factory, LOCAL_RPS, clock=clock,
                   session={"idle_minutes": 30, "max_hours": 10}) as built:
        yield built


def _state(env: Env) -> dict:
    """Refresh tokens (used or not, revoked or not), clients and live store keys."""
    svc = env.svc
    with svc.sessions() as db:
        tokens = {r.token_hash: (r.used_at, r.revoked, r.last_used_at)
                  for r in db.scalars(select(RefreshToken))}
        clients = db.scalar(select(func.count()).select_from(Client))
    keys = set(store_keys(svc, live=True))
    # A refused client authentication is counted by the rate limits (tests/test_rate_limits.py):
    # that counter is the one thing a refusal may write.
    keys = {k for k in keys if not k.startswith("rl:client_auth:")}
    return {"tokens": tokens, "clients": clients, "keys": keys}


def _code(env: Env, scope: str = "openid") -> tuple[object, str]:
    browser = env.client()
    got = authorize(browser, scope=scope)
    assert "code" in got, got
    return browser, got["code"]


def _redeem(env: Env, browser, code: str):
    return token(browser, {"grant_type": "authorization_code", "code": code, "redirect_uri": RP},
                 auth=("web", env.secrets["web"]))


# --- [oidc] code_lifetime --------------------------------------------------------------------


@pytest.mark.parametrize(("after", "good"), [(CODE - 1, True), (CODE + 1, False)])
def test_an_authorization_code_lives_code_lifetime(env, clock, after, good):
    browser, code = _code(env)
    clock.advance(after)
    if good:
        assert _redeem(env, browser, code).status_code == 200
        return
    before = _state(env)
    resp = _redeem(env, browser, code)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert _state(env)["tokens"] == before["tokens"]  # nothing issued


# --- [oidc] access_token_lifetime ------------------------------------------------------------


@pytest.mark.parametrize(("after", "good"), [(ACCESS - 1, True), (ACCESS + 1, False)])
def test_an_access_token_lives_access_token_lifetime(env, clock, after, good):
    browser, code = _code(env)
    access = _redeem(env, browser, code).json["access_token"]
    clock.advance(after)
    resp = env.client().get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert resp.status_code == (200 if good else 401)


# --- an online refresh token and its SSO session's idle expiry -------------------------------


@pytest.mark.parametrize(("after", "good"), [(IDLE - 1, True), (IDLE + 1, False)])
def test_an_online_refresh_token_ends_with_its_idle_session(env, clock, after, good):
    browser, code = _code(env)
    refresh = _redeem(env, browser, code).json["refresh_token"]
    clock.advance(after)  # the browser stays away: the SSO session's idle timer runs
    before = _state(env)
    resp = token(env.client(), {"grant_type": "refresh_token", "refresh_token": refresh},
                 auth=("web", env.secrets["web"]))
    if good:
        assert resp.status_code == 200 and resp.json["refresh_token"] != refresh
        return
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    after_state = _state(env)
    assert after_state["tokens"] == before["tokens"]  # not used up, not revoked, none new


# --- [oidc] refresh_idle_days (offline access) -----------------------------------------------


@pytest.mark.parametrize(("margin", "good"), [(-1, True), (0, False), (1, False)])
def test_an_offline_refresh_token_lives_refresh_idle_days_unused(env, clock, margin, good):
    browser, code = _code(env, "openid offline_access")
    refresh = _redeem(env, browser, code).json["refresh_token"]
    clock.advance(30 * 86400 + margin)
    before = _state(env)
    resp = token(env.client(), {"grant_type": "refresh_token", "refresh_token": refresh},
                 auth=("web", env.secrets["web"]))
    if good:
        assert resp.status_code == 200
        return
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert _state(env)["tokens"] == before["tokens"]


def test_an_unknown_or_another_clients_refresh_token_is_refused(env):
    browser, code = _code(env)
    refresh = _redeem(env, browser, code).json["refresh_token"]
    before = _state(env)
    for value, client in ((refresh + "x", "web"), ("x" * 201, "web"), (refresh, "web2")):
        resp = token(env.client(), {"grant_type": "refresh_token", "refresh_token": value},
                     auth=(client, env.secrets[client]))
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert _state(env) == before  # web's token still unused, nothing revoked
    again = token(env.client(), {"grant_type": "refresh_token", "refresh_token": refresh},
                  auth=("web", env.secrets["web"]))
    assert again.status_code == 200


# --- [oidc] client_assertion_max_age ---------------------------------------------------------


def _assertion(env: Env, lifetime: int) -> str:
    now = int(env.svc.clock.now())
    claims = {"iss": "jwtc", "sub": "jwtc", "aud": TOKEN_URL, "exp": now + lifetime,
              "jti": str(uuid.uuid4())}
    return jose_jwt.encode({"alg": "RS256", "kid": env.rp_key.kid}, claims, env.rp_key,
                           algorithms=["RS256"])


@pytest.mark.parametrize(("lifetime", "good"), [(ASSERTION_MAX, True), (ASSERTION_MAX + 1, False)])
def test_a_client_assertion_lives_at_most_client_assertion_max_age(env, lifetime, good):
    before = _state(env)
    resp = env.client().post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_assertion": _assertion(env, lifetime),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    if good:
        assert resp.status_code == 200, resp.json
        return
    assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
    # Refused before its jti was remembered: nothing in the store, no token.
    assert _state(env) == before


# --- user information in a loopback redirect URI ---------------------------------------------


@pytest.mark.parametrize("uri", ["http://user@127.0.0.1/cb", "http://user@127.0.0.1:9999/cb",
                                 "http://user:pw@127.0.0.1:5555/cb"])
def test_userinfo_in_a_loopback_redirect_uri_is_refused_at_authorize(env, uri):
    """web registered http://127.0.0.1:9999/cb, whose port may vary; a user@ part never
    matches, and the browser is not sent there."""
    before = _state(env)
    browser = env.client()
    resp = browser.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web", "redirect_uri": uri, "scope": "openid",
        "state": "s"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "an address it has not registered" in resp.get_data(as_text=True)
    assert _state(env) == before  # no pending request stored


def test_a_loopback_redirect_uri_without_userinfo_may_vary_its_port(env):
    """The control for the test above: the same URI without user@ passes."""
    got = authorize(env.client(), redirect_uri="http://127.0.0.1:5555/cb", scope="openid")
    assert "code" in got and got["_location"].startswith("http://127.0.0.1:5555/cb?")


def test_userinfo_in_a_loopback_redirect_uri_is_refused_at_registration(env):
    iat = initial_access_token(env)
    before = _state(env)
    resp = env.client().post("/oauth2/register", json={
        "redirect_uris": ["http://user@127.0.0.1/cb"], "client_name": "Native"},
        headers={"Authorization": f"Bearer {iat}"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_redirect_uri"
    assert _state(env)["clients"] == before["clients"]
