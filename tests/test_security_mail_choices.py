"""Security mail preferences on /account/notifications: the kinds the policy lets a user turn
off are honoured (no new-device mail, no password-expiry warning once off), the policy-forced
kinds show checked and disabled with the reason, and a POST that tries to turn one off anyway is
refused with nothing changed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from login_kit import GOOD, csrf, make_user, outbox
from sqlalchemy import func, select

from idp.storage.models import AuditEvent
from idp.storage.models_devices import SecurityMailOptOut

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def app(make_app, clock):
    app = make_app(
        clock=clock,
        password_policy={"max_age_days": 90, "warn_days": 14},
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann", password_changed_at=svc.clock.utcnow() - timedelta(days=10))
    make_user(svc, "cy", password_changed_at=svc.clock.utcnow() - timedelta(days=10))
    return app


def sign_in(client, username="ann"):
    page = client.get("/login?prompt=login").get_data(as_text=True)
    resp = client.post(
        "/login", data={"csrf_token": csrf(page), "username": username, "password": GOOD}
    )
    assert resp.status_code == 302
    return resp


def optouts(svc):
    with svc.sessions() as db:
        return sorted(db.scalars(select(SecurityMailOptOut.kind)))


def subjects(svc):
    return [m["Subject"] for m in outbox(svc)]


def test_forced_kind_shown_disabled_and_a_post_turning_it_off_is_refused(app):
    svc = app.extensions["idp"]
    client = app.test_client()
    sign_in(client)
    page = client.get("/account/notifications").get_data(as_text=True)
    box = re.search(r'<input type="checkbox" id="kind-mfa_changes"[^>]*>', page).group(0)
    assert "checked" in box and "disabled" in box
    assert "security policy does not let you turn this off" in page
    assert "disabled" not in re.search(r'id="kind-new_device"[^>]*>', page).group(0)
    with svc.sessions() as db:
        audits = db.scalar(select(func.count()).select_from(AuditEvent))
    # Everything unticked, mfa_changes too (a hand-made POST: the page sends it hidden).
    resp = client.post("/account/notifications", data={"csrf_token": csrf(page)})
    assert resp.status_code == 400
    assert "cannot be turned off" in resp.get_data(as_text=True)
    assert optouts(svc) == []
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == audits
    # An unknown kind is refused the same way.
    resp = client.post(
        "/account/notifications",
        data={"csrf_token": csrf(page), "kind": ["mfa_changes", "everything"]},
    )
    assert resp.status_code == 400 and optouts(svc) == []
    # A stale form: refused, nothing stored.
    resp = client.post("/account/notifications", data={"kind": ["mfa_changes"]})
    assert resp.status_code == 400 and optouts(svc) == []


def test_opted_out_kinds_are_not_sent_and_opting_in_again_sends(app, clock):
    svc = app.extensions["idp"]
    client = app.test_client()
    sign_in(client)  # the first device; 80 days left: no expiry warning yet
    page = client.get("/account/notifications").get_data(as_text=True)
    resp = client.post(
        "/account/notifications", data={"csrf_token": csrf(page), "kind": ["mfa_changes"]}
    )
    assert resp.status_code == 302
    assert optouts(svc) == ["new_device", "password_expiry"]

    before = len(outbox(svc))
    phone = app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = IPHONE
    sign_in(phone)  # a new device: no mail, the user turned it off
    assert len(outbox(svc)) == before

    page = client.get("/account/notifications").get_data(as_text=True)
    client.post(
        "/account/notifications",
        data={"csrf_token": csrf(page), "kind": ["mfa_changes", "new_device"]},
    )
    assert optouts(svc) == ["password_expiry"]
    tablet = app.test_client()
    tablet.environ_base["HTTP_USER_AGENT"] = IPHONE.replace("iPhone", "iPad")
    sign_in(tablet)
    assert len([s for s in subjects(svc) if "New sign-in" in s]) == 1

    clock.advance(70 * 86400)  # 10 days left: the expiry warning is due
    sign_in(app.test_client())
    assert not [s for s in subjects(svc) if "expires in" in s]
    sign_in(app.test_client(), "cy")  # who did not opt out gets it
    assert [m["To"] for m in outbox(svc) if "expires in" in m["Subject"]] == ["cy@example.org"]


def test_policy_may_let_users_turn_off_mfa_mails(make_app, clock):
    app = make_app(clock=clock, notifications={"user_may_disable": ["mfa_changes"]})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    sign_in(client)
    page = client.get("/account/notifications").get_data(as_text=True)
    # Now new-device and expiry mails are the forced ones.
    assert "disabled" in re.search(r'id="kind-new_device"[^>]*>', page).group(0)
    resp = client.post(
        "/account/notifications",
        data={"csrf_token": csrf(page), "kind": ["new_device", "password_expiry"]},
    )
    assert resp.status_code == 302 and optouts(svc) == ["mfa_changes"]
    from idp.sso import notifications

    with svc.sessions() as db:
        uid = db.scalar(select(SecurityMailOptOut.user_id))
        assert not notifications.wants(db, svc.settings, uid, "mfa_changes")
        assert notifications.wants(db, svc.settings, uid, "new_device")
