"""Onboarding in real headless Chromium against a real HTTP server: the first-login magic link
(e-mail plus the tenant's control word, the link read from the outbox .eml file), self-
registration with e-mail confirmation and administrator approval, and the pages in German for a
German-speaking browser. Screenshots go to artifacts/browser/."""

from __future__ import annotations

from urllib.parse import urlsplit

from browser_kit import shot
from login_kit import company_with_control_word, link_in, make_user, outbox, user_row

NEW = "Fresh-Cactus-Lamp-42"


def _sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_first_login_magic_link(server, page):
    app, base = server
    svc = app.extensions["idp"]
    cid = company_with_control_word(app, "Blue Harbour")
    make_user(svc, "newbie", password=None, company_id=cid, given_name="Nina")
    page.goto(base + "/login")
    page.get_by_role("link", name="First time here?").click()
    page.wait_for_url(base + "/login/first")
    page.get_by_label("E-mail address").fill("newbie@example.org")
    page.get_by_label("Control word from your organisation").fill("Red Harbour")
    page.get_by_role("button", name="Send sign-in link").click()
    # A wrong control word gets the same answer and sends nothing.
    assert "Check your e-mail" in page.content() and outbox(svc) == []
    page.goto(base + "/login/first")
    page.get_by_label("E-mail address").fill("newbie@example.org")
    page.get_by_label("Control word from your organisation").fill("blue  HARBOUR")
    shot(page, "10-first-login-form")
    page.get_by_role("button", name="Send sign-in link").click()
    assert "Check your e-mail" in page.content()
    shot(page, "11-first-login-mail-sent")
    (mail,) = outbox(svc)
    assert mail["To"] == "newbie@example.org" and mail["Subject"] == "Your sign-in link"
    link = link_in(mail, "/login/magic/")
    assert urlsplit(link).netloc == urlsplit(base).netloc  # built from the issuer
    page.goto(link)
    shot(page, "12-magic-link-confirm")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base + "/login/step")
    assert "Welcome! Please choose your password." in page.content()
    shot(page, "13-magic-link-choose-password")
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("Repeat the new password").fill(NEW)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(base + "/account/")
    shot(page, "14-magic-link-signed-in")
    row = user_row(svc, "newbie")
    assert row.email_verified is True and row.password_hash is not None
    # The link was single-use.
    page.goto(link)
    assert "This link has expired" in page.content()
    # Signed out, the new password works on the normal sign-in page.
    page.goto(base + "/logout")
    page.get_by_role("button", name="Sign out").click()
    _sign_in(page, base, "newbie", NEW)
    page.wait_for_url(base + "/account/")


def test_self_registration_with_admin_approval(serve, browser):
    app, base = serve(
        registration={
            "enabled": True,
            "require_approval": True,
            "require_email_verification": True,
            "admin_emails": ["boss@example.org"],
        }
    )
    svc = app.extensions["idp"]
    visitor = browser.new_context(locale="en-US").new_page()
    visitor.goto(base + "/login")
    visitor.get_by_role("link", name="Create an account").click()
    visitor.wait_for_url(base + "/register")
    visitor.get_by_label("Username").fill("reg1")
    visitor.get_by_label("E-mail address").fill("reg1@example.org")
    visitor.get_by_label("Given name").fill("Regina")
    visitor.get_by_label("Family name").fill("One")
    visitor.get_by_label("Password", exact=True).fill(NEW)
    visitor.get_by_label("Repeat the password").fill(NEW)
    shot(visitor, "20-register-form")
    visitor.get_by_role("button", name="Create account").click()
    assert "Please confirm your address" in visitor.content()
    shot(visitor, "21-register-created")
    assert user_row(svc, "reg1").status == "pending"
    # Pending: sign-in is refused with a message that explains it.
    _sign_in(visitor, base, "reg1", NEW)
    assert "not active yet" in visitor.get_by_role("alert").inner_text()
    (confirm,) = outbox(svc)
    visitor.goto(link_in(confirm, "/verify-email/"))
    visitor.get_by_role("button", name="Confirm").click()
    assert "An administrator will review your account soon." in visitor.content()
    shot(visitor, "22-register-email-confirmed")
    # The administrator, in another browser, opens the link mailed to them.
    notice = outbox(svc)[-1]
    assert notice["To"] == "boss@example.org" and "reg1" in notice["Subject"]
    admin = browser.new_context(locale="en-US").new_page()
    admin.goto(link_in(notice, "/register/approve/"))
    assert "reg1@example.org" in admin.content()
    shot(admin, "23-approve-account")
    admin.get_by_role("button", name="Approve").click()
    assert "The account was approved." in admin.content()
    shot(admin, "24-approved")
    assert user_row(svc, "reg1").status == "active"
    welcome = outbox(svc)[-1]
    assert welcome["To"] == "reg1@example.org" and welcome["Subject"] == "Your account was approved"
    _sign_in(visitor, base, "reg1", NEW)
    visitor.wait_for_url(base + "/account/")
    shot(visitor, "25-registered-signed-in")
    visitor.goto(base + "/account/profile")
    assert visitor.get_by_label("Given name").input_value() == "Regina"


def test_pages_in_german_for_a_german_browser(server, browser):
    app, base = server
    svc = app.extensions["idp"]
    make_user(svc, "greta")
    page = browser.new_context(locale="de-DE").new_page()
    page.goto(base + "/login")
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.title().startswith("Anmelden")
    page.get_by_label("Benutzername oder E-Mail").fill("greta")
    page.get_by_label("Passwort", exact=True).fill("falsch-falsch")
    page.get_by_role("button", name="Anmelden", exact=True).click()
    assert page.get_by_role("alert").inner_text() == "Benutzername oder Passwort ist nicht korrekt."
    shot(page, "30-login-german")
    page.get_by_role("link", name="Passwort vergessen?").click()
    page.get_by_label("Benutzername oder E-Mail").fill("greta@example.org")  # reset takes either
    page.get_by_role("button", name="Link senden").click()
    assert "Prüfen Sie Ihre E-Mails" in page.content()
    shot(page, "31-reset-sent-german")
    # Greta has no profile language; she asked from a German browser, so the mail is German.
    mail = outbox(svc)[-1]
    assert mail["Subject"] == "Passwort zurücksetzen"
