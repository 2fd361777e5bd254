"""The upstream ID token, refused whenever OIDC Core §3.1.3.7 says so: unsigned, signed by a key
not in the upstream's JWKS or with the client secret (HMAC), another audience, another issuer,
expired (one second either side of the allowed skew, on a frozen clock), another nonce; and the
callback's own ``iss`` (RFC 9207). The upstream here is a small real HTTP server whose token
endpoint answers with the token each test makes. Every refusal links and creates nothing."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from broker_kit import audits, csrf, query, state_of
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from support import base_overrides, init_database

T0 = 1_900_000_000
SKEW = 45  # not the default (60): the tests follow the setting
FLIGHT = 480  # nor is this (600)
GOOD = RSAKey.generate_key(2048, parameters={"kid": "k1"})
EVIL = RSAKey.generate_key(2048, parameters={"kid": "k1"})
SECRET = "the-client-secret-of-the-broker"


class FakeUpstream:
    """Discovery, JWKS and a token endpoint answering ``id_token``."""

    def __init__(self) -> None:
        self.id_token = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, doc):
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    self._json(
                        {
                            "issuer": owner.url,
                            "jwks_uri": owner.url + "/jwks",
                            "authorization_endpoint": owner.url + "/authorize",
                            "token_endpoint": owner.url + "/token",
                        }
                    )
                else:
                    self._json({"keys": [GOOD.as_dict(private=False)]})

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._json(
                    {"access_token": "at", "token_type": "Bearer", "id_token": owner.id_token}
                )

            def log_message(self, *args):
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.app import create_app
    from idp.clock import FrozenClock
    from idp.manage import Actor, transaction, upstreams

    fake = FakeUpstream()
    instance = tmp_path_factory.mktemp("broker-jwt") / "instance"
    instance.mkdir()
    overrides = base_overrides(
        instance,
        issuer="http://127.0.0.1:5998",
        broker={
            "allow_http": True,
            "allow_private_addresses": True,
            "clock_skew_seconds": SKEW,
            "flight_seconds": FLIGHT,
        },
    )
    init_database(overrides)
    clock = FrozenClock(T0)
    app = create_app(overrides, clock=clock)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    with transaction(svc, Actor.operator("test")) as ctx:
        upstreams.create(
            ctx,
            "fake",
            "oidc",
            {
                "display_name": "Fake",
                "create_users": True,
                "config": {"issuer": fake.url, "client_id": "broker"},
            },
            SECRET,
        )
    yield app, svc, fake
    fake.server.shutdown()
    svc.engine.dispose()


def _start(app) -> tuple[object, str, str]:
    """A browser that pressed "Sign in with Fake": (client, state, nonce)."""
    client = app.test_client()
    page = client.get("/login")
    resp = client.post(
        "/broker/start", data={"csrf_token": csrf(page.get_data(as_text=True)), "upstream": "fake"}
    )
    assert resp.status_code == 303
    sent = query(resp.headers["Location"])
    return client, sent["state"], sent["nonce"]


def _claims(fake, sent_nonce: str, **changes) -> dict:
    claims = {
        "iss": fake.url,
        "aud": "broker",
        "sub": "person-1",
        "exp": T0 + 300,
        "iat": T0,
        "nonce": sent_nonce,
        "email": "p1@fake.example",
        "email_verified": True,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict, key=GOOD, alg: str = "RS256") -> str:
    header = {"alg": alg, "kid": "k1"} if alg != "HS256" else {"alg": alg}
    return jwt.encode(header, claims, key, algorithms=[alg])


def _unsigned(claims: dict) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'alg': 'none'})}.{part(claims)}."


CASES = {
    "unsigned": (lambda f, n: _unsigned(_claims(f, n)), "bad_id_token_signature"),
    "another_key": (lambda f, n: _signed(_claims(f, n), EVIL), "bad_id_token_signature"),
    "hmac_with_the_secret": (
        lambda f, n: _signed(_claims(f, n), OctKey.import_key(SECRET), "HS256"),
        "bad_id_token_signature",
    ),
    "wrong_audience": (lambda f, n: _signed(_claims(f, n, aud="someone-else")), "wrong_audience"),
    "several_audiences_no_azp": (
        lambda f, n: _signed(_claims(f, n, aud=["broker", "x"])),
        "wrong_audience",
    ),
    "another_azp": (lambda f, n: _signed(_claims(f, n, azp="x")), "wrong_audience"),
    "wrong_issuer": (
        lambda f, n: _signed(_claims(f, n, iss="https://evil.example")),
        "wrong_issuer",
    ),
    "expired_a_second_past_the_skew": (
        lambda f, n: _signed(_claims(f, n, exp=T0 - SKEW)),
        "expired",
    ),
    "issued_in_the_future": (
        lambda f, n: _signed(_claims(f, n, iat=T0 + SKEW + 1)),
        "issued_in_future",
    ),
    "wrong_nonce": (lambda f, n: _signed(_claims(f, n, nonce="another")), "wrong_nonce"),
    "no_nonce": (lambda f, n: _signed(_claims(f, n, nonce=None)), "wrong_nonce"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_id_token_is_refused_and_nothing_created(env, case):
    app, svc, fake = env
    make, reason = CASES[case]
    client, state, nonce = _start(app)
    fake.id_token = make(fake, nonce)
    before = state_of(svc)
    resp = client.get(f"/broker/fake/callback?code=c1&state={state}")
    assert resp.status_code == 403
    assert "not possible" in resp.get_data(as_text=True)
    assert audits(svc, "broker.refused")[-1]["reason"] == reason
    assert state_of(svc) == before


def test_the_callbacks_iss_must_be_the_upstream(env):
    app, svc, fake = env
    client, state, nonce = _start(app)
    fake.id_token = _signed(_claims(fake, nonce))
    before = state_of(svc)
    resp = client.get(f"/broker/fake/callback?code=c1&state={state}&iss=https://evil.example")
    assert resp.status_code == 403
    assert audits(svc, "broker.refused")[-1]["reason"] == "wrong_issuer"
    assert state_of(svc) == before


def test_a_good_token_a_second_inside_the_skew_signs_in(env):
    app, svc, fake = env
    client, state, nonce = _start(app)
    fake.id_token = _signed(_claims(fake, nonce, exp=T0 - SKEW + 1, iat=T0 + SKEW))
    before = state_of(svc)
    resp = client.get(f"/broker/fake/callback?code=c1&state={state}")
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
    assert state_of(svc)["users"] == before["users"] + 1
    assert audits(svc, "broker.login")[-1]["provider"] == "fake"


@pytest.mark.parametrize(
    ("claim", "late", "signed_in"),
    [
        ("exp", SKEW - 1, True),
        ("exp", SKEW + 1, False),
        ("iat", -(SKEW - 1), True),
        ("iat", -(SKEW + 1), False),
    ],
)
def test_the_id_token_times_are_allowed_clock_skew_seconds_either_way(env, claim, late, signed_in):
    """``[broker] clock_skew_seconds`` on the frozen clock: the callback comes ``late`` seconds
    after the token's ``exp`` (negative: before its ``iat``, the upstream's clock being ahead)."""
    app, svc, fake = env
    client, state, nonce = _start(app)
    stamp = T0 + 100
    times = (
        {"iat": stamp - 200, "exp": stamp} if claim == "exp" else {"iat": stamp, "exp": stamp + 300}
    )
    fake.id_token = _signed(_claims(fake, nonce, **times))
    svc.clock.advance(stamp + late - T0)
    try:
        before = state_of(svc)
        resp = client.get(f"/broker/fake/callback?code=c1&state={state}")
        if signed_in:
            assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
            assert audits(svc, "broker.login")[-1]["provider"] == "fake"
            return
        assert resp.status_code == 403
        reason = "expired" if claim == "exp" else "issued_in_future"
        assert audits(svc, "broker.refused")[-1]["reason"] == reason
        assert state_of(svc) == before
    finally:
        svc.clock.advance(-(stamp + late - T0))


@pytest.mark.parametrize(("wait", "signed_in"), [(FLIGHT - 1, True), (FLIGHT + 1, False)])
def test_a_started_sign_in_waits_flight_seconds_for_the_callback(env, wait, signed_in):
    app, svc, fake = env
    client, state, nonce = _start(app)
    svc.clock.advance(wait)
    try:
        fake.id_token = _signed(
            _claims(fake, nonce, iat=svc.clock.now(), exp=svc.clock.now() + 300)
        )
        before = state_of(svc)
        resp = client.get(f"/broker/fake/callback?code=c1&state={state}")
        if signed_in:
            assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
        else:
            assert resp.status_code == 400
            assert audits(svc, "broker.refused")[-1]["reason"] == "unknown_state"
            assert state_of(svc) == before
    finally:
        svc.clock.advance(-wait)
