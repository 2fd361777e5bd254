"""The "Network access" page in headless Chromium against a real HTTP server: from a role's
screen to its page, a bad entry marked beside its list, then saved and confirmed; axe-core
in light and dark; no sideways scrolling at 390 px. Screenshots: artifacts/browser/
admin-network-*."""

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
from ip_rules_kit import make_scopes, rules


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("instance")) as (app, base):
        make_admin(app.extensions["idp"], "root")
        scopes = make_scopes(app.extensions["idp"])
        yield app, base, scopes


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


def test_set_a_roles_network_access_from_its_screen(site, chromium):
    app, base, scopes = site
    page = sign_in(new_page(chromium), base, "root", next=f"/admin/roles/{scopes.role}")
    page.get_by_role("link", name="Network access").click()
    page.wait_for_url(f"{base}/admin/roles/{scopes.role}/network")
    page.get_by_label("Allowed networks (one per line; empty = any)").fill(
        "198.51.100.0/24\n10.1.2.3/8"
    )
    page.get_by_role("button", name="Save network access").click()
    error = page.locator("#allow-error").inner_text()
    assert error == "Line 2: 10.1.2.3/8 has bits set after the prefix; did you mean 10.0.0.0/8?"
    assert axe_violations(page) == []
    shot(page, "admin-network-error")
    page.get_by_label("Allowed networks (one per line; empty = any)").fill(
        "198.51.100.0/24\n10.0.0.0/8\n127.0.0.1"
    )
    page.get_by_role("button", name="Save network access").click()
    page.wait_for_url(f"{base}/admin/roles/{scopes.role}/network")
    assert page.get_by_role("status").first.inner_text().startswith("Network access saved")
    assert rules(app.extensions["idp"], "role", scopes.role)["allow"] == [
        "198.51.100.0/24",
        "10.0.0.0/8",
        "127.0.0.1/32",
    ]
    shot(page, "admin-network-saved")
    page.context.close()


@pytest.mark.parametrize(("viewport", "dark"), [(WIDE, True), (NARROW, False)])
def test_the_page_is_accessible_and_reflows(site, chromium, viewport, dark):
    app, base, scopes = site
    page = sign_in(new_page(chromium, viewport=viewport, dark=dark), base, "root", next="/admin/")
    page.goto(f"{base}/admin/clients/{scopes.client}/network")
    assert axe_violations(page) == []
    assert not scrolls_sideways(page)
    shot(page, "admin-network-" + ("dark" if dark else "light-narrow"))
    page.context.close()
