"""Redis unavailable (a private redis-server, stopped mid-way and started again).

The promise (docs/security.md, "Faults"): everything that needs the store is refused while it
is away, never let through unchecked — a sign-in cannot read or count its lockout counters, a
token request cannot look up its replay cache, so both are refused with a clear answer (a page
or RFC 6749 JSON, 503 temporarily_unavailable with Retry-After, no trace) and change nothing.
/readyz answers 503 naming the store; documents that need no store (discovery, JWKS, /healthz)
keep answering. When Redis is back the same processes serve again without a restart.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from fault_kit import row_counts
from joserfc import jwt as jose_jwt
from oidc_support import PASSWORD, build_env, login
from test_lockout import LOCKED
from test_serve import Redis

pytestmark = pytest.mark.slow

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory, redis):
    with build_env(
        tmp_path_factory,
        {},
        redis_url=f"redis://127.0.0.1:{redis.port}/0",
        database={"connect_timeout": 2},
        lockout={"max_failures": 3, "window_minutes": 10, "lock_minutes": 10},
    ) as env:
        yield env


@pytest.fixture
def outage(redis):
    redis.stop()
    try:
        yield
    finally:
        redis.start()


def _assertion(env) -> str:
    now = int(time.time())
    claims = {"iss": "jwtc", "sub": "jwtc", "aud": f"{env.svc.settings.issuer}/oauth2/token",
              "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return jose_jwt.encode({"alg": "RS256", "kid": env.rp_key.kid}, claims, env.rp_key,
                           algorithms=["RS256"])


def _client_credentials(client, assertion: str):
    return client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "scope": "api",
        "client_assertion_type": ASSERTION, "client_assertion": assertion})


def _refused_page(resp) -> None:
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert "temporarily unavailable" in body and "Reference:" in body
    assert "Traceback" not in body and "redis" not in body.lower()


def test_sign_in_is_refused_with_a_clear_page_and_nothing_written(env, outage):
    client = env.client()
    before = row_counts(env.svc)
    # The right password: the lockout counter cannot be read, so the sign-in is refused.
    resp = login(client, "alice", PASSWORD)
    _refused_page(resp)
    assert row_counts(env.svc) == before  # no SSO session, no audit row, no device
    assert not any(c.key.startswith("idp_") for c in client._cookies.values())


def test_token_request_is_refused_when_its_replay_cache_is_away(env, outage):
    client = env.client()
    before = row_counts(env.svc)
    resp = _client_credentials(client, _assertion(env))
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.json["error"] == "temporarily_unavailable" and resp.json["reference"]
    assert "access_token" not in resp.json
    assert row_counts(env.svc) == before  # no token, no audit row


def test_readiness_names_the_store_and_static_documents_still_answer(env, outage):
    client = env.client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["store"] != "ok"
    assert ready.json["checks"]["database"] == "ok"
    assert client.get("/healthz").status_code == 200
    assert client.get("/.well-known/openid-configuration").status_code == 200
    assert client.get("/jwks").status_code == 200


def test_after_the_outage_the_same_app_serves_and_the_replay_cache_counts_again(env, redis):
    redis.stop()
    redis.start()  # the same app object throughout: no restart of the IdP
    client = env.client()
    assert client.get("/readyz").status_code == 200
    resp = login(client, "alice", PASSWORD)
    assert resp.status_code in (302, 303), resp.status_code
    assertion = _assertion(env)
    assert _client_credentials(client, assertion).status_code == 200
    replay = _client_credentials(client, assertion)
    assert replay.status_code == 401 and replay.json["error"] == "invalid_client"


def test_lockout_counted_before_the_outage_still_holds_after_it(env, redis):
    """Failures counted in Redis hold across a connection outage (the server kept its data):
    the locked account stays locked when Redis answers again."""
    client = env.client()
    for n in range(3):
        assert login(client, "bob", f"wrong-{n}").status_code == 401
    proc = redis.proc
    os.killpg(proc.pid, signal.SIGSTOP)  # unreachable, data kept (a network partition)
    try:
        _refused_page(login(env.client(), "bob", PASSWORD))
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    before = row_counts(env.svc)
    locked = login(env.client(), "bob", PASSWORD)  # the right password, still locked
    assert locked.status_code == 429 and LOCKED in locked.get_data(as_text=True)
    assert row_counts(env.svc)["sso_session_index"] == before["sso_session_index"]
