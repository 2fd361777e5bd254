"""RFC 8628 device authorization grant over HTTP: the app served on loopback (one server for
the module, on a frozen clock), the device side played by requests and authlib's OAuth2Session
(``fetch_token`` with the device_code grant), the person's side through the hosted /device
pages with the Flask test client, the ID token checked by PyJWT against the published JWKS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from login_kit import GOOD, csrf, login, make_user
from mfa_kit import code_at, enrol_totp, submit_code
from sqlalchemy import func, select
from support import base_overrides, boundary_step, init_database, store_items
from test_accessibility import problems
from werkzeug.serving import make_server

from idp.core.client_metadata import DEVICE_CODE_GRANT
from idp.oidc.device import USER_CODE_ALPHABET, normalize_user_code
from idp.sso.sessions import COOKIE, session_id_of, session_manager
from idp.storage.models import AuditEvent
from idp.storage.models_oauth import RefreshToken

SCOPE = "openid profile email offline_access"


@dataclass
class Env:
    app: Any
    svc: Any
    clock: Any
    issuer: str
    secret: str  # the confidential client "tv"
    web_secret: str  # "web", a client without the device grant
    totp: Any  # erin's authenticator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    from idp.app import create_app
    from idp.clock import FrozenClock
    from idp.storage.clients import ClientRegistry

    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    instance = tmp_path_factory.mktemp("device") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, issuer=issuer, mfa={"policies": ["client:mfa-tv"]})
    init_database(overrides)
    clock = FrozenClock(time.time())
    app = create_app(overrides, clock=clock)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    make_user(svc, "alice", given_name="Alice", email_verified=True)
    make_user(svc, "bob")
    erin = make_user(svc, "erin")
    grants = [DEVICE_CODE_GRANT, "refresh_token"]
    with svc.sessions.begin() as db:
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        _, secret = reg.create("tv", name="Living Room TV", grant_types=grants, scope=SCOPE)
        reg.create("cli", name="Command Line", grant_types=[DEVICE_CODE_GRANT],
                   auth_method="none", scope="openid profile")
        reg.create("mfa-tv", name="Payroll Kiosk", grant_types=[DEVICE_CODE_GRANT],
                   auth_method="none", scope="openid")
        reg.create("lan-tv", name="Office Screen", grant_types=[DEVICE_CODE_GRANT],
                   auth_method="none", scope="openid")
        _, web_secret = reg.create("web", name="Web App", redirect_uris=["https://rp.example/cb"],
                                   grant_types=["authorization_code"], scope="openid")
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Env(app, svc, clock, issuer, secret, web_secret, enrol_totp(svc, erin))
    finally:
        server.shutdown()
        svc.engine.dispose()


@pytest.fixture(autouse=True)
def _now(env):
    """Each test starts at the real time (ID tokens are checked against it)."""
    env.clock._t = time.time()


# --- the device's side ----------------------------------------------------------------------------

def start(env, client_id: str = "tv", secret: str | None = "", **data) -> requests.Response:
    """POST /oauth2/device_authorization as ``client_id`` (Basic with its secret; a public
    client with ``secret=None``)."""
    if secret == "":
        secret = env.secret
    auth = (client_id, secret) if secret else None
    if secret is None:
        data["client_id"] = client_id
    return requests.post(f"{env.issuer}/oauth2/device_authorization", data=data, auth=auth,
                         timeout=10)


def started(env, client_id: str = "tv", secret: str | None = "", scope: str = SCOPE) -> dict:
    resp = start(env, client_id, secret, scope=scope)
    assert resp.status_code == 200, resp.text
    return resp.json()


def device(env, client_id: str = "tv", secret: str | None = "") -> OAuth2Session:
    if secret == "":
        secret = env.secret
    if secret is None:
        return OAuth2Session(client_id, token_endpoint_auth_method="none")
    return OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic")


def poll(env, device_code: str, session: OAuth2Session | None = None) -> dict:
    session = session or device(env)
    return session.fetch_token(f"{env.issuer}/oauth2/token", grant_type=DEVICE_CODE_GRANT,
                               device_code=device_code)


def poll_error(env, device_code: str, session: OAuth2Session | None = None) -> str:
    with pytest.raises(OAuthError) as caught:
        poll(env, device_code, session)
    return caught.value.error


# --- the person's side ----------------------------------------------------------------------------

def enter(browser, code: str, ip: str = "127.0.0.1"):
    kw = {"environ_base": {"REMOTE_ADDR": ip}}
    page = browser.get("/device", **kw)
    assert page.status_code == 200
    return browser.post("/device", data={"csrf_token": csrf(page.get_data(as_text=True)),
                                         "user_code": code}, **kw)


def rid_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["r"][0]


def answer(browser, location: str, button: str = "approve"):
    page = browser.get(location)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    return browser.post(location, data={"csrf_token": csrf(page.get_data(as_text=True)),
                                        button: "x"})


def approve_as(env, code: str, username: str = "alice", button: str = "approve"):
    """A new browser: the code, the sign-in the page asks for, the confirmation."""
    browser = env.app.test_client()
    resp = enter(browser, code)
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/login?r=")
    resp = login(browser, username, GOOD, r=rid_of(resp.headers["Location"]))
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/device/confirm?r=")
    done = answer(browser, resp.headers["Location"], button)
    assert done.status_code == 200, done.get_data(as_text=True)[:300]
    return browser, done


# --- what must not change -------------------------------------------------------------------------

def state(env) -> dict:
    with env.svc.sessions() as db:
        return {
            "audit": db.scalar(select(func.count()).select_from(AuditEvent)),
            "refresh": db.scalar(select(func.count()).select_from(RefreshToken)),
            "device": store_items(env.svc, "device:", "devuser:"),
        }


def actions(env, action: str) -> list[AuditEvent]:
    with env.svc.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action)
                          .order_by(AuditEvent.id)).all()
        db.expunge_all()
        return list(rows)


def id_token_claims(env, token: dict, audience: str) -> dict:
    jwks = requests.get(f"{env.issuer}/jwks", timeout=10).json()
    header = pyjwt.get_unverified_header(token["id_token"])
    key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    return pyjwt.decode(token["id_token"], key, algorithms=[header["alg"]], audience=audience,
                        issuer=env.issuer, leeway=120,
                        options={"require": ["exp", "iat", "sub", "auth_time"]})


# --- discovery and the device authorization endpoint ---------------------------------------------

def test_discovery_advertises_the_endpoint_and_the_grant(env):
    meta = requests.get(f"{env.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert meta["device_authorization_endpoint"] == f"{env.issuer}/oauth2/device_authorization"
    assert DEVICE_CODE_GRANT in meta["grant_types_supported"]
    oauth = requests.get(f"{env.issuer}/.well-known/oauth-authorization-server", timeout=10)
    assert oauth.json()["device_authorization_endpoint"] == meta["device_authorization_endpoint"]


def test_the_answer_has_the_codes_and_the_verification_addresses(env):
    resp = start(env, scope="openid profile")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert len(body["device_code"]) >= 43
    code = body["user_code"]
    assert len(code) == 9 and code[4] == "-"
    assert all(ch in USER_CODE_ALPHABET for ch in code.replace("-", ""))
    assert body["verification_uri"] == f"{env.issuer}/device"
    assert body["verification_uri_complete"] == f"{env.issuer}/device?user_code={code}"
    assert body["expires_in"] == 600 and body["interval"] == 5
    # Every request gets its own codes.
    again = started(env)
    assert again["user_code"] != code and again["device_code"] != body["device_code"]


def test_a_public_client_starts_with_its_client_id(env):
    assert "user_code" in started(env, "cli", None, scope="openid")


@pytest.mark.parametrize(
    ("client_id", "secret", "data", "status", "error"),
    [
        ("web", "web", {"scope": "openid"}, 400, "unauthorized_client"),  # no device grant
        ("tv", "wrong-secret", {"scope": "openid"}, 401, "invalid_client"),
        ("nobody", None, {"scope": "openid"}, 401, "invalid_client"),
        ("tv", "", {"scope": "admin"}, 400, "invalid_scope"),
        ("tv", "", {"resource": "https://elsewhere.example/"}, 400, "invalid_target"),
    ],
)
def test_device_authorization_refusals_issue_nothing(env, client_id, secret, data, status,
                                                     error):
    if secret == "web":
        secret = env.web_secret
    before = state(env)
    resp = start(env, client_id, secret, **data)
    assert (resp.status_code, resp.json()["error"]) == (status, error)
    assert "device_code" not in resp.json()
    assert state(env) == before


def test_parameters_in_the_url_are_refused(env):
    before = state(env)
    resp = requests.post(f"{env.issuer}/oauth2/device_authorization?scope=openid",
                         auth=("tv", env.secret), data={"resource": "x"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    assert state(env) == before


# --- the whole flow -------------------------------------------------------------------------------

def test_approved_device_gets_tokens_like_a_code_flow(env):
    got = started(env)
    session = device(env)
    assert poll_error(env, got["device_code"], session) == "authorization_pending"
    # The person types the code in lower case with spaces; the page asks for the sign-in,
    # then shows the client, the scopes in words, the code and the phishing warning.
    browser = env.app.test_client()
    resp = enter(browser, " " + got["user_code"].lower().replace("-", " "))
    assert resp.status_code == 303
    resp = login(browser, "alice", GOOD, r=rid_of(resp.headers["Location"]))
    confirm = resp.headers["Location"]
    assert confirm.startswith("/device/confirm?r=")
    html = browser.get(confirm).get_data(as_text=True)
    assert "Living Room TV" in html and got["user_code"] in html
    assert "Only continue if you started this on your device." in html
    assert "Your e-mail address" in html  # the consent page's words for the email scope
    assert problems(html, "en") == []
    env.clock.advance(5)
    assert poll_error(env, got["device_code"], session) == "authorization_pending"
    done = browser.post(confirm, data={"csrf_token": csrf(html), "approve": "Approve"})
    assert done.status_code == 200 and "Device connected" in done.get_data(as_text=True)
    assert actions(env, "device.approved")[-1].details["client_id"] == "tv"
    issued_before = len(actions(env, "token.issued"))

    env.clock.advance(5)
    token = poll(env, got["device_code"], session)
    assert token["token_type"] == "Bearer" and token["refresh_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())
    claims = id_token_claims(env, token, "tv")
    with env.svc.sessions() as db:
        row = db.scalar(select(RefreshToken).where(RefreshToken.client_id == "tv")
                        .order_by(RefreshToken.created_at.desc()))
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:idp:acr:1fa"
    assert claims["auth_time"] <= env.clock.now() and claims["sid"]
    assert claims["email"] == "alice@example.org"
    # The refresh token is an offline one of the approving session; the session lists the
    # device's client for logout.
    assert row.offline is True and row.sid == claims["sid"]
    served = session_manager(env.svc).relying_parties(
        session_id_of(browser.get_cookie(COOKIE).value)
    )
    assert served["oidc:tv"]["sid"] == claims["sid"]
    rows = actions(env, "token.issued")
    assert len(rows) == issued_before + 1
    assert rows[-1].details["grant_type"] == DEVICE_CODE_GRANT
    assert rows[-1].details["client_id"] == "tv"
    userinfo = requests.get(f"{env.issuer}/oauth2/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    assert userinfo.json()["sub"] == claims["sub"]
    refreshed = device(env).refresh_token(f"{env.issuer}/oauth2/token",
                                         refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]

    # Redeemed exactly once: the same code again is refused, and nothing more is issued.
    before = state(env)
    env.clock.advance(10)
    assert poll_error(env, got["device_code"], session) == "invalid_grant"
    assert state(env) == before


def test_two_parallel_polls_of_an_approved_code_issue_once(env):
    got = started(env, "cli", None, scope="openid")
    approve_as(env, got["user_code"])
    before = len(actions(env, "token.issued"))
    barrier = threading.Barrier(2)
    results: list[str] = []

    def one() -> None:
        barrier.wait()
        try:
            poll(env, got["device_code"], device(env, "cli", None))
            results.append("token")
        except OAuthError as exc:
            results.append(exc.error)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["invalid_grant", "token"]
    assert len(actions(env, "token.issued")) == before + 1


def test_a_public_client_without_refresh_grant_gets_no_refresh_token(env):
    got = started(env, "cli", None, scope="openid profile")
    approve_as(env, got["user_code"], "bob")
    token = poll(env, got["device_code"], device(env, "cli", None))
    assert "refresh_token" not in token
    assert id_token_claims(env, token, "cli")["amr"] == ["pwd"]


def test_denied_request_answers_access_denied_and_issues_nothing(env):
    got = started(env)
    _, done = approve_as(env, got["user_code"], button="deny")
    assert "Device not connected" in done.get_data(as_text=True)
    row = actions(env, "device.denied")[-1]
    assert row.details["client_id"] == "tv"
    before = state(env)
    assert poll_error(env, got["device_code"]) == "access_denied"
    assert state(env) == before


def test_a_signed_in_browser_goes_straight_to_the_confirmation(env):
    browser = env.app.test_client()
    assert login(browser, "bob", GOOD).status_code == 302
    got = started(env)
    resp = enter(browser, got["user_code"])
    assert resp.headers["Location"].startswith("/device/confirm?r=")
    # The client's MFA policy: bob's single-factor session does not answer for mfa-tv; the
    # browser goes through the sign-in, whose steps ask for the second factor.
    kiosk = started(env, "mfa-tv", None, scope="openid")
    resp = enter(browser, kiosk["user_code"])
    assert resp.headers["Location"].startswith("/login?r=")


def test_the_mfa_policy_of_the_client_shows_in_the_id_token(env):
    got = started(env, "mfa-tv", None, scope="openid")
    browser = env.app.test_client()
    resp = enter(browser, got["user_code"])
    rid = rid_of(resp.headers["Location"])
    assert login(browser, "erin", GOOD, r=rid).headers["Location"] == "/login/step"
    resp = submit_code(browser, code_at(env.totp, env.clock))
    assert resp.headers["Location"].startswith("/device/confirm?r=")
    assert answer(browser, resp.headers["Location"]).status_code == 200
    token = poll(env, got["device_code"], device(env, "mfa-tv", None))
    claims = id_token_claims(env, token, "mfa-tv")
    assert claims["acr"] == "urn:idp:acr:mfa" and "otp" in claims["amr"]


# --- polling --------------------------------------------------------------------------------------

def test_polling_too_fast_slows_down_and_the_new_interval_works(env):
    got = started(env)
    session = device(env)
    assert poll_error(env, got["device_code"], session) == "authorization_pending"
    assert poll_error(env, got["device_code"], session) == "slow_down"
    # The interval is now 10 s, counted from the refused poll.
    env.clock.advance(9)
    before = state(env)
    assert poll_error(env, got["device_code"], session) == "slow_down"  # now 15 s
    env.clock.advance(15)
    assert poll_error(env, got["device_code"], session) == "authorization_pending"
    env.clock.advance(14)
    assert poll_error(env, got["device_code"], session) == "slow_down"  # now 20 s
    env.clock.advance(20)
    assert poll_error(env, got["device_code"], session) == "authorization_pending"
    assert state(env) == before
    # The person approves; a device keeping to the interval gets its tokens.
    approve_as(env, got["user_code"])
    env.clock.advance(20)
    assert "access_token" in poll(env, got["device_code"], session)


def test_expiry_one_second_either_side(env):
    got = started(env)
    env.clock.advance(599)
    assert poll_error(env, got["device_code"]) == "authorization_pending"
    env.clock.advance(2)
    before = state(env)
    assert poll_error(env, got["device_code"]) == "expired_token"
    # The code is gone from the page too.
    resp = enter(env.app.test_client(), got["user_code"], ip="198.51.100.1")
    assert resp.status_code == 400 and "not valid" in resp.get_data(as_text=True)
    assert state(env) == before


def test_a_code_approved_in_time_expires_unredeemed(env):
    got = started(env)
    env.clock.advance(590)
    approve_as(env, got["user_code"])
    env.clock.advance(11)
    before = state(env)
    assert poll_error(env, got["device_code"]) == "expired_token"
    assert state(env) == before


def test_unknown_and_other_clients_device_codes_are_invalid_grant(env):
    got = started(env)
    approve_as(env, got["user_code"])
    before = state(env)
    assert poll_error(env, "not-a-device-code") == "invalid_grant"
    # The public client "cli" presents tv's approved code: refused, and tv still gets it.
    assert poll_error(env, got["device_code"], device(env, "cli", None)) == "invalid_grant"
    assert state(env) == before
    assert "access_token" in poll(env, got["device_code"])


def test_a_client_without_the_grant_cannot_poll(env):
    got = started(env)
    before = state(env)
    web = OAuth2Session("web", env.web_secret, token_endpoint_auth_method="client_secret_basic")
    assert poll_error(env, got["device_code"], web) == "unauthorized_client"
    assert state(env) == before


def test_a_poll_without_device_code_is_invalid_request(env):
    before = state(env)
    resp = requests.post(f"{env.issuer}/oauth2/token", auth=("tv", env.secret), timeout=10,
                         data={"grant_type": DEVICE_CODE_GRANT})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    assert state(env) == before


# --- the /device page -----------------------------------------------------------------------------

def test_the_page_prefills_the_code_from_the_link(env):
    got = started(env)
    html = env.app.test_client().get(
        f"/device?user_code={got['user_code']}").get_data(as_text=True)
    assert 'name="user_code"' in html and f'value="{got["user_code"]}"' in html
    assert problems(html, "en") == []


@pytest.mark.parametrize("lang", ["en", "de"])
def test_device_pages_are_accessible(env, lang):
    from flask import render_template

    from idp.web.oidc.device import DeviceForm, UserCodeForm

    with env.app.test_request_context("/", headers={"Accept-Language": lang}):
        pages = {
            "entry": render_template("device.html", form=UserCodeForm(formdata=None),
                                     error="x"),
            "confirm": render_template("device_confirm.html", form=DeviceForm(),
                                       client=SimpleNamespace(name="TV"), user_code="BCDF-GHJK",
                                       logo="https://tv.example/logo.png",
                                       scopes=[("openid", "Sign you in")]),
            "done": render_template("device_done.html",
                                    done=SimpleNamespace(approved=True, client_name="TV")),
        }
    for name, html in pages.items():
        assert problems(html, lang) == [], name


def test_the_clients_network_rules_apply_to_the_approving_browser(env):
    """As at /authorize: a client allowed only from the loopback network is not approved from
    a browser elsewhere (the device itself polls from loopback)."""
    from idp.manage import Actor, iprules, transaction

    with transaction(env.svc, Actor.operator("test")) as ctx:
        iprules.set_rules(ctx, "client", "lan-tv", ["127.0.0.0/8"], [])
    got = started(env, "lan-tv", None, scope="openid")
    browser = env.app.test_client()
    browser.environ_base["REMOTE_ADDR"] = "203.0.113.50"
    resp = enter(browser, got["user_code"], ip="203.0.113.50")
    resp = login(browser, "alice", GOOD, r=rid_of(resp.headers["Location"]))
    before = state(env)
    page = browser.get(resp.headers["Location"])
    assert page.status_code == 403 and "not allowed" in page.get_data(as_text=True)
    assert state(env)["device"] == before["device"]
    assert actions(env, "ip.denied")[-1].details["scope"] == "client"
    assert poll_error(env, got["device_code"], device(env, "lan-tv", None)) == \
        "authorization_pending"


def test_a_used_code_is_refused_on_the_page(env):
    got = started(env)
    approve_as(env, got["user_code"])
    before = state(env)
    resp = enter(env.app.test_client(), got["user_code"], ip="198.51.100.2")
    assert resp.status_code == 400 and "not valid" in resp.get_data(as_text=True)
    assert state(env) == before


def test_a_confirmation_is_answered_once(env):
    got = started(env)
    browser = env.app.test_client()
    resp = enter(browser, got["user_code"])
    resp = login(browser, "alice", GOOD, r=rid_of(resp.headers["Location"]))
    confirm = resp.headers["Location"]
    html = browser.get(confirm).get_data(as_text=True)
    assert browser.post(confirm, data={"csrf_token": csrf(html), "deny": "x"}).status_code == 200
    before = state(env)
    again = browser.post(confirm, data={"csrf_token": csrf(html), "approve": "x"})
    assert again.status_code == 400 and "expired or was already answered" in again.get_data(
        as_text=True)
    assert state(env) == before
    assert poll_error(env, got["device_code"]) == "access_denied"


def test_the_confirmation_needs_the_csrf_token_and_the_session(env):
    got = started(env)
    browser = env.app.test_client()
    resp = enter(browser, got["user_code"])
    resp = login(browser, "alice", GOOD, r=rid_of(resp.headers["Location"]))
    confirm = resp.headers["Location"]
    before = state(env)
    forged = browser.post(confirm, data={"approve": "x"})
    assert forged.status_code == 400
    stranger = env.app.test_client().get(confirm)
    assert stranger.status_code == 401
    assert state(env) == before
    assert poll_error(env, got["device_code"]) == "authorization_pending"


def test_guessing_user_codes_is_limited_per_address(env):
    got = started(env)
    ip = "203.0.113.9"
    browser = env.app.test_client()
    for _ in range(5):
        resp = enter(env.app.test_client(), "BCDF-GHJK", ip=ip)  # a new browser each time
        assert resp.status_code == 400
    before = state(env)
    resp = enter(browser, got["user_code"], ip=ip)  # even the right code, now
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) == 900
    assert "Too many wrong codes" in resp.get_data(as_text=True)
    assert state(env) == before
    # Refused for the lockout period, one second either side (on Redis, whose TTLs also run
    # on real time while the test works, 30 s: support.boundary_step); other addresses are not.
    step = boundary_step(env.svc)
    env.clock.advance(900 - step)
    fresh = started(env)  # the first code has expired by now
    assert enter(browser, fresh["user_code"], ip=ip).status_code == 429
    assert enter(env.app.test_client(), fresh["user_code"],
                 ip="203.0.113.10").status_code == 303
    env.clock.advance(2 * step)
    assert enter(browser, fresh["user_code"], ip=ip).status_code == 303


def test_guessing_user_codes_is_limited_per_browser(env):
    browser = env.app.test_client()
    for n in range(5):  # a new address each time, the same browser session
        assert enter(browser, "ZZZZ-ZZZZ", ip=f"192.0.2.{n + 1}").status_code == 400
    got = started(env)
    resp = enter(browser, got["user_code"], ip="192.0.2.100")
    assert resp.status_code == 429 and resp.headers["Retry-After"]


def test_user_codes_are_normalized():
    assert normalize_user_code("bcdf-ghjk") == "BCDFGHJK"
    assert normalize_user_code(" BCDF GHJK ") == "BCDFGHJK"
    assert normalize_user_code("BCDF-GHJA") is None  # a vowel is never in a code
    assert normalize_user_code("BCDF-GHJ") is None
    assert normalize_user_code("B" * 40) is None
    assert normalize_user_code("") is None


# --- client registration paths --------------------------------------------------------------------

def test_dynamic_registration_gives_the_device_grant(env):
    """RFC 7591 over HTTP: a public device client needs no redirect URI, and can start at once."""
    from oidc_support import initial_access_token

    iat = initial_access_token(env)
    meta = {"client_name": "Set-top box", "grant_types": [DEVICE_CODE_GRANT],
            "token_endpoint_auth_method": "none", "scope": "openid"}
    created = requests.post(f"{env.issuer}/oauth2/register", json=meta, timeout=10,
                            headers={"Authorization": f"Bearer {iat}"})
    assert created.status_code == 201, created.text
    assert created.json()["grant_types"] == [DEVICE_CODE_GRANT]
    assert "user_code" in started(env, created.json()["client_id"], None, scope="openid")
    unknown = dict(meta, grant_types=["urn:ietf:params:oauth:grant-type:unknown"])
    refused = requests.post(f"{env.issuer}/oauth2/register", json=unknown, timeout=10,
                            headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client_metadata"


@pytest.mark.parametrize("bad", [{"code_lifetime": 30}, {"interval": 0},
                                 {"max_user_code_attempts": 0}, {"user_code_lockout": 0}])
def test_device_settings_out_of_range_stop_the_start(tmp_path, bad):
    from idp.errors import ConfigError
    from idp.settings import load_settings

    with pytest.raises(ConfigError, match=f"device.{next(iter(bad))}"):
        load_settings(base_overrides(tmp_path, device=bad))


def test_a_dpop_proof_at_the_poll_binds_the_access_token(env):
    """RFC 9449 at the device grant: the poll that redeems the code carries a proof, and the
    access token comes back as a DPoP token bound to that key (cnf.jkt), which userinfo then
    refuses as a plain Bearer token."""
    from dpop_client import DPoPKey, claims_of

    got = started(env, "cli", None, scope="openid profile")
    approve_as(env, got["user_code"], "bob")
    key = DPoPKey()
    url = f"{env.issuer}/oauth2/token"
    resp = requests.post(url, timeout=10, headers={"DPoP": key.proof("POST", url)}, data={
        "grant_type": DEVICE_CODE_GRANT, "device_code": got["device_code"], "client_id": "cli"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "DPoP"
    assert claims_of(resp.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    as_bearer = requests.get(f"{env.issuer}/oauth2/userinfo", timeout=10,
                             headers={"Authorization": f"Bearer {resp.json()['access_token']}"})
    assert as_bearer.status_code == 401
