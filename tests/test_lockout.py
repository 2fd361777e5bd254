"""Lockout after N failures for M minutes, per-IP throttling, across two app instances sharing the
database (SQL store) or Redis, and a lockout that reveals nothing about the account."""

import time

import pytest
from login_kit import GOOD, audit_actions, counts, login, make_user, outbox

from idp.clock import FrozenClock
from idp.sso.sessions import COOKIE

LOCKED = "Too many failed sign-in attempts"
SMALL = {"lockout": {"max_failures": 3, "lock_minutes": 10, "window_minutes": 15}}


def _fail(client, name, n):
    for _ in range(n):
        assert login(client, name, "wrong-password").status_code == 401


def test_lock_after_n_failures_then_timeout(make_app):
    clock = FrozenClock()
    app = make_app(clock=clock, **SMALL)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    _fail(client, "ann", 3)
    resp = login(client, "ann", GOOD)  # right password, but locked
    assert LOCKED in resp.get_data(as_text=True) and client.get_cookie(COOKIE) is None
    assert counts(svc)["sessions"] == 0
    assert "login.lockout" in audit_actions(svc)
    mails = outbox(svc)
    assert len(mails) == 1 and mails[0]["To"] == "ann@example.org"
    assert "locked" in mails[0]["Subject"]
    clock.advance(10 * 60 + 1)
    assert login(client, "ann", GOOD).status_code == 302


def test_unknown_account_locks_the_same_way(make_app):
    app = make_app(**SMALL)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    known, unknown = app.test_client(), app.test_client()
    _fail(known, "ann", 3)
    _fail(unknown, "ghost", 3)
    a = login(known, "ann", "x").get_data(as_text=True)
    b = login(unknown, "ghost", "x").get_data(as_text=True)
    assert LOCKED in a and LOCKED in b
    # Only the real account gets a mail.
    assert [m["To"] for m in outbox(svc)] == ["ann@example.org"]


def test_success_resets_the_failure_count(make_app):
    app = make_app(**SMALL)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    _fail(client, "ann", 2)
    assert login(client, "ann", GOOD).status_code == 302
    _fail(app.test_client(), "ann", 2)
    assert login(app.test_client(), "ann", GOOD).status_code == 302


def test_admin_unlock(make_app):
    from idp.web.guard import unlock

    app = make_app(**SMALL)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    _fail(app.test_client(), "ann", 3)
    with app.app_context():
        unlock(uid)
    assert login(app.test_client(), "ann", GOOD).status_code == 302


def _two_workers_share_lockout(app_a, app_b):
    svc = app_a.extensions["idp"]
    make_user(svc, "ann")
    # Failures alternate between the two workers; the third locks the account on both.
    for app in (app_a, app_b, app_a):
        assert login(app.test_client(), "ann", "wrong-password").status_code == 401
    for app in (app_a, app_b):
        resp = login(app.test_client(), "ann", GOOD)
        assert LOCKED in resp.get_data(as_text=True)


def test_lockout_holds_across_two_app_instances_on_one_database(make_app):
    first = make_app(**SMALL)
    second = make_app(**SMALL)  # a second worker: same database, its own engine and store object
    assert first.extensions["idp"].store is not second.extensions["idp"].store
    _two_workers_share_lockout(first, second)


def test_lockout_holds_across_two_app_instances_on_redis(make_app, redis_url):
    import secrets

    extra = dict(SMALL, redis_url=redis_url, store={"redis_prefix": f"t{secrets.token_hex(4)}:"})
    _two_workers_share_lockout(make_app(**extra), make_app(**extra))


def test_ip_progressive_delay_and_refusal(make_app):
    app = make_app(
        lockout={
            "max_failures": 100,
            "ip_delay_after": 2,
            "ip_delay_seconds": 0.3,
            "ip_max_delay_seconds": 0.3,
            "ip_max_failures": 4,
        }
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    _fail(client, "a1", 2)
    started = time.monotonic()
    _fail(client, "a2", 1)  # third failure from this IP: delayed first
    assert time.monotonic() - started >= 0.3
    _fail(client, "a3", 1)
    before = counts(svc)
    resp = login(client, "ann", GOOD)
    assert resp.status_code == 429 and client.get_cookie(COOKIE) is None
    assert counts(svc)["sessions"] == before["sessions"] == 0
    # Another client address is not affected.
    other = app.test_client()
    resp = other.get("/login")
    from login_kit import csrf

    resp = other.post(
        "/login",
        data={"csrf_token": csrf(resp.get_data(as_text=True)), "username": "ann", "password": GOOD},
        environ_overrides={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert resp.status_code == 302


@pytest.mark.parametrize("n", [0])
def test_lockout_disabled_when_max_failures_zero(make_app, n):
    app = make_app(lockout={"max_failures": n})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    _fail(app.test_client(), "ann", 6)
    assert login(app.test_client(), "ann", GOOD).status_code == 302
