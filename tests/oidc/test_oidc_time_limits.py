"""OAuth / OIDC time limits not held elsewhere, one second either side on the frozen clock: the
ID token's lifetime (``exp - iat`` is ``[oidc] id_token_lifetime``, judged by joserfc at the
boundary) and the offline refresh token's absolute lifetime (``refresh_absolute_days``), which
rotation never extends. Non-default values, so the setting is what is followed. A refusal
changes nothing (refresh-token rows)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import ExpiredTokenError
from joserfc.jwk import KeySet
from oidc_support import RP, Env, authorize, build_env, token
from sqlalchemy import select

from idp.clock import FrozenClock
from idp.storage.models_oauth import RefreshToken

ID_TOKEN = 420
ABSOLUTE, IDLE = 3 * 86400, 2 * 86400


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(float(int(time.time())))


@pytest.fixture(scope="module")
def env(tmp_path_factory, clock) -> Iterator[Env]:
    with build_env(
        tmp_path_factory,
        {"allow_http": True, "allow_private_addresses": True},
        clock=clock,
        oidc={"id_token_lifetime": ID_TOKEN, "refresh_absolute_days": 3, "refresh_idle_days": 2},
    ) as built:
        yield built


def _tokens(env: Env, scope: str) -> dict:
    browser = env.client()
    code = authorize(browser, scope=scope)["code"]
    resp = token(
        browser,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    )
    assert resp.status_code == 200, resp.json
    return resp.json


def _refresh(env: Env, refresh: str):
    return token(
        env.client(),
        {"grant_type": "refresh_token", "refresh_token": refresh},
        auth=("web", env.secrets["web"]),
    )


def _rows(env: Env) -> dict:
    with env.svc.sessions() as db:
        return {
            r.token_hash: (r.used_at, r.revoked, r.last_used_at, r.expires_at)
            for r in db.scalars(select(RefreshToken))
        }


# --- [oidc] id_token_lifetime -----------------------------------------------------------------


@pytest.mark.parametrize(("age", "valid"), [(ID_TOKEN - 1, True), (ID_TOKEN + 1, False)])
def test_an_id_token_lives_id_token_lifetime(env, clock, age, valid):
    id_token = _tokens(env, "openid")["id_token"]
    keys = KeySet.import_key_set(env.client().get("/jwks").json)
    decoded = jose_jwt.decode(id_token, keys)
    claims = decoded.claims
    assert claims["iat"] == int(clock.now()) and claims["exp"] - claims["iat"] == ID_TOKEN
    registry = jose_jwt.JWTClaimsRegistry(now=claims["iat"] + age, leeway=0)
    if valid:
        registry.validate(claims)
    else:
        with pytest.raises(ExpiredTokenError):
            registry.validate(claims)


# --- [oidc] refresh_absolute_days -------------------------------------------------------------


@pytest.mark.parametrize(("margin", "good"), [(-1, True), (1, False)])
def test_an_offline_refresh_token_lives_refresh_absolute_days_however_used(
    env, clock, margin, good
):
    first = _tokens(env, "openid offline_access")["refresh_token"]
    clock.advance(IDLE - 60)  # used within the idle limit: rotated, not extended
    rotated = _refresh(env, first)
    assert rotated.status_code == 200, rotated.json
    refresh = rotated.json["refresh_token"]
    clock.advance(ABSOLUTE - (IDLE - 60) + margin)  # from the first token's issue
    before = _rows(env)
    resp = _refresh(env, refresh)
    if good:
        assert resp.status_code == 200, resp.json
        return
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert _rows(env) == before  # not used up, not revoked
