"""Real headless Chromium (Debian's, driven by Playwright) walks the hosted pages of a real HTTP
server: sign-in, a profile edit, sign-out, a password reset from the mailed link and a forced
password change. Screenshots go to artifacts/browser/."""

from __future__ import annotations

from urllib.parse import urlsplit

from browser_kit import shot
from login_kit import GOOD, link_in, make_user, outbox, user_row

NEW = "Fresh-Cactus-Lamp-42"


def test_sign_in_edit_profile_sign_out(server, page):
    app, base = server
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    page.goto(base + "/login")
    shot(page, "01-login")
    page.get_by_label("Username or e-mail").fill("ann")
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    assert page.get_by_role("alert").inner_text().startswith("The username or password")
    shot(page, "02-login-error")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/account/")
    page.get_by_role("link", name="Profile", exact=True).click()  # from the overview
    page.get_by_label("Given name").fill("Annabel")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save profile").click()
    assert "Your profile was saved." in page.content()
    shot(page, "03-account-profile")
    assert user_row(svc, "ann").given_name == "Annabel"
    page.goto(base + "/logout")
    page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in page.content()
    shot(page, "04-signed-out")


def test_reset_password_from_mailed_link(server, page):
    app, base = server
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    page.goto(base + "/login")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Username or e-mail").fill("ann@example.org")
    page.get_by_role("button", name="Send link").click()
    assert "Check your e-mail" in page.content()
    link = link_in(outbox(svc)[0], "/password/reset/")
    assert urlsplit(link).netloc == urlsplit(base).netloc
    page.goto(link)
    shot(page, "05-reset-form")
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("Repeat the new password").fill(NEW)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(base + "/login")
    page.get_by_label("Username or e-mail").fill("ann")
    page.get_by_label("Password", exact=True).fill(NEW)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/account/")
    shot(page, "06-after-reset")


def test_forced_password_change(server, page):
    app, base = server
    svc = app.extensions["idp"]
    make_user(svc, "bob", must_change_password=True)
    page.goto(base + "/login")
    page.get_by_label("Username or e-mail").fill("bob")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/login/step")
    shot(page, "07-forced-change")
    page.get_by_label("New password", exact=True).fill("password")
    page.get_by_label("Repeat the new password").fill("password")
    page.get_by_role("button", name="Set password").click()
    assert page.get_by_role("alert").count() >= 1
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("Repeat the new password").fill(NEW)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(base + "/account/")
    shot(page, "08-forced-change-done")
    assert user_row(svc, "bob").must_change_password is False
