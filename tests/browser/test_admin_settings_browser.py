"""The console's settings and audit screens in headless Chromium against a real HTTP server (one
server, one browser for the module): read the audit log with filters and open an event; change
the password policy and see it on the registration page without a restart; axe-core in light
and dark; no sideways scrolling at 390 px. Screenshots: artifacts/browser/admin-settings-*,
admin-audit-*."""

from __future__ import annotations

import pytest
from admin_kit import make_admin
from browser_kit import (
    NARROW,
    WIDE,
    axe_violations,
    chromium,
    new_page,
    running_server,
    scrolls_sideways,
    shot,
    sign_in,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL) of one server for the module, with an administrator "root"."""
    with running_server(tmp_path_factory.mktemp("instance")) as (app, base):
        make_admin(app.extensions["idp"], "root")
        yield app, base


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


def _signed_in(chromium, base: str, **kw):
    return sign_in(new_page(chromium, **kw), base, "root", next="/admin/")


def test_change_the_password_policy_and_see_it_on_the_registration_page(site, chromium):
    app, base = site
    page = _signed_in(chromium, base)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(base + "/admin/settings")
    shot(page, "admin-settings-page")
    registration = page.locator("#registration")
    registration.get_by_label("Visitors may create an account").check()
    registration.get_by_role("button", name="Save Registration").click()
    page.wait_for_url(base + "/admin/settings#registration")
    assert page.get_by_role("status").first.inner_text().startswith("Registration saved")

    policy = page.locator("#password_policy")
    policy.get_by_label("Minimum length").fill("abc")
    policy.get_by_role("button", name="Save Password policy").click()
    assert page.locator("#password-policy-min-length-error").inner_text() == "Enter a whole number."
    assert axe_violations(page) == []
    shot(page, "admin-settings-error")
    policy.get_by_label("Minimum length").fill("16")
    policy.get_by_role("button", name="Save Password policy").click()
    page.wait_for_url(base + "/admin/settings#password_policy")
    assert "Stored in the database." in policy.inner_text()

    visitor = new_page(chromium)
    visitor.goto(base + "/register")
    assert "Use at least 16 characters." in visitor.locator("#password-rules").inner_text()
    shot(visitor, "admin-settings-register-page")
    visitor.context.close()
    page.context.close()


def test_read_the_audit_log_with_filters_and_open_an_event(site, chromium):
    app, base = site
    page = _signed_in(chromium, base)
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(base + "/admin/audit")
    page.get_by_label("Actor (username or id)").fill("root")
    page.get_by_label("Event").select_option("config.policy_set")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.stack tbody tr")
    assert rows.count() == 2  # enabled registration, min_length
    assert "password_policy.min_length" in rows.first.inner_text()
    shot(page, "admin-audit-filtered")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Details of event").first.click()
    page.wait_for_url(f"{base}/admin/audit/*")
    details = page.locator("section", has_text="Details").last.inner_text()
    assert "new" in details and "16" in details
    shot(page, "admin-audit-event")
    assert axe_violations(page) == []
    page.context.close()


@pytest.mark.parametrize(("viewport", "dark"), [(WIDE, True), (NARROW, False)])
def test_console_pages_are_accessible_and_reflow(site, chromium, viewport, dark):
    app, base = site
    page = _signed_in(chromium, base, viewport=viewport, dark=dark)
    mode = ("dark" if dark else "light") + ("-narrow" if viewport is NARROW else "")
    for path, name in [
        ("/admin/settings", "settings"),
        ("/admin/audit", "audit"),
        ("/admin/audit/1", "event"),
    ]:
        page.goto(base + path)
        assert axe_violations(page) == [], path
        assert not scrolls_sideways(page), path
        shot(page, f"admin-{name}-{mode}")
    page.context.close()
