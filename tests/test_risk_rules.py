"""Suspicious-activity rules (docs/risk.md) through real sign-ins on the frozen clock: credential
stuffing, a burst of MFA failures, impossible travel and a first sign-in from a new country. Each
rule raises its ``security.<rule>`` audit row exactly at its threshold and not one below, and a
rule set to lock locks the account, which then cannot sign in."""

from __future__ import annotations

import secrets

import pytest
from login_kit import GOOD, counts, login, make_user, user_row
from mfa_kit import audits, enrol_totp, password_then_step, signed_in, submit_code

from idp.backends.geoip import GeoIp
from idp.sso.sessions import COOKIE
from tests.geo_kit import write_city_db

LONDON, LONDON_2, LINKOPING, CHANGCHUN = "81.2.69.10", "81.2.69.77", "89.160.20.5", "175.16.199.9"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
NETWORK_REFUSED = "Too many attempts from your network"
LOCKED = "This account is locked"
# Address throttling of [lockout] would slow these tests down; the rules are under test.
NO_DELAY = {"ip_delay_after": 0, "max_failures": 50}


@pytest.fixture(scope="module")
def city_db(tmp_path_factory):
    return write_city_db(tmp_path_factory.mktemp("geo") / "city.mmdb")


def at(app, ip: str, ua: str = FIREFOX):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    client.environ_base["HTTP_USER_AGENT"] = ua
    return client


def events(svc, rule: str):
    return audits(svc, f"security.{rule}")


# --- credential stuffing ------------------------------------------------------------------------


def _stuffing_holds(app_a, app_b, clock=None):
    svc = app_a.extensions["idp"]
    make_user(svc, "ann")
    # Nine different names fail from one address (one of them three times: still one name),
    # spread over two workers.
    for i in range(9):
        app = (app_a, app_b)[i % 2]
        for _ in range(3 if i == 0 else 1):
            assert login(at(app, LONDON), f"ghost{i}", "wrong").status_code == 401
    assert events(svc, "credential_stuffing") == []
    assert login(at(app_b, LONDON), "ann", GOOD).status_code == 302  # one below: not refused
    assert login(at(app_a, LONDON), "ghost9", "wrong").status_code == 401  # the tenth name
    found = events(svc, "credential_stuffing")
    assert len(found) == 1 and found[0].ip == LONDON
    assert found[0].details["distinct_accounts"] == 10
    assert found[0].details["address"] == LONDON
    before = counts(svc)
    for app in (app_a, app_b):
        client = at(app, LONDON)
        refused = login(client, "ann", GOOD)  # even the right password: not checked at all
        assert refused.status_code == 429
        assert NETWORK_REFUSED in refused.get_data(as_text=True)
        assert client.get_cookie(COOKIE) is None
    assert counts(svc)["sessions"] == before["sessions"]
    assert len(events(svc, "credential_stuffing")) == 1  # refused attempts raise no more
    assert login(at(app_b, LINKOPING), "ann", GOOD).status_code == 302  # another address
    if clock is not None:
        clock.advance(15 * 60 + 1)  # stuffing_block_minutes
        assert login(at(app_a, LONDON), "ann", GOOD).status_code == 302


def test_stuffing_refuses_the_address_at_the_tenth_distinct_account(make_app, clock):
    first = make_app(clock=clock, lockout=NO_DELAY)
    second = make_app(clock=clock, lockout=NO_DELAY)  # a second worker on the same database
    _stuffing_holds(first, second, clock)


def test_stuffing_counts_across_workers_on_postgresql_and_redis(make_app, pg_url, redis_url):
    extra = {
        "database_url": pg_url,
        "redis_url": redis_url,
        "store": {"redis_prefix": f"t{secrets.token_hex(4)}:"},
        "lockout": NO_DELAY,
    }
    _stuffing_holds(make_app(**extra), make_app(**extra))


def test_stuffing_rule_off_refuses_nobody(make_app):
    app = make_app(lockout=NO_DELAY, risk={"stuffing_accounts": 0})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    for i in range(12):
        login(at(app, LONDON), f"ghost{i}", "wrong")
    assert login(at(app, LONDON), "ann", GOOD).status_code == 302
    assert events(svc, "credential_stuffing") == []


# --- burst of MFA failures ----------------------------------------------------------------------


def _wrong_codes(client, n: int) -> None:
    password_then_step(client, "ann")
    for _ in range(n):
        assert submit_code(client, "000000").status_code in (400, 401, 403)


def test_mfa_burst_raises_its_event_at_the_fifth_wrong_code(make_app, clock):
    app = make_app(clock=clock, lockout=NO_DELAY)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    _wrong_codes(at(app, LONDON), 3)
    _wrong_codes(at(app, LONDON), 1)  # a second attempt: four in the window
    assert events(svc, "mfa_failure_burst") == []
    _wrong_codes(at(app, LONDON), 1)
    found = events(svc, "mfa_failure_burst")
    assert len(found) == 1 and found[0].target == user_row(svc, "ann").uuid
    assert found[0].details["failures"] == 5 and found[0].details["locks"] is False
    assert user_row(svc, "ann").status == "active"  # mfa_burst_lock is off by default


def test_mfa_burst_outside_the_window_raises_nothing(make_app, clock):
    app = make_app(clock=clock, lockout=NO_DELAY)
    svc = app.extensions["idp"]
    enrol_totp(svc, make_user(svc, "ann"))
    _wrong_codes(at(app, LONDON), 4)
    clock.advance(10 * 60 + 1)
    _wrong_codes(at(app, LONDON), 1)
    assert events(svc, "mfa_failure_burst") == []


def test_mfa_burst_locks_the_account_when_set(make_app, clock):
    app = make_app(clock=clock, lockout=NO_DELAY, risk={"mfa_burst_lock": True})
    svc = app.extensions["idp"]
    enrol_totp(svc, make_user(svc, "ann"))
    _wrong_codes(at(app, LONDON), 4)
    client = at(app, LONDON)
    password_then_step(client, "ann")
    resp = submit_code(client, "000000")
    assert resp.status_code == 403 and LOCKED in resp.get_data(as_text=True)
    assert user_row(svc, "ann").status == "locked"
    locked = audits(svc, "user.locked")
    assert len(locked) == 1 and locked[0].actor == "risk-engine"
    assert events(svc, "mfa_failure_burst")[0].details["locks"] is True
    # The right password and the right code no longer open the account.
    clock.advance(60)
    again = at(app, LONDON)
    refused = login(again, "ann", GOOD)
    assert refused.status_code == 403 and LOCKED in refused.get_data(as_text=True)
    assert not signed_in(again) and counts(svc)["sessions"] == 0
    assert again.get("/login/step").status_code == 400  # no half-finished sign-in to go on with


# --- impossible travel and new countries --------------------------------------------------------


def _seconds_at_speed(city_db, a: str, b: str, kmh: float) -> float:
    geo = GeoIp(str(city_db))
    return geo.locate(a).km_to(geo.locate(b)) / kmh * 3600


def test_impossible_travel_fires_above_the_speed_and_not_below(make_app, clock, city_db):
    app = make_app(clock=clock, geoip={"database": str(city_db)})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    make_user(svc, "bob")
    limit = _seconds_at_speed(city_db, LONDON, CHANGCHUN, 1000)
    assert login(at(app, LONDON), "ann", GOOD).status_code == 302
    assert login(at(app, LONDON), "bob", GOOD).status_code == 302
    start = clock.now()
    clock.advance(limit - 60)  # bob: a minute too early for 1000 km/h
    assert login(at(app, CHANGCHUN), "bob", GOOD).status_code == 302
    clock.advance(120)  # ann: a minute later than 1000 km/h needs
    assert clock.now() - start > limit
    assert login(at(app, CHANGCHUN), "ann", GOOD).status_code == 302
    found = events(svc, "impossible_travel")
    assert [e.target for e in found] == [user_row(svc, "bob").uuid]
    details = found[0].details
    assert details["from"]["country"] == "GB" and details["to"]["country"] == "CN"
    assert details["speed_kmh"] > 1000 and details["max_speed_kmh"] == 1000
    assert found[0].ip == CHANGCHUN


def test_impossible_travel_lock_refuses_the_sign_in(make_app, clock, city_db):
    app = make_app(
        clock=clock, geoip={"database": str(city_db)}, risk={"impossible_travel_lock": True}
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    assert login(at(app, LONDON), "ann", GOOD).status_code == 302
    clock.advance(3600)
    before = counts(svc)
    client = at(app, CHANGCHUN)
    resp = login(client, "ann", GOOD)
    assert resp.status_code == 403 and LOCKED in resp.get_data(as_text=True)
    assert client.get_cookie(COOKIE) is None and before["sessions"] == 1
    # No new session, and the lock ended the London one too (a lock ends every session).
    assert counts(svc)["sessions"] == 0
    assert user_row(svc, "ann").status == "locked"
    assert len(events(svc, "impossible_travel")) == 1
    clock.advance(7 * 86400)  # the lock is an administrator's: it does not run out
    assert login(at(app, LONDON), "ann", GOOD).status_code == 403


def test_first_sign_in_from_a_new_country(make_app, clock, city_db):
    app = make_app(clock=clock, geoip={"database": str(city_db)})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    for ip in (LONDON, LONDON_2):  # the first sign-in ever has nothing to compare with
        assert login(at(app, ip), "ann", GOOD).status_code == 302
        clock.advance(86400)
    assert events(svc, "new_country") == []
    assert login(at(app, LINKOPING), "ann", GOOD).status_code == 302
    found = events(svc, "new_country")
    assert len(found) == 1
    assert found[0].details["country"] == "SE" and found[0].details["known_countries"] == ["GB"]
    assert events(svc, "impossible_travel") == []  # a day later: no speed record
    clock.advance(86400)
    assert login(at(app, LINKOPING), "ann", GOOD).status_code == 302  # known now
    assert len(events(svc, "new_country")) == 1


def test_without_a_location_database_nothing_is_recorded(make_app, clock):
    from sqlalchemy import func, select

    from idp.storage.models_risk import RiskSignIn

    app = make_app(clock=clock)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    assert login(at(app, LONDON), "ann", GOOD).status_code == 302
    assert login(at(app, CHANGCHUN), "ann", GOOD).status_code == 302
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(RiskSignIn)) == 0
    assert events(svc, "impossible_travel") == events(svc, "new_country") == []
