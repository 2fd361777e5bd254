"""WebAuthn sign-in over HTTP (W3C WebAuthn section 7.2) with a software authenticator: as the
second factor after the password (through /login and the MFA step) and as a passwordless first
factor with a discoverable credential, including an OIDC code flow whose ID token (checked with
PyJWT against /jwks) carries the amr. Hostile assertions (wrong origin, wrong RP ID, replayed
challenge, lower or equal counter, another user's credential, tampered signature, missing user
verification) are each refused, and leave counters, last use and sessions as they were."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from login_kit import GOOD, audit_actions, csrf, login, make_user, post_form
from sqlalchemy import func, select
from webauthn_kit import (
    ORIGIN,
    SoftAuthenticator,
    b64u,
    mfa_page,
    mfa_submit,
    passkey_options,
    passkey_verify,
    register,
)

from idp.clock import FrozenClock
from idp.sso.sessions import COOKIE, session_id_of
from idp.storage.models import AuditEvent
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_webauthn import WebAuthnCredential

RP = "https://rp.example.org/cb"


@pytest.fixture
def clock():
    return FrozenClock()


def _app(make_app, clock, **settings):
    app = make_app(clock=clock, **settings)
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    make_user(svc, "bob", given_name="Bob")
    return app, svc


def _enrol(app, username: str, auth: SoftAuthenticator) -> None:
    """Sign in with the password (no factor yet) and register ``auth`` on the account page."""
    client = app.test_client()
    assert login(client, username, GOOD).headers["Location"] == "/account/"
    assert register(client, auth, name=f"{username}'s key").status_code == 200


@pytest.fixture
def env(make_app, clock):
    app, svc = _app(make_app, clock)
    ann = SoftAuthenticator(attachment="platform", transports=["internal"])
    bob = SoftAuthenticator(alg=-8)
    _enrol(app, "ann", ann)
    _enrol(app, "bob", bob)
    return app, svc, ann, bob


def snapshot(svc) -> dict:
    """What a refused assertion must not change."""
    with svc.sessions() as db:
        rows = db.execute(
            select(
                WebAuthnCredential.id,
                WebAuthnCredential.sign_count,
                WebAuthnCredential.last_used_at,
            )
        ).all()
        return {
            "credentials": sorted(tuple(r) for r in rows),
            "sessions": db.scalar(select(func.count()).select_from(SsoSessionIndex)),
            "logins": db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "login.success")
            ),
        }


def session_amr(svc, client) -> list[str]:
    """The amr of the SSO session whose cookie ``client`` holds."""
    with svc.sessions() as db:
        return db.get(SsoSessionIndex, session_id_of(client.get_cookie(COOKIE).value)).amr.split()


def counter(svc, username: str) -> int:
    with svc.sessions() as db:
        from idp.storage.models import User

        uid = db.scalar(select(User.id).where(User.username == username))
        return db.scalar(
            select(WebAuthnCredential.sign_count).where(WebAuthnCredential.user_id == uid)
        )


# --- second factor ------------------------------------------------------------------------------


def test_password_then_security_key(env):
    app, svc, ann, bob = env
    client = app.test_client()
    assert login(client, "bob", GOOD).headers["Location"] == "/login/step"
    assert client.get_cookie(COOKIE) is None  # no SSO session before the second factor
    token, options = mfa_page(client)
    assert options["rpId"] == "127.0.0.1" and options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [
        b64u(bob.credentials[0].credential_id)
    ]
    resp = mfa_submit(client, token, bob.get(options, ORIGIN))
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert client.get_cookie(COOKIE) is not None
    assert session_amr(svc, client) == ["pwd", "hwk"]  # a roaming key without sync: hardware
    assert counter(svc, "bob") == 1


def test_platform_passkey_as_second_factor_is_swk(env):
    app, svc, ann, bob = env
    client = app.test_client()
    login(client, "ann", GOOD)
    token, options = mfa_page(client)
    assert mfa_submit(client, token, ann.get(options, ORIGIN)).headers["Location"] == "/account/"
    assert session_amr(svc, client) == ["pwd", "swk"]


def _refused_at_step(svc, client, before, resp) -> None:
    assert resp.status_code == 400, resp.status_code
    assert "Use security key" in resp.get_data(as_text=True)  # still at the step, asked again
    assert client.get_cookie(COOKIE) is None
    assert snapshot(svc) == before
    assert "login.step_failed.mfa" in audit_actions(svc)


@pytest.mark.parametrize(
    "hostile",
    ["wrong_origin", "wrong_rp_id", "tampered", "equal_counter", "lower_counter", "other_user"],
)
def test_hostile_second_factor_is_refused_and_changes_nothing(env, hostile):
    app, svc, ann, bob = env
    # Bob's counter is at 5 so that "lower" can go below it.
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    mfa_submit(client, token, bob.get(options, ORIGIN, counter=5))
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    before = snapshot(svc)
    assertion = {
        "wrong_origin": lambda: bob.get(options, "https://evil.example"),
        "wrong_rp_id": lambda: bob.get(options, ORIGIN, rp_id="evil.example"),
        "tampered": lambda: bob.get(options, ORIGIN, tamper=True),
        "equal_counter": lambda: bob.get(options, ORIGIN, counter=5),
        "lower_counter": lambda: bob.get(options, ORIGIN, counter=2),
        "other_user": lambda: ann.get(options, ORIGIN),  # Ann's key over Bob's challenge
    }[hostile]()
    resp = mfa_submit(client, token, assertion)
    _refused_at_step(svc, client, before, resp)
    if hostile.endswith("counter"):
        assert "webauthn.counter_regression" in audit_actions(svc)
        assert "use count lower than before" in resp.get_data(as_text=True)


def test_replayed_second_factor_is_refused(env):
    app, svc, ann, bob = env
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    assertion = bob.get(options, ORIGIN)
    assert mfa_submit(client, token, assertion).status_code == 302
    # The same assertion in a new login: its challenge was used (and is not this login's).
    other = app.test_client()
    login(other, "bob", GOOD)
    token2, _ = mfa_page(other)
    before = snapshot(svc)
    _refused_at_step(svc, other, before, mfa_submit(other, token2, assertion))


def test_challenge_of_another_login_is_refused(env):
    """A challenge made for Eve's browser cannot finish Bob's pending login elsewhere."""
    app, svc, ann, bob = env
    first, second = app.test_client(), app.test_client()
    login(first, "bob", GOOD)
    login(second, "bob", GOOD)
    _, options = mfa_page(first)
    token2, _ = mfa_page(second)
    before = snapshot(svc)
    _refused_at_step(svc, second, before, mfa_submit(second, token2, bob.get(options, ORIGIN)))


def test_user_verification_required_by_setting(make_app, clock):
    app, svc = _app(make_app, clock, webauthn={"user_verification": "required"})
    key = SoftAuthenticator()
    _enrol(app, "bob", key)
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    assert options["userVerification"] == "required"
    before = snapshot(svc)
    resp = mfa_submit(client, token, key.get(options, ORIGIN, uv=False))
    _refused_at_step(svc, client, before, resp)
    assert "did not verify you" in resp.get_data(as_text=True)
    token, options = mfa_page(client)
    assert mfa_submit(client, token, key.get(options, ORIGIN)).status_code == 302


def test_counter_regression_is_logged(env, caplog):
    app, svc, ann, bob = env
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    assert mfa_submit(client, token, bob.get(options, ORIGIN)).status_code == 302  # counter 1
    client = app.test_client()
    login(client, "bob", GOOD)
    token, options = mfa_page(client)
    with caplog.at_level(logging.WARNING, logger="idp.webauthn"):
        mfa_submit(client, token, bob.get(options, ORIGIN, counter=0))
    assert any("counter regression" in r.getMessage() for r in caplog.records)
    with svc.sessions() as db:
        event = db.scalar(
            select(AuditEvent).where(AuditEvent.action == "webauthn.counter_regression")
        )
        assert (event.details["stored"], event.details["received"]) == (1, 0)
        assert event.target == event.actor and event.target


# --- passwordless -------------------------------------------------------------------------------


def test_passkey_sign_in_without_password(env):
    app, svc, ann, bob = env
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    # The issuer here is an IP address, where browsers refuse WebAuthn: the page offers no passkey
    # button (test_signin_pages.py shows it on localhost); the endpoints below still answer.
    assert "passkey-login" not in page and 'name="password"' in page
    token, opts = passkey_options(client)
    options = opts.get_json()
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"
    resp = passkey_verify(client, token, ann.get(options, ORIGIN))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"ok": True, "redirect": "/account/"}
    assert client.get_cookie(COOKIE) is not None
    assert client.get("/account/").status_code == 200
    assert session_amr(svc, client) == ["swk", "mfa"]
    assert counter(svc, "ann") == 1


def test_passkey_sign_in_answers_an_oidc_request_with_amr_in_the_id_token(env):
    from idp.storage.clients import ClientRegistry

    app, svc, ann, bob = env
    with svc.sessions.begin() as db:
        _, secret = ClientRegistry(db, svc.hasher, svc.sealer).create(
            "web",
            name="Web",
            redirect_uris=[RP],
            grant_types=["authorization_code"],
            first_party=True,
        )
    client = app.test_client()
    resp = client.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": RP,
            "scope": "openid",
            "state": "s1",
            "nonce": "n1",
        },
    )
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    token, opts = passkey_options(client, r=rid)
    done = passkey_verify(client, token, bob.get(opts.get_json(), ORIGIN))
    assert done.status_code == 200, done.get_json()
    resp = client.get(done.get_json()["redirect"])
    for _ in range(3):
        if not resp.headers["Location"].startswith("/"):
            break
        resp = client.get(resp.headers["Location"])
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    tokens = client.post(
        "/oauth2/token",
        data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": RP},
        auth=("web", secret),
    )
    assert tokens.status_code == 200, tokens.get_json()
    id_token = tokens.get_json()["id_token"]
    header = pyjwt.get_unverified_header(id_token)
    jwk = next(k for k in client.get("/jwks").get_json()["keys"] if k["kid"] == header["kid"])
    claims = pyjwt.decode(
        id_token,
        pyjwt.PyJWK(jwk).key,
        algorithms=[header["alg"]],
        audience="web",
        issuer=ORIGIN,
    )
    assert claims["amr"] == ["hwk", "mfa"] and claims["acr"] == "urn:idp:acr:mfa"
    assert claims["nonce"] == "n1"


def test_acr_mfa_request_is_met_by_a_passkey_without_a_second_step(env):
    app, svc, ann, bob = env
    client = app.test_client()
    token, opts = passkey_options(client)
    done = passkey_verify(client, token, ann.get(opts.get_json(), ORIGIN))
    assert done.get_json()["redirect"] == "/account/"  # not /login/step


def _refused_passwordless(svc, client, before, resp, error: str) -> None:
    assert resp.status_code == 401, resp.get_json()
    assert resp.get_json()["error"] == error and resp.get_json()["message"]
    assert client.get_cookie(COOKIE) is None
    assert snapshot(svc) == before
    assert audit_actions(svc)[-1] in ("login.failure", "webauthn.counter_regression")


@pytest.mark.parametrize(
    "hostile, error",
    [
        ("wrong_origin", "invalid"),
        ("wrong_rp_id", "invalid"),
        ("tampered", "invalid"),
        ("no_user_verification", "user_verification"),
        ("equal_counter", "counter"),
        ("lower_counter", "counter"),
        ("wrong_user_handle", "wrong_user"),
        ("unknown_credential", "unknown_credential"),
        ("foreign_challenge", "expired"),
    ],
)
def test_hostile_passkey_sign_in_is_refused_and_changes_nothing(env, hostile, error):
    app, svc, ann, bob = env
    client = app.test_client()
    token, opts = passkey_options(client)
    passkey_verify(client, token, ann.get(opts.get_json(), ORIGIN, counter=7))
    client = app.test_client()
    token, opts = passkey_options(client)
    options = opts.get_json()
    before = snapshot(svc)
    if hostile == "wrong_user_handle":
        assertion = ann.get(options, ORIGIN)
        assertion["response"]["userHandle"] = bob.get(options, ORIGIN)["response"]["userHandle"]
        before = snapshot(svc)
    elif hostile == "unknown_credential":
        stranger = SoftAuthenticator()
        stranger.create(
            {
                "rp": {"id": "127.0.0.1"},
                "user": {"id": b64u(b"x" * 16)},
                "challenge": options["challenge"],
            },
            ORIGIN,
        )
        assertion = stranger.get(options, ORIGIN)
    else:
        assertion = {
            "wrong_origin": lambda: ann.get(options, "https://evil.example"),
            "wrong_rp_id": lambda: ann.get(options, ORIGIN, rp_id="evil.example"),
            "tampered": lambda: ann.get(options, ORIGIN, tamper=True),
            "no_user_verification": lambda: ann.get(options, ORIGIN, uv=False),
            "equal_counter": lambda: ann.get(options, ORIGIN, counter=7),
            "lower_counter": lambda: ann.get(options, ORIGIN, counter=3),
            "foreign_challenge": lambda: ann.get(options, ORIGIN, challenge=b64u(b"z" * 32)),
        }[hostile]()
    _refused_passwordless(svc, client, before, passkey_verify(client, token, assertion), error)


def test_replayed_passkey_assertion_is_refused(env):
    app, svc, ann, bob = env
    client = app.test_client()
    token, opts = passkey_options(client)
    assertion = ann.get(opts.get_json(), ORIGIN)
    assert passkey_verify(client, token, assertion).status_code == 200
    attacker = app.test_client()
    token2, _ = passkey_options(attacker)
    before = snapshot(svc)
    _refused_passwordless(
        svc, attacker, before, passkey_verify(attacker, token2, assertion), "expired"
    )


def test_challenge_from_another_browser_is_refused(env):
    app, svc, ann, bob = env
    victim, attacker = app.test_client(), app.test_client()
    _, opts = passkey_options(victim)
    token, _ = passkey_options(attacker)
    before = snapshot(svc)
    resp = passkey_verify(attacker, token, ann.get(opts.get_json(), ORIGIN))
    _refused_passwordless(svc, attacker, before, resp, "invalid")


def test_passkey_sign_in_respects_account_state_and_csrf(env):
    app, svc, ann, bob = env
    from idp.storage.models import User

    with svc.sessions.begin() as db:
        db.scalar(select(User).where(User.username == "ann")).status = "inactive"
    client = app.test_client()
    token, opts = passkey_options(client)
    before = snapshot(svc)
    resp = passkey_verify(client, token, ann.get(opts.get_json(), ORIGIN))
    assert resp.status_code == 403 and "disabled" in resp.get_json()["message"]
    assert snapshot(svc) == before and client.get_cookie(COOKIE) is None
    token, opts = passkey_options(client)
    resp = passkey_verify(client, "", ann.get(opts.get_json(), ORIGIN))
    assert resp.status_code == 400 and resp.get_json()["error"] == "csrf"
    assert snapshot(svc) == before


def test_passwordless_can_be_turned_off(make_app, clock):
    app, svc = _app(make_app, clock, webauthn={"passwordless": False})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "passkey-login" not in page and 'autocomplete="username"' in page
    resp = client.post("/webauthn/login/options", json={}, headers={"X-CSRFToken": csrf(page)})
    assert resp.status_code == 404
    # The password form is unchanged.
    assert post_form(client, "/login", {"username": "ann", "password": GOOD}).status_code == 302
