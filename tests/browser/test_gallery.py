"""The gallery: every signed-out page state, every account page and every console screen, at
1280x900 and 390x844, in light and dark, in English and German: a screenshot each
(artifacts/browser/gallery-…), no serious or critical axe-core violation, and no sideways
scrolling down to 320 px.

Pages are data: ``SIGNED_OUT`` and ``SIGNED_IN`` list (name, how to reach it); the console's
pages are in ``SIGNED_IN`` too (the signed-in person is an Administrator). One server and one
Chromium for the module; one browser context per colour scheme and language, signed in once
for the signed-in pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from admin_kit import make_admin
from browser_kit import (
    NARROW,
    WIDE,
    axe_violations,
    chromium,
    running_server,
    scrolls_sideways,
    shot,
)
from login_kit import GOOD, link_in, make_user, outbox
from mfa_kit import enrol_totp
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import Role, User

Reach = Callable[[Any, str, dict], None]


def _go(path: str) -> Reach:
    return lambda page, base, ctx: page.goto(base + path)


def _password(username: str, password: str = GOOD) -> Reach:
    def reach(page, base, ctx):
        page.goto(base + "/logout")  # a fresh sign-in each time
        page.goto(base + "/login")
        page.locator("#username").fill(username)
        page.locator("#password").fill(password)
        page.locator('form[action="/login"] [type="submit"]').click()
        page.wait_for_load_state()

    return reach


def _reset_confirm(page, base, ctx):
    page.goto(base + ctx["reset_link"])


def _authorize(page, base, ctx):
    page.goto(base + "/oauth2/authorize?" + ctx["authorize_query"])
    page.wait_for_url(re.compile(r".*/oauth2/consent\?r=.*"))


SIGNED_OUT: list[tuple[str, Reach]] = [
    ("login", _go("/login")),
    ("login-error", _password("ann", "wrong-password")),
    ("mfa", _password("otp")),
    ("mfa-enrol", _password("enrol")),
    ("set-password", _password("forced")),
    ("reset-request", _go("/password/reset")),
    ("reset-confirm", _reset_confirm),
    ("register", _go("/register")),
    ("first-login", _go("/login/first")),
    ("logged-out", _go("/logout")),
    ("error-404", _go("/no-such-page")),
    ("authorize-no-params", _go("/oauth2/authorize")),
    ("authorize-unknown-client", _go("/oauth2/authorize?client_id=nope&response_type=code")),
    (
        "authorize-bad-redirect",
        _go("/oauth2/authorize?client_id=notes&response_type=code&redirect_uri=https://x.test/"),
    ),
]

SIGNED_IN: list[tuple[str, Reach]] = [
    ("account", _go("/account/")),
    ("account-password", _go("/account/password")),
    ("account-mfa", _go("/account/mfa")),
    ("account-sessions", _go("/account/sessions")),
    ("account-activity", _go("/account/activity")),
    ("account-apps", _go("/account/apps")),
    ("account-security-questions", _go("/account/security-questions")),
    # The admin console (ann is an Administrator).
    ("admin-dashboard", _go("/admin/")),
    ("admin-users", _go("/admin/users")),
    ("admin-user", lambda page, base, ctx: page.goto(f"{base}/admin/users/{ctx['ann']}")),
    ("admin-user-new", _go("/admin/users/new")),
    ("admin-users-import", _go("/admin/users/import")),
    ("admin-groups", _go("/admin/groups")),
    ("admin-group", lambda page, base, ctx: page.goto(f"{base}/admin/groups/{ctx['group']}")),
    ("admin-roles", _go("/admin/roles")),
    ("admin-role", lambda page, base, ctx: page.goto(f"{base}/admin/roles/{ctx['role']}")),
    ("admin-permission-groups", _go("/admin/permission-groups")),
    ("admin-access", _go("/admin/access")),
    ("admin-org", _go("/admin/org")),
    ("admin-clients", _go("/admin/clients")),
    ("admin-client", _go("/admin/clients/notes")),
    ("admin-client-new", _go("/admin/clients/new")),
    ("admin-saml", _go("/admin/saml")),
    ("admin-saml-new", _go("/admin/saml/new")),
    ("admin-federations", _go("/admin/saml/federations")),
    ("admin-settings", _go("/admin/settings")),
    ("admin-audit", _go("/admin/audit")),
    ("consent", _authorize),
    ("logout-confirm", _go("/logout")),
]

NARROWEST = {"width": 320, "height": 720}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from idp.storage.clients import ClientRegistry

    instance = tmp_path_factory.mktemp("gallery")
    with running_server(
        instance,
        registration={"enabled": True},
        mfa={"policies": ["user:enrol"]},
    ) as (app, base):
        svc = app.extensions["idp"]
        ann = make_admin(svc, "ann", given_name="Ann", family_name="Lee")
        with svc.sessions.begin() as db:
            directory = Directory(db, svc.clock)
            group = directory.create_group("Engineering")
            db.flush()
            group_id = group.id
            role_id = db.scalar(select(Role.id).where(Role.name == "Helpdesk"))
            ann_uuid = db.get(User, ann).uuid
        make_user(svc, "forced", must_change_password=True)
        make_user(svc, "enrol")
        enrol_totp(svc, make_user(svc, "otp"))
        make_user(svc, "resetter")
        with svc.sessions.begin() as db:
            ClientRegistry(db, svc.hasher, svc.sealer).create(
                "notes", name="Team Notes", redirect_uris=["https://notes.example.org/cb"]
            )
        # One reset link for the whole gallery (the page only reads it).
        from login_kit import post_form

        post_form(app.test_client(), "/password/reset", {"email": "resetter"})
        ctx = {
            "reset_link": link_in(outbox(svc)[0], "/password/reset/").split("://", 1)[1][
                len(base.split("://", 1)[1]) :
            ],
            "authorize_query": "client_id=notes&response_type=code&scope=openid%20email"
            "&redirect_uri=https://notes.example.org/cb&state=g",
            "ann": ann_uuid,
            "group": group_id,
            "role": role_id,
        }
        yield app, base, ctx


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _check(page, name: str, scheme: str, lang: str, problems: list[str]) -> None:
    page.set_viewport_size(WIDE)
    shot(page, f"gallery-{name}-{WIDE['width']}-{scheme}-{lang}")
    problems += [f"{name} {scheme} {lang}: {v}" for v in axe_violations(page)]
    page.set_viewport_size(NARROW)
    shot(page, f"gallery-{name}-{NARROW['width']}-{scheme}-{lang}")
    for size in (NARROW, NARROWEST):
        page.set_viewport_size(size)
        if scrolls_sideways(page):
            problems.append(f"{name} {scheme} {lang}: scrolls sideways at {size['width']} px")
    page.set_viewport_size(WIDE)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("lang", ["en", "de"])
def test_gallery(site, browser, scheme, lang):
    app, base, ctx = site
    context = browser.new_context(viewport=WIDE, color_scheme=scheme, locale=lang)
    page = context.new_page()
    problems: list[str] = []
    try:
        for name, reach in SIGNED_OUT:
            reach(page, base, ctx)
            assert page.locator("html").get_attribute("lang") == lang, name
            _check(page, name, scheme, lang, problems)
        _password("ann")(page, base, ctx)
        assert page.url.endswith("/account/")
        for name, reach in SIGNED_IN:
            reach(page, base, ctx)
            _check(page, name, scheme, lang, problems)
    finally:
        context.close()
    assert problems == []
