"""Adaptive authentication (docs/risk.md): every sign-in gets a risk score from its device,
place, velocity and recent failures; at ``step_up_at`` a second factor is asked even where the
MFA policy would not (a remembered device), at ``deny_at`` the sign-in is refused without a
session, at ``notify_at`` a ``security.risky_sign_in`` row is written; the reasons go into the
sign-in's audit row."""

from __future__ import annotations

import pytest
from login_kit import GOOD, counts, login, make_user, post_form
from mfa_kit import audits, code_at, enrol_totp, signed_in, submit_code

from idp.sso.sessions import COOKIE

LONDON, LINKOPING = "81.2.69.10", "89.160.20.5"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
FIREFOX_NEXT = "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
REFUSED = "This sign-in was refused because it looks unusual"


def at(client, ip: str, ua: str = FIREFOX):
    client.environ_base["REMOTE_ADDR"] = ip
    client.environ_base["HTTP_USER_AGENT"] = ua
    return client


def again(client, username: str):
    """Sign in once more from a browser that holds a session (the form of prompt=login)."""
    data = {"username": username, "password": GOOD}
    return post_form(client, "/login", data, page="/login?prompt=login")


def _risk_of_last(svc, action: str):
    return audits(svc, action)[-1].details.get("risk")


@pytest.mark.parametrize(("step_up_at", "asked"), [(20, True), (21, False)])
def test_new_device_steps_up_past_a_remembered_device(make_app, clock, step_up_at, asked):
    risk = {"adaptive": True, "step_up_at": step_up_at, "notify_at": step_up_at, "deny_at": 90}
    app = make_app(clock=clock, risk=risk, mfa={"remember_days": 30})
    svc = app.extensions["idp"]
    t = enrol_totp(svc, make_user(svc, "ann"))
    client = at(app.test_client(), LONDON)
    assert login(client, "ann", GOOD).headers["Location"] == "/login/step"
    assert submit_code(client, code_at(t, clock), remember=True).status_code == 302
    assert _risk_of_last(svc, "login.success") == {"score": 0, "reasons": []}
    clock.advance(60)
    # The remembered device stands in for the second factor; a newer browser version from
    # another address in the same /24 is the same device.
    at(client, "81.2.69.200", FIREFOX_NEXT)
    assert again(client, "ann").headers["Location"] == "/account/"
    assert _risk_of_last(svc, "login.success")["score"] == 0
    clock.advance(60)
    # The device cookie turns up on a phone in another network: a new device for ann.
    at(client, LINKOPING, IPHONE)
    resp = again(client, "ann")
    expected = {"score": 20, "reasons": [{"factor": "new_device", "points": 20}]}
    risky = audits(svc, "security.risky_sign_in")
    if not asked:  # one point below the threshold: the remembered device still counts
        assert resp.headers["Location"] == "/account/"
        assert _risk_of_last(svc, "login.success") == expected
        assert risky == []
        return
    assert resp.headers["Location"] == "/login/step"
    clock.advance(30)
    assert submit_code(client, code_at(t, clock)).status_code == 302
    assert signed_in(client)
    assert _risk_of_last(svc, "login.success") == expected
    assert len(risky) == 1 and risky[0].details["verdict"] == "step_up"
    assert risky[0].details["reasons"] == expected["reasons"]


@pytest.mark.parametrize("without_factor", ["deny", "allow"])
def test_step_up_for_a_user_without_a_second_factor(make_app, clock, without_factor):
    risk = {
        "adaptive": True,
        "step_up_at": 20,
        "notify_at": 20,
        "step_up_without_factor": without_factor,
    }
    app = make_app(clock=clock, risk=risk)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    assert login(at(app.test_client(), LONDON), "ann", GOOD).status_code == 302
    clock.advance(60)
    before = counts(svc)
    client = at(app.test_client(), LINKOPING, IPHONE)
    resp = login(client, "ann", GOOD)
    risky = audits(svc, "security.risky_sign_in")
    assert len(risky) == 1 and risky[0].details["no_second_factor"] is True
    if without_factor == "allow":
        assert resp.headers["Location"] == "/account/" and signed_in(client)
        assert risky[0].details["verdict"] == "step_up"
        return
    assert resp.status_code == 403 and REFUSED in resp.get_data(as_text=True)
    assert client.get_cookie(COOKIE) is None and counts(svc)["sessions"] == before["sessions"]
    denied = audits(svc, "login.risk_denied")
    assert len(denied) == 1 and denied[0].details["no_second_factor"] is True
    assert denied[0].details["risk"]["reasons"] == [{"factor": "new_device", "points": 20}]


def test_recent_failures_deny_at_the_threshold_and_not_below(make_app, clock):
    risk = {"adaptive": True, "deny_at": 15, "notify_at": 15, "step_up_at": 0}
    app = make_app(clock=clock, risk=risk)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    assert login(at(app.test_client(), LONDON), "ann", GOOD).status_code == 302
    for _ in range(2):
        assert login(at(app.test_client(), LONDON), "ann", "wrong").status_code == 401
    # Two failures: below account_failures.
    assert login(at(app.test_client(), LONDON), "ann", GOOD).status_code == 302
    assert _risk_of_last(svc, "login.success") == {"score": 0, "reasons": []}
    assert login(at(app.test_client(), LONDON), "ann", "wrong").status_code == 401  # the third
    before = counts(svc)
    fresh = at(app.test_client(), LONDON)
    resp = login(fresh, "ann", GOOD)
    assert resp.status_code == 403 and REFUSED in resp.get_data(as_text=True)
    assert fresh.get_cookie(COOKIE) is None and counts(svc)["sessions"] == before["sessions"]
    denied = audits(svc, "login.risk_denied")
    assert len(denied) == 1
    assert denied[0].details["risk"] == {
        "score": 15,
        "reasons": [{"factor": "account_failures", "points": 15}],
    }
    assert audits(svc, "security.risky_sign_in")[0].details["verdict"] == "deny"
    clock.advance(60 * 60 + 1)  # failure_window_minutes later the failures no longer count
    assert login(at(app.test_client(), LONDON), "ann", GOOD).status_code == 302


def test_adaptive_off_by_default_writes_no_score(make_app, clock):
    app = make_app(clock=clock)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    assert login(at(app.test_client(), LONDON), "ann", GOOD).status_code == 302
    assert login(at(app.test_client(), LINKOPING, IPHONE), "ann", GOOD).status_code == 302
    assert "risk" not in audits(svc, "login.success")[-1].details
    assert audits(svc, "security.risky_sign_in") == []


def test_the_device_cookie_makes_a_known_device_on_any_network(make_app, clock):
    """A laptop that signed in at home is the same device at a café in another country: its
    device cookie says so, where the same-network rule alone would call it new."""
    risk = {"adaptive": True, "step_up_at": 20, "notify_at": 20, "deny_at": 90}
    app = make_app(clock=clock, risk=risk)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    laptop = at(app.test_client(), LONDON)
    assert login(laptop, "ann", GOOD).headers["Location"] == "/account/"
    clock.advance(60)
    at(laptop, LINKOPING)
    assert again(laptop, "ann").headers["Location"] == "/account/"
    assert _risk_of_last(svc, "login.success") == {"score": 0, "reasons": []}
    # Another kind of device on that network, without the cookie: a new device (ann has no
    # second factor to step up with, so the default refuses).
    clock.advance(60)
    phone = at(app.test_client(), LINKOPING, IPHONE)
    assert login(phone, "ann", GOOD).status_code == 403
    new_device = {"score": 20, "reasons": [{"factor": "new_device", "points": 20}]}
    assert _risk_of_last(svc, "login.risk_denied") == new_device
