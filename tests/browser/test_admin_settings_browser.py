"""The console's settings and audit screens in headless Chromium against a real HTTP server (one
server, one browser for the module): read the audit log with filters and open an event; change
the password policy and see it on the registration page without a restart; axe-core in light
and dark; no sideways scrolling at 390 px. Screenshots: artifacts/browser/admin-settings-*,
admin-audit-*."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from admin_kit import make_admin
from browser_kit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NARROW,
    WIDE,
    axe_violations,
    new_page,
    scrolls_sideways,
    shot,
)
from login_kit import GOOD
from support import base_overrides, init_database, require


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL) of one server for the module, with an administrator "root"."""
    from werkzeug.serving import make_server

    from idp.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    instance = tmp_path_factory.mktemp("instance")
    overrides = base_overrides(instance, issuer=f"http://127.0.0.1:{port}")
    init_database(overrides)
    app = create_app(overrides)
    make_admin(app.extensions["idp"], "root")
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{port}"
    httpd.shutdown()
    app.extensions["idp"].mail_queue.wait_idle(15)
    app.extensions["idp"].engine.dispose()


@pytest.fixture(scope="module")
def chromium():
    require(os.path.exists(CHROMIUM), "Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _signed_in(chromium, base: str, **kw):
    page = new_page(chromium, **kw)
    page.goto(base + "/login?next=/admin/")
    page.get_by_label("Username or e-mail").fill("root")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/admin/")
    return page


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
