"""``[admin] require_mfa`` (idp/web/admin/guard.py, item 4): a single-factor session is sent
through the sign-in hub's step-up (password and second factor, then back to the page), and an
administrator without any second factor to the account's MFA page first."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from admin_kit import make_admin, signed_in
from login_kit import GOOD, login
from mfa_kit import code_at, enrol_totp, submit_code


def test_an_admin_without_a_second_factor_is_sent_to_enrol(make_app):
    app = make_app(admin={"require_mfa": True})
    make_admin(app.extensions["idp"])
    client = signed_in(app)
    resp = client.get("/admin/users")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/account/mfa"
    page = client.get("/account/mfa").get_data(as_text=True)
    assert "The admin console needs a second factor" in page


def test_a_single_factor_session_steps_up_and_comes_back(make_app, clock):
    app = make_app(admin={"require_mfa": True})
    svc = app.extensions["idp"]
    admin_id = make_admin(svc)
    client = signed_in(app)  # password only: no factor yet
    totp = enrol_totp(svc, admin_id)  # set up afterwards: the session is still single-factor
    resp = client.get("/admin/users?q=ann")
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/login"
    rid = parse_qs(target.query)["r"][0]
    assert client.get("/admin/users").status_code == 302  # nothing of the console meanwhile
    resp = login(client, "root", GOOD, r=rid)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/step")
    resp = submit_code(client, code_at(totp, svc.clock))
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/admin/users?q=ann"
    assert client.get("/admin/users?q=ann").status_code == 200


def test_without_the_setting_a_password_session_opens_the_console(app):
    make_admin(app.extensions["idp"])
    assert signed_in(app).get("/admin/users").status_code == 200
