"""Rate limits the hardening issue still missed, each at its exact limit on the frozen clock: the
locked-out sign-in (429 with the rest of the lock as Retry-After, the human page kept), wrong
second-factor codes per account and per address ([rate_limits] mfa_code), refused tokens at
/oauth2/userinfo and dynamic client registration (their exact limits:
tests/oidc/test_oidc_rate_limits.py), mails that confirm an address (email_link); and the counts
shared by two apps on one store (SQL, Redis), device user-code guesses included. Every refusal
asserts that nothing but the counters changed. The earlier rules are tests/test_rate_limits.py's."""

from __future__ import annotations

import secrets

import pytest
from login_kit import GOOD, csrf, login, make_user, outbox, post_form
from mfa_kit import enrol_totp, password_then_step, signed_in, step_page, submit_code
from sqlalchemy import func, select

from idp.clock import FrozenClock
from idp.storage.models import AuditEvent, Client, KVEntry
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_mfa import MfaTotp

T0 = 1_800_000_000.0  # a multiple of every window below
START = T0 + 100  # 100 s into every window
A1, A2, A3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"
LOCKED = "Too many failed sign-in attempts"


@pytest.fixture
def clock():
    return FrozenClock(START)


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


# --- the locked-out sign-in ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ann", "nobody"])
def test_a_locked_out_sign_in_is_429_with_the_rest_of_the_lock(make_app, clock, name):
    """Known and unknown names alike (an unknown name locks like a real one): the login page
    still says why, and Retry-After is the lock's rest to the second."""
    app = make_app(clock=clock, lockout={"max_failures": 3, "lock_minutes": 10})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    for _ in range(3):
        assert login(app.test_client(), name, "wrong").status_code == 401
    clock.advance(123)
    client = app.test_client()
    client.get("/login")  # the form's token first: the refusal itself must change nothing
    store, rows = _store(svc), _rows(svc)
    resp = login(client, name, GOOD)
    _refused(resp, 600 - 123)
    assert LOCKED in resp.get_data(as_text=True) and 'name="password"' in resp.get_data(
        as_text=True
    )
    assert not signed_in(client)
    rows["AuditEvent"] += 1  # the one row a refused sign-in writes: login.locked
    _only_counters_changed(svc, store, rows, None)
    clock.advance(600 - 123)
    assert login(app.test_client(), "ann", GOOD).status_code == 302


def test_passkey_assertions_per_address_get_retry_after(make_app, clock):
    """A passkey names its account only once verified: failed assertions count per address
    ([lockout] ip_max_failures), then 429 with Retry-After on both passkey endpoints."""
    from webauthn_kit import passkey_options, passkey_verify

    app = make_app(
        clock=clock, lockout={"ip_max_failures": 2, "ip_delay_after": 0, "window_minutes": 15}
    )
    svc = app.extensions["idp"]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = A1
    token, opts = passkey_options(client)
    assert opts.status_code == 200
    for _ in range(2):
        resp = passkey_verify(client, token, {"id": "forged", "type": "public-key"})
        assert resp.status_code == 401
    store, rows = _store(svc), _rows(svc)
    for resp in (passkey_verify(client, token, {"id": "forged"}), passkey_options(client)[1]):
        _refused(resp, 900)
        assert resp.get_json()["error"] == "throttled"
    _only_counters_changed(svc, store, rows, None)
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = A2
    assert passkey_options(other)[1].status_code == 200


# --- wrong second-factor codes ([rate_limits] mfa_code) ------------------------------------------

NO_LOCKOUT = {"max_failures": 0}  # the rule must hold by itself, with the account lockout off


def _at_code_step(app, name: str, ip: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    password_then_step(client, name)
    return client


def _totp_step(svc, uid: int):
    with svc.sessions() as db:
        return db.get(MfaTotp, uid).last_step


def test_wrong_codes_per_account_across_addresses(make_app, clock):
    app = make_app(
        clock=clock,
        lockout=NO_LOCKOUT,
        rate_limits={"mfa_code_per_account": 3, "mfa_code_per_address": 100},
    )
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    totp = enrol_totp(svc, uid)
    wrong = "000000" if totp.now() != "000000" else "111111"
    # Three wrong codes from three addresses: each the usual 400 (the limit-th too).
    for ip in (A1, A2, A3):
        assert submit_code(_at_code_step(app, "ann", ip), wrong).status_code == 400
    # The next one, even the right code from a fresh address, is refused before it is read.
    client = _at_code_step(app, "ann", "198.51.100.14")
    page = step_page(client)
    store, rows, step = _store(svc), _rows(svc), _totp_step(svc, uid)
    resp = submit_code(client, totp.at(clock.now()), page=page)
    _refused(resp, 800)
    assert "Too many requests" in resp.get_data(as_text=True)
    assert not signed_in(client) and _totp_step(svc, uid) == step
    _only_counters_changed(svc, store, rows, None)  # the waiting sign-in still waits
    # Another account is not touched; the window's end frees ann.
    other = make_user(svc, "bob")
    bob = enrol_totp(svc, other)
    assert submit_code(_at_code_step(app, "bob", A1), bob.at(clock.now())).status_code == 302
    clock.advance(799)
    _refused(submit_code(_at_code_step(app, "ann", A1), totp.at(clock.now())), 1)
    clock.advance(1)
    assert submit_code(_at_code_step(app, "ann", A1), totp.at(clock.now())).status_code == 302


def test_wrong_codes_per_address_across_accounts(make_app, clock):
    app = make_app(
        clock=clock,
        lockout=NO_LOCKOUT,
        rate_limits={"mfa_code_per_account": 100, "mfa_code_per_address": 2},
    )
    svc = app.extensions["idp"]
    seeds = {}
    for name in ("ann", "bob", "cy"):
        seeds[name] = enrol_totp(svc, make_user(svc, name))
    for name in ("ann", "bob"):
        assert submit_code(_at_code_step(app, name, A1), "999999").status_code in (400,)
    cy = _at_code_step(app, "cy", A1)
    page = step_page(cy)
    store, rows = _store(svc), _rows(svc)
    _refused(submit_code(cy, seeds["cy"].at(clock.now()), page=page), 800)
    _only_counters_changed(svc, store, rows, None)
    # cy from another address is served.
    assert submit_code(_at_code_step(app, "cy", A2), seeds["cy"].at(clock.now())).status_code == 302


# --- mails that confirm an address ([rate_limits] email_link) ---------------------------------


def test_address_confirmation_mails_per_account(make_app, clock):
    app = make_app(
        clock=clock, rate_limits={"email_link_per_account": 2, "email_link_per_address": 100}
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann", email_verified=False)
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302

    def resend():
        page = client.get("/account/profile").get_data(as_text=True)
        return client.post("/account/verify-email", data={"csrf_token": csrf(page)})

    assert resend().status_code == 302
    change = post_form(
        client,
        "/account/email",
        {"new_email": "new@example.org", "password": GOOD},
        page="/account/profile",
    )
    assert change.status_code in (200, 302)
    mails = len(outbox(svc))
    store, rows = _store(svc), _rows(svc)
    _refused(resend(), 3500)
    refused = post_form(
        client,
        "/account/email",
        {"new_email": "other@example.org", "password": GOOD},
        page="/account/profile",
    )
    _refused(refused, 3500)
    assert "Too many requests" in refused.get_data(as_text=True)
    assert len(outbox(svc)) == mails
    _only_counters_changed(svc, store, rows, "email_link")


# --- shared by every app on one store ------------------------------------------------------------


def _two_apps(make_app, clock, **extra):
    limits = {
        "userinfo_per_address": 2,
        "client_registration_per_address": 2,
        "mfa_code_per_address": 2,
        "mfa_code_per_account": 100,
    }
    return [
        make_app(
            clock=clock,
            oidc={"open_registration": True},
            lockout=NO_LOCKOUT,
            device={"max_user_code_attempts": 2},
            rate_limits=limits,
            **extra,
        )
        for _ in range(2)
    ]


def _shared(first, second) -> None:
    ip = f"203.0.113.{secrets.randbelow(200) + 50}"
    a, b = first.test_client(), second.test_client()
    bearer = {"Authorization": "Bearer forged"}
    assert a.get("/oauth2/userinfo", headers=bearer, **_at(ip)).status_code == 401
    assert b.get("/oauth2/userinfo", headers=bearer, **_at(ip)).status_code == 401
    assert int(a.get("/oauth2/userinfo", headers=bearer, **_at(ip)).headers["Retry-After"]) > 0
    _refused(b.get("/oauth2/userinfo", headers=bearer, **_at(ip)), 200)
    body = {"redirect_uris": ["https://rp.example.org/cb"]}
    assert a.post("/oauth2/register", json=body, **_at(ip)).status_code == 201
    assert b.post("/oauth2/register", json=body, **_at(ip)).status_code == 201
    _refused(a.post("/oauth2/register", json=body, **_at(ip)), 3500)
    # Device user codes ([device] max_user_code_attempts per address): counted together too.
    for app in (first, second):
        browser = app.test_client()
        page = browser.get("/device", **_at(ip)).get_data(as_text=True)
        resp = browser.post(
            "/device", data={"csrf_token": csrf(page), "user_code": "BCDF-GHJK"}, **_at(ip)
        )
        assert resp.status_code == 400
    browser = first.test_client()
    page = browser.get("/device", **_at(ip)).get_data(as_text=True)
    refused = browser.post(
        "/device", data={"csrf_token": csrf(page), "user_code": "BCDF-GHJK"}, **_at(ip)
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 900
    # Wrong second-factor codes from one address, at two apps.
    svc = first.extensions["idp"]
    names = [f"u{secrets.token_hex(3)}" for _ in range(3)]
    seeds = [enrol_totp(svc, make_user(svc, n)) for n in names]
    for app, name in ((first, names[0]), (second, names[1])):
        assert submit_code(_at_code_step(app, name, ip), "999999").status_code == 400
    _refused(submit_code(_at_code_step(second, names[2], ip), seeds[2].at(svc.clock.now())), 800)


def test_two_apps_on_one_database_share_the_new_counts(make_app, clock):
    _shared(*_two_apps(make_app, clock))


@pytest.mark.redis
def test_two_apps_on_one_redis_share_the_new_counts(make_app, clock, redis_url):
    prefix = f"test-{secrets.token_hex(4)}:"
    first, second = _two_apps(make_app, clock, redis_url=redis_url, store={"redis_prefix": prefix})
    assert type(first.extensions["idp"].store).__name__ == "RedisStore"
    _shared(first, second)


# --- [rate_limits] applied live -------------------------------------------------------------------


def test_rate_limits_are_applied_live_to_every_app(make_app, clock):
    """[rate_limits] is a policy section (idp config apply, the console): a change stored by one
    app is the limit of another on the same database at its next request."""
    from idp.manage import Actor, policies, transaction

    first, second = (make_app(clock=clock) for _ in range(2))
    with transaction(first.extensions["idp"], Actor.operator("test")) as ctx:
        assert policies.update(ctx, {"rate_limits": {"reset_per_account": 1}}) == [
            "rate_limits.reset_per_account"
        ]
    client = second.test_client()
    address = {"email": "live@example.org"}
    assert post_form(client, "/password/reset", address).status_code == 200
    _refused(post_form(client, "/password/reset", address), 3500)
