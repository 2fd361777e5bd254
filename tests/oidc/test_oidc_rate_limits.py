"""Rate limits of the OAuth endpoints the hardening issue still missed, at their exact limits on
the frozen clock: tokens refused at /oauth2/userinfo per address ([rate_limits] userinfo) and
dynamic client registrations per address (client_registration). 429 JSON with Retry-After, and
nothing but the counters changed. Shared counts: tests/test_rate_limits_credentials.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oidc_support import RP, Env, authorize, build_env, token
from sqlalchemy import func, select

from idp.clock import FrozenClock
from idp.storage.models import AuditEvent, Client, KVEntry
from idp.storage.models_auth import SsoSessionIndex

T0 = 1_800_000_000.0
START = T0 + 100  # 100 s into every window


def _at(ip: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def _store(svc) -> dict[str, tuple]:
    with svc.sessions() as db:
        return {r.key: (r.value, r.counter) for r in db.scalars(select(KVEntry))}


def _rows(svc) -> dict[str, int]:
    with svc.sessions() as db:
        return {
            m.__name__: db.scalar(select(func.count()).select_from(m))
            for m in (AuditEvent, Client, SsoSessionIndex)
        }


def _only_counters_changed(svc, before_store, before_rows, rule: str | None) -> None:
    after = _store(svc)
    changed = {k for k in before_store.keys() | after.keys() if before_store.get(k) != after.get(k)}
    allowed = f"rl:{rule}:" if rule else "\0"
    assert {k for k in changed if not k.startswith(allowed)} == set()
    assert _rows(svc) == before_rows


def _refused(resp, retry_after: int) -> None:
    assert resp.status_code == 429, resp.get_data(as_text=True)[:300]
    assert resp.headers["Retry-After"] == str(retry_after)


# --- /oauth2/userinfo: refused tokens per address ---------------------------------------------


@pytest.fixture(scope="module")
def oidc(tmp_path_factory) -> Iterator[Env]:
    clock = FrozenClock(START)
    with build_env(
        tmp_path_factory,
        {"allow_http": True, "allow_private_addresses": True},
        clock=clock,
        oidc={"open_registration": True},
        rate_limits={"userinfo_per_address": 3, "client_registration_per_address": 2},
    ) as env:
        env.clock = clock
        yield env


def _access_token(env) -> str:
    browser = env.client()
    code = authorize(browser, scope="openid email")["code"]
    resp = token(
        browser,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    )
    assert resp.status_code == 200, resp.json
    return resp.json["access_token"]


def _userinfo(env, ip: str, bearer: str | None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return env.client().get("/oauth2/userinfo", headers=headers, **_at(ip))


def test_userinfo_refused_tokens_per_address(oidc):
    ip = "203.0.113.21"
    good = _access_token(oidc)
    # No token and a good token do not count; three forged ones do (each the usual 401).
    for _ in range(5):
        assert _userinfo(oidc, ip, None).status_code == 401
    assert _userinfo(oidc, ip, good).status_code == 200
    for n in range(3):
        resp = _userinfo(oidc, ip, f"forged-{n}")
        assert resp.status_code == 401 and resp.json["error"] == "invalid_token"
    store, rows = _store(oidc.svc), _rows(oidc.svc)
    resp = _userinfo(oidc, ip, good)  # even the good token, now
    _refused(resp, 200)
    assert resp.json["error"] == "too_many_requests" and "sub" not in resp.json
    assert resp.headers["Cache-Control"] == "no-store"
    _only_counters_changed(oidc.svc, store, rows, None)
    assert _userinfo(oidc, "203.0.113.22", good).status_code == 200  # another address
    oidc.clock.advance(199)
    _refused(_userinfo(oidc, ip, good), 1)
    oidc.clock.advance(1)
    assert _userinfo(oidc, ip, good).status_code == 200


# --- /oauth2/register: registrations per address ----------------------------------------------


def _register(env, ip: str):
    return env.client().post(
        "/oauth2/register",
        json={"client_name": "Spray", "redirect_uris": ["https://rp.example.org/cb"]},
        **_at(ip),
    )


def test_dynamic_registration_per_address(oidc):
    ip = "203.0.113.31"
    for _ in range(2):
        assert _register(oidc, ip).status_code == 201
    store, rows = _store(oidc.svc), _rows(oidc.svc)
    resp = _register(oidc, ip)
    _refused(resp, 3600 - int(oidc.svc.clock.now() % 3600))  # the rest of the hour window
    assert resp.json["error"] == "too_many_requests" and "client_id" not in resp.json
    _only_counters_changed(oidc.svc, store, rows, "client_registration")  # no client made
    assert _register(oidc, "203.0.113.32").status_code == 201


def test_closed_registration_counts_refused_initial_tokens(tmp_path_factory):
    """Registration with initial access tokens (the default): a valid one is a one-time token
    the operator issued and never counts; refused ones do, and then even a valid one waits."""
    from oidc_support import initial_access_token

    local = {"allow_http": True, "allow_private_addresses": True}
    with build_env(
        tmp_path_factory,
        local,
        clock=FrozenClock(START),
        rate_limits={"client_registration_per_address": 2},
    ) as env:
        ip, body = "203.0.113.41", {"redirect_uris": ["https://rp.example.org/cb"]}

        def register(bearer: str, at: str = ip):
            return env.client().post(
                "/oauth2/register",
                json=body,
                headers={"Authorization": f"Bearer {bearer}"},
                **_at(at),
            )

        for _ in range(3):
            assert register(initial_access_token(env)).status_code == 201
        for _ in range(2):
            assert register("forged").status_code == 401
        valid = initial_access_token(env)
        store, rows = _store(env.svc), _rows(env.svc)
        _refused(register(valid), 3500)
        _only_counters_changed(env.svc, store, rows, None)  # the token not spent
        assert register(valid, "203.0.113.42").status_code == 201
