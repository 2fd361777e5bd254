"""The account area in real headless Chromium against one real HTTP server for the module: the
overview's security cards, session cards with a named sign-out button per session at 390 px
without sideways scrolling, activity in German with translated event names, the TOTP setup page
with its "open in authenticator app" link; axe-core in light and dark on each page.
Screenshots go to artifacts/browser/account-*.png."""

from __future__ import annotations

import re

import pytest
from browser_kit import (
    NARROW,
    WIDE,
    axe_violations,
    chromium,
    new_page,
    running_server,
    scrolls_sideways,
    shot,
)
from login_kit import GOOD, make_user


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, base URL): one server for the module, with one person, Ann."""
    instance = tmp_path_factory.mktemp("account") / "instance"
    instance.mkdir()
    with running_server(instance) as (app, base):
        make_user(
            app.extensions["idp"],
            "ann",
            given_name="Ann",
            family_name="Lee",
            timezone="Europe/Berlin",
        )
        yield app, base


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


def _signed_in(browser, base: str, **options):
    # By field name, not label: pages in other languages sign in here too (locale="de-DE").
    page = new_page(browser, **options)
    page.goto(base + "/login")
    page.locator("input[name=username]").fill("ann")
    page.locator("input[name=password]").fill(GOOD)
    page.locator("input[type=submit][name=submit]").click()
    page.wait_for_url(base + "/account/")
    return page


def _clean(page) -> None:
    assert axe_violations(page) == []


def test_overview_cards_light_and_dark(served, chromium):
    _app, base = served
    page = _signed_in(chromium, base)
    assert page.get_by_role("heading", name="Ann Lee").is_visible()
    cards = page.locator("#security-status")
    assert cards.get_by_role("heading", name="Two-factor authentication").is_visible()
    assert cards.get_by_role("link", name="Set up two-factor authentication").is_visible()
    assert cards.get_by_role("heading", name="Active sessions").is_visible()
    _clean(page)
    shot(page, "account-overview")
    page.goto(base + "/account/profile")
    _clean(page)
    shot(page, "account-profile")
    page.context.close()
    dark = _signed_in(chromium, base, dark=True)
    _clean(dark)
    shot(dark, "account-overview-dark")
    dark.goto(base + "/account/mfa")
    _clean(dark)
    shot(dark, "account-signing-in-dark")
    dark.context.close()


def test_session_cards_named_buttons_at_390px(served, chromium):
    _app, base = served
    other = _signed_in(chromium, base)  # a second session to sign out
    page = _signed_in(chromium, base, viewport=NARROW)
    page.goto(base + "/account/sessions")
    assert page.get_by_text("This device").count() == 1
    buttons = page.get_by_role("button", name=re.compile(r"^Sign out .+ on .+"))
    assert buttons.count() >= 1
    assert "Chrome" in (buttons.first.text_content() or "")  # the device, not a bare "Sign out"
    assert not scrolls_sideways(page)
    _clean(page)
    shot(page, "account-sessions-narrow")
    page.once("dialog", lambda dialog: dialog.accept())  # form[data-confirm] asks first
    page.get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_selector(".alert.success")
    assert page.get_by_role("button", name=re.compile(r"^Sign out .+ on .+")).count() == 0
    other.goto(base + "/account/")
    assert "/login" in other.url  # that session really ended
    for path in ("/account/", "/account/profile", "/account/mfa", "/account/activity"):
        page.goto(base + path)
        assert not scrolls_sideways(page), path
    for context in (other.context, page.context):
        context.close()


def test_activity_in_german_and_dark(served, chromium):
    _app, base = served
    page = _signed_in(chromium, base, locale="de-DE", dark=True)
    page.goto(base + "/account/activity?kind=signins")
    row = page.locator('tr[data-action="login.success"]').first
    assert "Angemeldet" in row.inner_text()
    assert page.locator("html").get_attribute("lang") == "de"
    _clean(page)
    shot(page, "account-activity-de-dark")
    page.context.close()


def test_totp_setup_offers_the_app_link(served, chromium):
    _app, base = served
    page = _signed_in(chromium, base, viewport=NARROW)
    page.goto(base + "/account/mfa")
    page.get_by_role("link", name="Set up an authenticator app").click()
    page.locator("#reauth-password").fill(GOOD)
    page.locator("#reauth-password").press("Enter")
    page.wait_for_url(base + "/account/mfa/totp")
    link = page.get_by_role("link", name="Open in authenticator app")
    assert link.get_attribute("href").startswith("otpauth://totp/")
    assert page.get_by_text("FreeOTP").is_visible()
    assert page.get_by_label("Device name (for example “Work phone”)").is_visible()
    assert not scrolls_sideways(page)
    _clean(page)
    shot(page, "account-totp-setup-narrow")
    page.context.close()


@pytest.mark.parametrize("path", ["/account/apps", "/account/password"])
def test_other_pages_pass_axe_wide(served, chromium, path):
    _app, base = served
    page = _signed_in(chromium, base, viewport=WIDE)
    page.goto(base + path)
    _clean(page)
    page.context.close()
