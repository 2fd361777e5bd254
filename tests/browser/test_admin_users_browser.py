"""The console's user screens in Debian's Chromium against a real HTTP server (one server and
one browser for the module): creating a user through to their first sign-in (the first-access
mail from the outbox, a password set, signed in), finding and editing users with the filters,
ending a user's sessions; axe-core in light and dark, no sideways scrolling at 390 px.
Screenshots go to artifacts/browser/ (admin-users-list is the README's)."""

from __future__ import annotations

from datetime import date

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
    sign_in,
)
from login_kit import link_in, make_user, outbox, user_row

from idp.storage.directory import Directory

NEW = "Fresh-Cactus-Lamp-42"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL): one served app for the module, with an administrator and people."""
    instance = tmp_path_factory.mktemp("admin-users") / "instance"
    instance.mkdir()
    with running_server(instance) as (app, base):
        _people(app.extensions["idp"])
        yield app, base


def _people(svc) -> None:
    from admin_kit import make_admin

    make_admin(svc, "root", given_name="Rita", family_name="Root")
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        d.create_department(acme, "Engineering")
        d.create_department(acme, "Sales")
        d.create_position(acme, "Engineer")
    colours = ["#d94f00", "#2b7a0b", "#1d4ed8", "#9333ea", None, "#be123c"]
    for i, (user, given, family) in enumerate(
        [
            ("ann", "Ann", "Archer"),
            ("bob", "Bob", "Baker"),
            ("cid", "Cid", "Cole"),
            ("dan", "Dan", "Drake"),
            ("eve", "Eve", "Evans"),
            ("fay", "Fay", "Fisher"),
        ]
    ):
        make_user(
            svc,
            user,
            given_name=given,
            family_name=family,
            color=colours[i],
            start_date=date(2020 + i, 1, 1),
            status="locked" if user == "dan" else "active",
        )
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.company("acme")
        for name in ("ann", "bob"):
            d.place_user(
                d.user_by_username(name),
                company=acme,
                department=d.department("acme/Engineering"),
                position=d.position(acme, "Engineer"),
            )


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def admin_page(site, chromium):
    _, base = site
    page = new_page(chromium, viewport=WIDE)
    sign_in(page, base, "root")
    yield page
    page.context.close()


def test_create_a_user_through_to_their_first_sign_in(site, chromium, admin_page):
    app, base = site
    svc = app.extensions["idp"]
    page = admin_page
    page.goto(base + "/admin/users")
    page.get_by_role("link", name="New user").first.click()
    page.wait_for_url(base + "/admin/users/new")
    assert axe_violations(page) == []
    page.get_by_label("Username").fill("gil")
    page.get_by_label("E-mail").fill("gil@example.org")
    page.get_by_label("First name").fill("Gil")
    page.get_by_label("Last name").fill("Green")
    page.get_by_label("Company").select_option("acme")
    page.get_by_role("button", name="Update choices").click()  # the company's departments
    page.get_by_label("Department").select_option(label="Sales")
    page.get_by_label("First working day").fill("2026-02-01")
    page.get_by_label("Mail a link to set a password").check()
    shot(page, "admin-users-new")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_url(f"{base}/admin/users/*")
    assert "The user gil was created." in page.content()
    shot(page, "admin-users-created")
    gil = user_row(svc, "gil")
    assert gil.department_id is not None and gil.start_date == date(2026, 2, 1)
    # The new user follows the link from their mail, chooses a password and signs in.
    link = link_in(outbox(svc)[-1], "/password/reset/")
    newcomer = new_page(chromium)
    try:
        newcomer.goto(link)
        newcomer.get_by_label("New password", exact=True).fill(NEW)
        newcomer.get_by_label("Repeat the new password").fill(NEW)
        newcomer.get_by_role("button", name="Set password").click()
        newcomer.wait_for_url(base + "/login")
        sign_in(newcomer, base, "gil", NEW)
        assert "Gil" in newcomer.content()
    finally:
        newcomer.context.close()


def test_find_and_edit_users_with_the_filters(site, chromium, admin_page):
    _, base = site
    page = admin_page
    page.goto(base + "/admin/users")
    shot(page, "admin-users-list")
    assert axe_violations(page) == []
    page.get_by_label("Company").select_option("acme")
    page.get_by_role("button", name="Apply filters").click()
    table = page.locator("table.users-list").inner_text()
    assert "Ann Archer" in table and "Bob Baker" in table and "Cid Cole" not in table
    page.get_by_label("Department").select_option(label="Engineering")
    page.get_by_role("button", name="Apply filters").click()
    assert page.locator("table.users-list tbody tr").count() == 2
    page.get_by_label("Search").fill("arch")
    page.get_by_role("button", name="Apply filters").click()
    assert page.locator("table.users-list tbody tr").count() == 1
    page.get_by_label("Select Ann Archer").check()
    page.get_by_role("link", name="Ann Archer").click()
    page.wait_for_url(f"{base}/admin/users/*")
    assert axe_violations(page) == []
    page.get_by_label("Display name").fill("Annie Archer")
    page.get_by_role("button", name="Save profile").click()
    assert "The profile was saved." in page.content()
    assert page.get_by_role("heading", name="Annie Archer", level=1).is_visible()
    shot(page, "admin-users-user")
    # A bad date is an error beside its field; nothing saved.
    page.get_by_label("Last working day").fill("2019-01-01")
    page.get_by_role("button", name="Save profile").click()
    assert "The end date is before the start date." in page.content()
    assert axe_violations(page) == []


def test_end_a_users_sessions(site, chromium, admin_page):
    app, base = site
    svc = app.extensions["idp"]
    context = chromium.new_context(user_agent=CHROME_UA, locale="en-US")
    try:
        for _ in range(2):
            visitor = context.new_page()
            sign_in(visitor, base, "eve")
            context.clear_cookies()
        page = admin_page
        page.goto(f"{base}/admin/users/{user_row(svc, 'eve').uuid}")
        ends = page.get_by_role("button", name="End session Chrome 120 on Linux")
        assert ends.count() == 2
        ends.first.click()
        assert "The session was ended." in page.content()
        assert page.get_by_role("button", name="End session Chrome 120 on Linux").count() == 1
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="End all sessions").click()
        page.wait_for_load_state()
        assert "The user is not signed in anywhere." in page.content()
        shot(page, "admin-users-sessions-ended")
    finally:
        context.close()


def test_dark_and_narrow(site, chromium, admin_page):
    app, base = site
    svc = app.extensions["idp"]
    ann = user_row(svc, "ann")
    signed_in = admin_page.context.storage_state()  # the administrator's cookies
    for viewport, dark, name in ((WIDE, True, "dark"), (NARROW, False, "narrow")):
        context = chromium.new_context(
            viewport=viewport,
            color_scheme="dark" if dark else "light",
            locale="en-US",
            storage_state=signed_in,
        )
        page = context.new_page()
        try:
            for path, label in (
                ("/admin/users", "list"),
                (f"/admin/users/{ann.uuid}", "user"),
                ("/admin/users/new", "new"),
            ):
                page.goto(base + path)
                assert axe_violations(page) == [], (name, path)
                if viewport is NARROW:
                    assert not scrolls_sideways(page), path
                shot(page, f"admin-users-{label}-{name}")
        finally:
            page.context.close()
