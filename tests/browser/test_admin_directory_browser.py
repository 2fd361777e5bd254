"""The console's directory screens in Debian's Chromium against a real HTTP server: granting a
temporary role, approving an access request, moving a department (and the cycle refusal shown
beside the field), axe-core on every directory page in light and dark, and no sideways
scrolling at 390 px. One server and one browser for the whole module; screenshots go to
artifacts/browser/admin-directory-*.png."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser_kit import (
    NARROW,
    axe_violations,
    chromium,
    new_page,
    running_server,
    scrolls_sideways,
    shot,
    sign_in,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "admin"))

from admin_kit import make_admin  # noqa: E402
from directory_kit import seed  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL, seeded ids): one server for the module."""
    with running_server(tmp_path_factory.mktemp("directory-browser")) as (app, base):
        svc = app.extensions["idp"]
        make_admin(svc)
        world = seed(svc)
        yield app, base, world


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


def _signed_in(chromium, base, **kw):
    return sign_in(new_page(chromium, **kw), base, "root", next="/admin/")


@pytest.fixture(scope="module")
def admin_page(site, chromium):
    page = _signed_in(chromium, site[1])
    yield page
    page.context.close()


def test_grant_a_temporary_role(site, admin_page):
    _app, base, _world = site
    page = admin_page
    page.goto(base + "/admin/access")
    page.get_by_role("link", name="Requests and grants").wait_for()
    form = page.get_by_role("form", name="Grant a temporary role")
    form.get_by_label("Username").fill("bob")
    form.get_by_label("Role").select_option(label="Viewer")
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    form.get_by_label("Until (UTC)").fill(until)
    form.get_by_role("button", name="Grant role").click()
    page.get_by_text("bob holds the role until the time given.").wait_for()
    assert page.get_by_role("button", name="Revoke role Viewer of bob").is_visible()
    shot(page, "admin-directory-temporary-grant")
    assert axe_violations(page) == []


def test_approve_an_access_request(site, admin_page):
    _app, base, _world = site
    page = admin_page
    page.goto(base + "/admin/access")
    page.get_by_label("Reason for the decision on alice's request for role Viewer").fill(
        "quarterly audit"
    )
    page.get_by_role("button", name="Approve alice: role Viewer").click()
    page.get_by_text("Request approved.").wait_for()
    assert page.get_by_role("button", name="Revoke role Viewer of alice").is_visible()
    shot(page, "admin-directory-request-approved")


def test_move_a_department_and_see_a_cycle_refused(site, admin_page):
    _app, base, world = site
    page = admin_page
    page.goto(f"{base}/admin/org/departments/{world.sales}")
    page.get_by_label("New place").select_option(label="Ops")
    page.get_by_role("button", name="Move department").click()
    page.get_by_text("Department moved.").wait_for()
    page.goto(f"{base}/admin/org/companies/{world.acme}")
    tree = page.get_by_role("list", name="Below Ops")
    assert tree.get_by_role("link", name="Sales").is_visible()
    shot(page, "admin-directory-org-tree")
    page.goto(f"{base}/admin/org/departments/{world.sales}")
    page.get_by_label("New place").select_option(label="— — EMEA")
    page.get_by_role("button", name="Move department").click()
    error = page.locator("#parent_id-error")
    error.wait_for()
    assert "cycle" in error.inner_text()
    place = page.get_by_label("New place")
    assert place.get_attribute("aria-invalid") == "true"
    assert place.input_value() == str(world.emea)  # the refused choice stays for correction
    shot(page, "admin-directory-move-cycle")


def _pages(world) -> dict[str, str]:
    return {
        "groups": "/admin/groups",
        "group": f"/admin/groups/{world.staff}",
        "roles": "/admin/roles",
        "role": f"/admin/roles/{world.viewer}",
        "permission-groups": "/admin/permission-groups",
        "access": "/admin/access",
        "org": "/admin/org",
        "company": f"/admin/org/companies/{world.acme}",
        "department": f"/admin/org/departments/{world.emea}",
    }


def test_every_directory_page_passes_axe_in_light_and_dark(site, chromium, admin_page):
    _app, base, world = site
    dark = _signed_in(chromium, base, dark=True)
    try:
        for name, path in _pages(world).items():
            for page, scheme in ((admin_page, "light"), (dark, "dark")):
                page.goto(base + path)
                assert axe_violations(page) == [], f"{name} ({scheme})"
            shot(dark, f"admin-directory-{name}-dark")
    finally:
        dark.context.close()


def test_no_sideways_scrolling_at_390_px(site, chromium):
    _app, base, world = site
    narrow = _signed_in(chromium, base, viewport=NARROW)
    try:
        for name, path in _pages(world).items():
            narrow.goto(base + path)
            assert not scrolls_sideways(narrow), name
        shot(narrow, "admin-directory-department-narrow")
    finally:
        narrow.context.close()
