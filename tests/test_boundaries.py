"""Sign-in time limits at their boundaries, one second either side on the frozen clock: how long
a lock lasts, which failures count towards it, how far a TOTP code may be from the clock, the
lock checked again at the second factor, a form's CSRF token, a reset link, an e-mailed code.
Written against the mutants that moved these boundaries and survived the earlier tests
(docs/development.md "Mutation testing"); every refusal also asserts that nothing changed."""

from __future__ import annotations

import time

import pytest
from login_kit import (
    GOOD,
    audit_actions,
    counts,
    csrf,
    link_in,
    login,
    make_user,
    outbox,
    post_form,
)
from mfa_kit import (
    add_channel,
    audits,
    enrol_totp,
    last_mail_code,
    mfa_counts,
    password_then_step,
    signed_in,
    step_page,
    submit_code,
)
from sqlalchemy import select

from idp.clock import FrozenClock
from idp.storage.models import KVEntry
from idp.storage.models_mfa import MfaTotp

LOCKED = "Too many failed sign-in attempts"
LOCK, WINDOW = 10 * 60, 15 * 60
SMALL = {"lockout": {"max_failures": 3, "lock_minutes": 10, "window_minutes": 15}}
START = 1_800_000_000.0  # a multiple of 30: TOTP steps start on it


@pytest.fixture
def clock():
    return FrozenClock(START)


@pytest.fixture
def app(make_app, clock):
    return make_app(clock=clock, **SMALL)


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


def _fail(app, name: str, n: int) -> None:
    client = app.test_client()
    for _ in range(n):
        assert login(client, name, "wrong-password").status_code == 401


def _live_keys(svc) -> set[str]:
    with svc.sessions() as db:
        now = svc.clock.now()
        return set(db.scalars(select(KVEntry.key).where(KVEntry.expires_at > now)))


def _state(svc, uid: int) -> tuple:
    """What a refused sign-in must leave as it was: rows, live store keys, the spent TOTP step."""
    with svc.sessions() as db:
        row = db.get(MfaTotp, uid)
        step = row.last_step if row else None
    rows = {k: v for k, v in counts(svc).items() if k != "kv"}  # kv: live keys, next
    return rows, mfa_counts(svc), _live_keys(svc), step


def _refused_while_locked(app, svc, uid: int, retry_after: int | None = None) -> None:
    before = _state(svc, uid)
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    # The page for people, 429 with the rest of the lock as Retry-After for scripts.
    assert resp.status_code == 429 and LOCKED in resp.get_data(as_text=True)
    if retry_after is not None:
        assert resp.headers["Retry-After"] == str(retry_after)
    assert not signed_in(client)
    assert _state(svc, uid) == before


# --- [lockout] lock_minutes ------------------------------------------------------------------


@pytest.mark.parametrize(("after", "locked"), [(LOCK - 1, True), (LOCK + 1, False)])
def test_a_lock_lasts_lock_minutes_to_the_second(app, svc, clock, after, locked):
    uid = make_user(svc, "ann")
    _fail(app, "ann", 3)
    clock.advance(after)
    if locked:
        _refused_while_locked(app, svc, uid, retry_after=LOCK - after)
    else:
        client = app.test_client()
        assert login(client, "ann", GOOD).status_code == 302
        assert signed_in(client)


# --- [lockout] window_minutes ----------------------------------------------------------------


@pytest.mark.parametrize(("after", "counted"), [(WINDOW - 1, True), (WINDOW + 1, False)])
def test_a_failure_counts_within_window_minutes_of_the_first(
    app, svc, clock, after, counted
):
    uid = make_user(svc, "ann")
    _fail(app, "ann", 1)
    clock.advance(after)
    _fail(app, "ann", 2)  # the first failure plus these two make three only inside the window
    if counted:
        assert "login.lockout" in audit_actions(svc)
        _refused_while_locked(app, svc, uid)
    else:
        assert "login.lockout" not in audit_actions(svc)
        client = app.test_client()
        assert login(client, "ann", GOOD).status_code == 302
        assert signed_in(client)


def test_an_expired_lock_starts_a_fresh_count(app, svc, clock):
    """The failures that locked the account do not outlive the lock: one more wrong password
    after it ended (still inside the first failure's window) does not lock again."""
    make_user(svc, "ann")
    _fail(app, "ann", 3)
    clock.advance(LOCK + 1)
    _fail(app, "ann", 1)
    assert login(app.test_client(), "ann", GOOD).status_code == 302


def test_an_admin_unlock_clears_the_failures_counted(app, svc):
    from idp.web.guard import unlock

    uid = make_user(svc, "ann")
    _fail(app, "ann", 2)
    with app.app_context():
        unlock(uid)
    _fail(app, "ann", 2)  # 2 + 2 would lock; after the unlock only these two count
    assert "login.lockout" not in audit_actions(svc)
    assert login(app.test_client(), "ann", GOOD).status_code == 302


def test_max_failures_one_locks_at_the_first_failure(make_app, clock):
    app = make_app(clock=clock, lockout={"max_failures": 1, "lock_minutes": 10})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    _fail(app, "ann", 1)
    assert "login.lockout" in audit_actions(svc)
    _refused_while_locked(app, svc, uid)


@pytest.mark.parametrize(("after", "refused"), [(WINDOW - 1, True), (WINDOW + 1, False)])
def test_an_address_failure_counts_within_window_minutes(make_app, clock, after, refused):
    """[lockout] ip_max_failures counts one address's failures within window_minutes."""
    app = make_app(clock=clock, lockout={"max_failures": 100, "window_minutes": 15,
                                         "ip_delay_after": 0, "ip_max_failures": 2})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    _fail(app, "a1", 1)
    clock.advance(after)
    _fail(app, "a2", 1)
    client = app.test_client()
    if refused:
        before = _state(svc, uid)
        resp = login(client, "ann", GOOD)
        # Retry-After: the address's count lives window_minutes from its last failure.
        assert resp.status_code == 429 and resp.headers["Retry-After"] == str(WINDOW)
        assert _state(svc, uid) == before and not signed_in(client)
    else:
        assert login(client, "ann", GOOD).status_code == 302


def test_the_lock_holds_at_the_second_factor_too(app, svc, clock):
    """A lock made while someone waits at the MFA step (after a right password) stops the
    right code too: the lock is checked again at the step, not only at the password."""
    uid = make_user(svc, "ann")
    totp = enrol_totp(svc, uid)
    waiting = app.test_client()
    password_then_step(waiting, "ann")
    _fail(app, "ann", 3)  # someone else locks the account meanwhile
    before = _state(svc, uid)
    resp = submit_code(waiting, totp.at(clock.now()))
    assert resp.status_code == 429 and LOCKED in resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == str(LOCK)
    assert not signed_in(waiting)
    after = _state(svc, uid)
    # The code's step is not spent and no session made; only the waiting sign-in is gone.
    assert after[1] == before[1] and after[3] == before[3]
    assert after[0]["sessions"] == before[0]["sessions"] == 0
    assert {k for k in before[2] - after[2] if not k.startswith("plogin:")} == set()
    assert after[2] <= before[2]
    assert [e.details.get("step") for e in audits(svc, "login.locked")] == ["mfa"]
    clock.advance(LOCK + 1)
    fresh = app.test_client()
    password_then_step(fresh, "ann")
    assert submit_code(fresh, totp.at(clock.now())).status_code == 302


# --- TOTP: one time step of skew either side, no more ----------------------------------------


def _totp_user(app, svc):
    uid = make_user(svc, "ann")
    return uid, enrol_totp(svc, uid)


def _code_refused(app, svc, uid: int, code: str) -> None:
    client = app.test_client()
    password_then_step(client, "ann")
    before = _state(svc, uid)
    resp = submit_code(client, code)
    assert resp.status_code == 400 and "That code is not correct" in resp.get_data(as_text=True)
    assert not signed_in(client)
    after = _state(svc, uid)
    # A wrong code counts (lockout, risk) and keeps the sign-in waiting; nothing else changes.
    assert after[:2] == before[:2] and after[3] == before[3]
    added = {k for k in after[2] - before[2]
             if not k.startswith(("plogin:", "rl:mfa_code:"))}  # its [rate_limits] counters
    assert added <= {f"fail:mfa:u{uid}", f"risk:mfa:u{uid}"}


@pytest.mark.parametrize("steps", [2, 3, -2, -3])
def test_a_totp_code_two_or_more_steps_away_is_refused(app, svc, clock, steps):
    uid, totp = _totp_user(app, svc)
    _code_refused(app, svc, uid, totp.at(clock.now() + steps * totp.interval))


@pytest.mark.parametrize(("age", "accepted"), [(2 * 30 - 1, True), (2 * 30, False)])
def test_a_totp_code_is_good_until_the_end_of_the_next_step(app, svc, clock, age, accepted):
    """A code of step N is accepted up to the last second of step N+1 (one step of skew)."""
    uid, totp = _totp_user(app, svc)
    code = totp.at(clock.now())  # START is the first second of its step
    clock.advance(age)
    if accepted:
        client = app.test_client()
        password_then_step(client, "ann")
        assert submit_code(client, code).status_code == 302
    else:
        _code_refused(app, svc, uid, code)


@pytest.mark.parametrize(("before_start", "accepted"), [(0, True), (1, False)])
def test_a_totp_code_is_good_from_the_start_of_the_step_before(
    app, svc, clock, before_start, accepted
):
    """A device whose clock runs ahead: the code of step N+1 is accepted from the first second
    of step N, not a second earlier."""
    clock.advance(-before_start)
    uid, totp = _totp_user(app, svc)
    ahead = totp.at(START + 30)
    if accepted:
        client = app.test_client()
        password_then_step(client, "ann")
        assert submit_code(client, ahead).status_code == 302
    else:
        _code_refused(app, svc, uid, ahead)


def test_totp_follows_the_configured_period(make_app, clock):
    """totp_period = 60: the skew is one 60-second step, so a code 61 s old is still good and
    one two steps away is not."""
    app = make_app(clock=clock, mfa={"totp_period": 60}, **SMALL)
    svc = app.extensions["idp"]
    uid, totp = _totp_user(app, svc)
    assert totp.interval == 60
    _code_refused(app, svc, uid, totp.at(clock.now() + 120))
    code = totp.at(clock.now())
    clock.advance(61)
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, code).status_code == 302


def test_a_totp_code_in_other_digits_is_refused_not_an_error(app, svc, clock):
    """Arabic-Indic digits pass str.isdigit(); they once reached hmac.compare_digest, which
    raises on non-ASCII text: a 500 at the MFA step."""
    uid, _ = _totp_user(app, svc)
    _code_refused(app, svc, uid, "١٢٣٤٥٦")


def test_no_seed_matches_nothing_and_a_new_seed_replaces_the_old(app, svc, clock):
    from idp.backends import totp as totp_backend

    uid = make_user(svc, "ann")
    assert totp_backend.check(svc, uid, "123456") is False  # no seed: no code is right
    old = enrol_totp(svc, uid)
    new = enrol_totp(svc, uid)  # enrolling again replaces the seed, in the same row
    with svc.sessions() as db:
        rows = list(db.scalars(select(MfaTotp)))
    assert len(rows) == 1 and rows[0].created_at is not None and rows[0].last_step is None
    if old.at(clock.now()) != new.at(clock.now()):
        assert totp_backend.check(svc, uid, old.at(clock.now())) is False
    assert totp_backend.check(svc, uid, new.at(clock.now())) is True
    # A seed sealed for another user (copied between rows) does not open: no code is right.
    with svc.sessions.begin() as db:
        db.get(MfaTotp, uid).secret_sealed = totp_backend.seal(svc, uid + 1, "JBSWY3DPEHPK3PXP")
    clock.advance(30)
    assert totp_backend.check(svc, uid, new.at(clock.now())) is False


def test_a_used_totp_code_is_refused_within_its_window(app, svc, clock):
    uid, totp = _totp_user(app, svc)
    code = totp.at(clock.now())
    first = app.test_client()
    password_then_step(first, "ann")
    assert submit_code(first, code).status_code == 302
    clock.advance(59)  # still inside the code's window: only the spent step refuses it
    _code_refused(app, svc, uid, code)


# --- CSRF tokens: WTF_CSRF_TIME_LIMIT (3600 s) -------------------------------------------------


@pytest.mark.parametrize(("age", "good"), [(3600 - 1, True), (3600 + 1, False)])
def test_a_form_token_lives_an_hour(app, svc, monkeypatch, age, good):
    """Flask-WTF signs the token with itsdangerous, which reads time.time(), not our clock: the
    token's age is moved on there."""
    import itsdangerous.timed

    now = [time.time()]
    monkeypatch.setattr(itsdangerous.timed, "time", type("T", (), {
        "time": staticmethod(lambda: now[0])}))
    uid = make_user(svc, "ann")
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    now[0] += age
    before = _state(svc, uid)
    resp = client.post("/login", data={"csrf_token": token, "username": "ann", "password": GOOD})
    if good:
        assert resp.status_code == 302 and signed_in(client)
        return
    assert resp.status_code == 400 and "Please fill in both fields" in resp.get_data(as_text=True)
    assert _state(svc, uid) == before and not signed_in(client)


# --- [recovery] token_minutes, [mfa] code_ttl_seconds ----------------------------------------


@pytest.mark.parametrize(("after", "good"), [(3600 - 1, True), (3600 + 1, False)])
def test_a_reset_link_lives_token_minutes(app, svc, clock, after, good):
    from urllib.parse import urlsplit

    uid = make_user(svc, "ann")
    post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    path = urlsplit(link_in(outbox(svc)[0], "/password/reset/")).path
    clock.advance(after)
    before = _state(svc, uid)
    assert app.test_client().get(path).status_code == (200 if good else 400)
    assert _state(svc, uid) == before


@pytest.mark.parametrize(("after", "good"), [(300 - 1, True), (300 + 1, False)])
def test_an_emailed_code_lives_code_ttl_seconds(app, svc, clock, after, good):
    uid = make_user(svc, "ann", email_verified=True)
    add_channel(svc, uid, "email", "ann@example.org")
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    code = last_mail_code(svc)
    clock.advance(after)
    if good:
        assert submit_code(client, code, page=page).status_code == 302 and signed_in(client)
        return
    before = mfa_counts(svc)
    resp = submit_code(client, code, page=page)
    assert resp.status_code == 400 and mfa_counts(svc) == before and not signed_in(client)
