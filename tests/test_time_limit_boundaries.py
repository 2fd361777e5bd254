"""Account and sign-in time limits not held elsewhere, one second either side on the frozen clock:
"remember this device" ([mfa] remember_days), the grace period of new accounts ([mfa]
grace_days), the password re-entry that guards changes of second factors ([mfa]
reauth_minutes), and the first-login / magic link ([recovery] token_minutes, the reset link's
twin in tests/test_boundaries.py). Non-default values where the default would hide which
setting is followed; a refusal changes nothing."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from login_kit import (
    GOOD,
    company_with_control_word,
    counts,
    csrf,
    link_in,
    login,
    make_user,
    outbox,
    post_form,
)
from mfa_kit import code_at, enrol_totp, mfa_counts, password_then_step, signed_in, submit_code

from idp.clock import FrozenClock

START = 1_800_000_000.0


@pytest.fixture
def clock():
    return FrozenClock(START)


# --- [mfa] remember_days ---------------------------------------------------------------------

REMEMBER = 12 * 86400


@pytest.mark.parametrize(("after", "remembered"), [(REMEMBER - 1, True), (REMEMBER + 1, False)])
def test_a_remembered_device_skips_the_factor_for_remember_days(make_app, clock, after, remembered):
    app = make_app(clock=clock, mfa={"remember_days": 12})
    svc = app.extensions["idp"]
    totp = enrol_totp(svc, make_user(svc, "ann"))
    first = app.test_client()
    password_then_step(first, "ann")
    assert submit_code(first, code_at(totp, clock), remember=True).status_code == 302
    cookie = first.get_cookie("idp_mfa_device", path="/login").value
    clock.advance(after)
    later = app.test_client()
    later.set_cookie("idp_mfa_device", cookie, path="/login")
    where = password_then_step(later, "ann").headers["Location"]
    assert where == ("/account/" if remembered else "/login/step")
    assert signed_in(later) is remembered


# --- [mfa] reauth_minutes --------------------------------------------------------------------

REAUTH = 7 * 60


@pytest.mark.parametrize(("after", "fresh"), [(REAUTH - 1, True), (REAUTH + 1, False)])
def test_a_password_re_entry_opens_factor_changes_for_reauth_minutes(make_app, clock, after, fresh):
    app = make_app(clock=clock, mfa={"reauth_minutes": 7})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    assert 'name="password"' in page  # asked first
    resp = client.post(
        "/account/mfa/reauth",
        data={"csrf_token": csrf(page), "password": GOOD, "next": "/account/mfa/totp"},
    )
    assert resp.status_code in (302, 303)
    clock.advance(after)
    before = mfa_counts(svc)
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    assert ('name="password"' not in page) is fresh
    assert mfa_counts(svc) == before


# --- [recovery] token_minutes: the first-login (magic) link ----------------------------------


@pytest.mark.parametrize(("after", "good"), [(25 * 60 - 1, True), (25 * 60 + 1, False)])
def test_a_first_login_link_lives_token_minutes(make_app, clock, after, good):
    app = make_app(clock=clock, recovery={"token_minutes": 25})
    svc = app.extensions["idp"]
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)
    asked = post_form(
        app.test_client(),
        "/login/first",
        {"email": "newbie@example.org", "control_word": "Blue Harbour"},
    )
    assert asked.status_code == 200
    path = urlsplit(link_in(outbox(svc)[-1], "/login/magic/")).path
    clock.advance(after)
    before = counts(svc)
    resp = app.test_client().get(path)
    assert resp.status_code == (200 if good else 400)
    assert counts(svc) == before  # opening the link only shows it


# --- [webauthn] challenge_seconds: a passkey sign-in's challenge ---------------------------

CHALLENGE = 200


@pytest.mark.parametrize(("after", "good"), [(CHALLENGE - 1, True), (CHALLENGE + 1, False)])
def test_a_passkey_challenge_lives_challenge_seconds(make_app, clock, after, good):
    from webauthn_kit import ORIGIN, SoftAuthenticator, passkey_options, passkey_verify, register

    app = make_app(clock=clock, webauthn={"challenge_seconds": CHALLENGE})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    ann = SoftAuthenticator(attachment="platform", transports=["internal"])
    enrol = app.test_client()
    assert login(enrol, "ann", GOOD).headers["Location"] == "/account/"
    assert register(enrol, ann).status_code == 200
    client = app.test_client()
    token, opts = passkey_options(client)
    assertion = ann.get(opts.get_json(), ORIGIN)
    clock.advance(after)
    before = _passkey_state(svc)
    resp = passkey_verify(client, token, assertion)
    if good:
        assert resp.status_code == 200 and signed_in(client)
        return
    assert resp.status_code == 401 and not signed_in(client)
    # Unchanged: the credential's counter and last use, users, sessions (the refusal counts
    # only the address's failures, in the store).
    assert _passkey_state(svc) == before


def _passkey_state(svc) -> tuple:
    from sqlalchemy import select

    from idp.storage.models_webauthn import WebAuthnCredential

    rows = {k: v for k, v in counts(svc).items() if k != "kv"}
    with svc.sessions() as db:
        creds = db.execute(select(WebAuthnCredential.sign_count, WebAuthnCredential.last_used_at))
        return rows, sorted(tuple(r) for r in creds)


# --- [webauthn] reauth_minutes: adding a key needs a recent sign-in ------------------------

KEY_REAUTH = 7 * 60


@pytest.mark.parametrize(("after", "recent"), [(KEY_REAUTH - 1, True), (KEY_REAUTH + 1, False)])
def test_adding_a_key_needs_a_sign_in_within_reauth_minutes(make_app, clock, after, recent):
    from webauthn_kit import json_post

    app = make_app(clock=clock, webauthn={"reauth_minutes": 7})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    clock.advance(after)
    before = _passkey_state(svc)
    token = csrf(client.get("/account/profile").get_data(as_text=True))
    resp = json_post(client, "/webauthn/register/options", token, {})
    if recent:
        assert resp.status_code == 200 and resp.get_json()["challenge"]
        return
    assert resp.status_code == 403 and resp.get_json()["error"] == "reauth"
    assert _passkey_state(svc) == before


# --- [recovery] approval_token_minutes: the administrator's approval link ------------------

APPROVAL = 3 * 60


@pytest.mark.parametrize(("after", "good"), [(APPROVAL * 60 - 1, True), (APPROVAL * 60 + 1, False)])
def test_an_approval_link_lives_approval_token_minutes(make_app, clock, after, good):
    app = make_app(
        clock=clock,
        recovery={"approval_token_minutes": APPROVAL},
        registration={
            "enabled": True,
            "require_approval": True,
            "admin_emails": ["boss@example.org"],
        },
    )
    svc = app.extensions["idp"]
    client = app.test_client()
    password = "Correct-Horse-Battery-9"
    form = {
        "username": "reg1",
        "email": "reg1@example.org",
        "new_password": password,
        "confirm": password,
    }
    assert post_form(client, "/register", form).status_code == 200
    verify = urlsplit(link_in(outbox(svc)[-1], "/verify-email/")).path
    assert post_form(client, verify, {}).status_code == 200
    approve = urlsplit(link_in(outbox(svc)[-1], "/register/approve/")).path
    clock.advance(after)
    before = counts(svc)
    resp = app.test_client().get(approve)
    assert resp.status_code == (200 if good else 400)
    assert counts(svc) == before


# --- [password_policy] min_age_minutes: the shortest time between password changes ----------

MIN_AGE = 45 * 60


@pytest.mark.parametrize(("after", "allowed"), [(MIN_AGE - 1, False), (MIN_AGE + 1, True)])
def test_a_password_may_change_again_after_min_age_minutes(make_app, clock, after, allowed):
    from login_kit import user_row

    app = make_app(
        clock=clock, password_policy={"min_age_minutes": 45}, session={"idle_minutes": 120}
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann")  # its password set now
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    clock.advance(after)
    page = client.get("/account/profile").get_data(as_text=True)  # the form may be held back
    before_hash, before = user_row(svc, "ann").password_hash, _rows_and_keys(svc)
    new = "Another-Horse-Battery-7"
    resp = client.post(
        "/account/password",
        data={
            "csrf_token": csrf(page),
            "current_password": GOOD,
            "new_password": new,
            "confirm": new,
        },
    )
    if allowed:
        assert user_row(svc, "ann").password_hash != before_hash
        return
    assert resp.status_code == 400
    assert user_row(svc, "ann").password_hash == before_hash and _rows_and_keys(svc) == before


def _rows_and_keys(svc) -> tuple:
    from sqlalchemy import select

    from idp.storage.models import KVEntry

    with svc.sessions() as db:
        keys = set(db.scalars(select(KVEntry.key)))
    return {k: v for k, v in counts(svc).items() if k != "kv"}, keys


# --- [devices] cookie_days: the known-device cookie's own lifetime (the browser keeps it) -------


def test_the_device_cookie_lasts_cookie_days(make_app, clock):
    from idp.sso.devices import COOKIE

    app = make_app(clock=clock, devices={"cookie_days": 40})
    make_user(app.extensions["idp"], "ann")
    resp = login(app.test_client(), "ann", GOOD)
    assert resp.status_code == 302
    cookies = [v for v in resp.headers.getlist("Set-Cookie") if v.startswith(f"{COOKIE}=")]
    assert len(cookies) == 1 and f"Max-Age={40 * 86400}" in cookies[0]


# --- [mfa] grace_days: a new account signs in without a second factor for a while ----------

GRACE = 5 * 86400


@pytest.mark.parametrize(("after", "in_grace"), [(GRACE - 1, True), (GRACE + 1, False)])
def test_a_new_account_is_in_grace_for_grace_days(make_app, clock, after, in_grace):
    """``required = true`` with ``grace_days = 5``: the password alone signs ann in until five
    days after her account was made; a second later she is sent to set a factor up."""
    from idp.storage.models import User

    app = make_app(clock=clock, mfa={"required": True, "grace_days": 5, "enroll_at_login": True})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        db.get(User, uid).created_at = clock.utcnow()
    clock.advance(after)
    client = app.test_client()
    where = password_then_step(client, "ann").headers["Location"]
    assert where == ("/account/" if in_grace else "/login/step")
    assert signed_in(client) is in_grace


# --- [password_policy] max_age_days and warn_days ---------------------------------------------

MAX_AGE, WARN = 20 * 86400, 6 * 86400


@pytest.mark.parametrize(
    ("age", "step", "said"),
    [
        (MAX_AGE - WARN - 1, False, None),  # 6 days and a second left: no warning yet
        (MAX_AGE - WARN + 1, True, "expires in 6 days"),
        (MAX_AGE - 1, True, "expires in 1 day"),
        (MAX_AGE + 1, True, "has expired"),
    ],
)
def test_a_password_warns_for_warn_days_and_expires_after_max_age_days(
    make_app, clock, age, step, said
):
    from datetime import timedelta

    app = make_app(clock=clock, password_policy={"max_age_days": 20, "warn_days": 6})
    svc = app.extensions["idp"]
    make_user(svc, "ann", password_changed_at=clock.utcnow() - timedelta(seconds=age))
    client = app.test_client()
    where = login(client, "ann", GOOD).headers["Location"]
    assert where == ("/login/step" if step else "/account/")
    if said:
        page = client.get("/login/step").get_data(as_text=True)
        assert said in page
        assert ("has expired" in page) is (age > MAX_AGE)
