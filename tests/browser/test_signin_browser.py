"""The sign-in pages in real Chromium: show / hide on every password field (value kept, type
flips, the button named and aria-pressed), the language switcher (a choice remembered across
pages), the live password checklist, and "not you?" starting afresh."""

from __future__ import annotations

import pytest
from browser_kit import (
    NARROW,
    axe_violations,
    chromium,
    new_page,
    running_server,
    scrolls_sideways,
    shot,
)
from login_kit import GOOD, make_user


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    instance = tmp_path_factory.mktemp("signin-browser")
    with running_server(
        instance,
        registration={"enabled": True},
        password_policy={"require_digit": True, "min_length": 12},
    ) as (app, base):
        svc = app.extensions["idp"]
        make_user(svc, "ann")
        make_user(svc, "forced", must_change_password=True, given_name="Fay", family_name="Orr")
        yield app, base


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _toggle_works(page, label: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill("Secret-Value-1")
    button = page.get_by_role("button", name="Show password").first
    assert field.get_attribute("type") == "password"
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    assert field.get_attribute("type") == "text" and field.input_value() == "Secret-Value-1"
    hide = page.get_by_role("button", name="Hide password").first
    assert hide.get_attribute("aria-pressed") == "true"
    hide.click()
    assert field.get_attribute("type") == "password" and field.input_value() == "Secret-Value-1"


def test_show_hide_on_every_password_field(site, browser):
    app, base = site
    page = new_page(browser)
    for path, label in (
        ("/login", "Password"),
        ("/register", "Password"),
        ("/login/first", "Control word from your organisation"),
    ):
        page.goto(base + path)
        _toggle_works(page, label)
        assert (
            page.locator('input[type="password"]').count() == page.locator("button.reveal").count()
        ), path
    # The set-password step after the password.
    page.goto(base + "/login")
    page.get_by_label("Username or e-mail").fill("forced")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/step")
    _toggle_works(page, "New password")
    page.context.close()


def test_language_switcher_is_remembered_across_pages(site, browser):
    app, base = site
    page = new_page(browser, locale="en-US")
    page.goto(base + "/password/reset")
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("Language").select_option("de")  # idp.js submits on change
    page.wait_for_url(base + "/password/reset")
    page.wait_for_function("document.documentElement.lang === 'de'")
    page.goto(base + "/login")
    assert page.locator("html").get_attribute("lang") == "de"
    cookie = next(c for c in page.context.cookies() if c["name"] == "idp_lang")
    assert cookie["value"] == "de" and cookie["sameSite"] == "Lax"
    shot(page, "signin-language-de")
    page.context.close()


def test_password_checklist_ticks_as_the_user_types(site, browser):
    app, base = site
    page = new_page(browser, viewport=NARROW)
    page.goto(base + "/register")
    rules = page.locator("#password-rules li[data-rule]")
    length = page.locator('#password-rules li[data-rule="min_length"]')
    digit = page.locator('#password-rules li[data-rule="require_digit"]')
    assert rules.count() >= 3 and page.locator("#password-rules li.met").count() == 0
    assert "reuse" not in page.locator("#password-rules").inner_text()  # no history rule here
    page.get_by_label("Password", exact=True).fill("abc")
    assert "met" not in (length.get_attribute("class") or "")
    page.get_by_label("Password", exact=True).fill("long-enough-words")
    assert "met" in length.get_attribute("class") and "met" not in (
        digit.get_attribute("class") or ""
    )
    page.get_by_label("Password", exact=True).fill("long-enough-words-7")
    assert "met" in digit.get_attribute("class")
    assert digit.locator(".state").inner_text() == "(done)"
    # The username is a personal rule: typing it into the password unticks that rule.
    page.get_by_label("Username").fill("walrus")
    page.get_by_label("Password", exact=True).fill("walrus-long-enough-7")
    personal = page.locator('#password-rules li[data-rule="personal"]')
    assert "met" not in (personal.get_attribute("class") or "")
    shot(page, "signin-checklist-narrow")
    assert axe_violations(page) == [] and not scrolls_sideways(page)
    page.context.close()


def test_not_you_starts_a_fresh_sign_in(site, browser):
    app, base = site
    page = new_page(browser)
    page.goto(base + "/login")
    page.get_by_label("Username or e-mail").fill("forced")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/step")
    assert "Signed in as Fay Orr (forced)." in page.locator("main").inner_text()
    shot(page, "signin-not-you")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Not you? Start again").click()
    page.wait_for_url(base + "/login")
    page.goto(base + "/login/step")
    assert "expired" in page.locator("main").inner_text()
    page.context.close()
