"""The console's import, batch actions and dashboard in real headless Chromium against one real
HTTP server for the module: a spreadsheet with one bad row (the preview shows it, the report
shows it, the good rows are imported), a batch password reset (the mails land in the outbox),
and axe-core on every page in light and dark, without sideways scrolling at 390 px.
Screenshots go to artifacts/browser/ (admin-bulk-*)."""

from __future__ import annotations

import io

import openpyxl
import pytest
from admin_kit import make_admin
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
from flask import render_template_string
from login_kit import make_user, outbox, text_of
from sqlalchemy import select

from idp.storage.models import User

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# A stand-in for the user list (another area's page): rows with checkboxes in the batch form,
# and the batch bar. Registered as an "admin." endpoint, so the console's guard runs for it.
USER_LIST = """{% extends "admin/_layout.html" %}
{% block page_title %}Users{% endblock %}
{% block content %}<h1>Users</h1>
<table><thead><tr><th scope="col">Select</th><th scope="col">Username</th></tr></thead><tbody>
{% for u in users %}<tr><td><input type="checkbox" name="user" value="{{ u.uuid }}"
 form="batch-form" id="pick-{{ u.username }}"></td><td><label for="pick-{{ u.username }}">
 {{ u.username }}</label></td></tr>{% endfor %}</tbody></table>
{% include "admin/_batch_bar.html" %}{% endblock %}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL): one server for the module."""
    with running_server(tmp_path_factory.mktemp("instance")) as (app, base):

        def user_list():
            with app.extensions["idp"].sessions() as db:
                users = list(db.scalars(select(User).order_by(User.username)))
            return render_template_string(USER_LIST, users=users, active="admin.dashboard")

        app.add_url_rule("/admin/test-users", "admin.test_users", user_list)
        svc = app.extensions["idp"]
        make_admin(svc)
        for name in ("ann", "bob"):
            make_user(svc, name)
        yield app, base


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


def signed_in_page(chromium, base: str, **kw):
    return sign_in(new_page(chromium, **kw), base, "root")


def check(page, name: str) -> None:
    shot(page, f"admin-bulk-{name}")
    assert axe_violations(page) == []


def spreadsheet() -> bytes:
    book = openpyxl.Workbook()
    for row in (
        ["username", "email", "given_name"],
        ["carla", "carla@example.org", "Carla"],
        ["dirk", "dirk-at-example", "Dirk"],
        ["emil", "emil@example.org", "Emil"],
    ):
        book.active.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_import_a_spreadsheet_with_one_bad_row(site, chromium):
    app, base = site
    page = signed_in_page(chromium, base)
    page.goto(base + "/admin/")
    page.get_by_role("link", name="Import users").click()
    page.wait_for_url(base + "/admin/users/import")
    check(page, "import-form")
    page.get_by_label("File").set_input_files(
        files=[{"name": "people.xlsx", "mimeType": XLSX, "buffer": spreadsheet()}]
    )
    page.get_by_label("Username").check()
    page.get_by_role("button", name="Check the file").click()
    page.wait_for_selector("text=Nothing has changed yet")
    content = page.content()
    assert "dirk-at-example" in content and "is not an e-mail address" in content
    check(page, "import-preview")
    with app.extensions["idp"].sessions() as db:
        assert db.scalar(select(User).where(User.username == "carla")) is None
    page.get_by_role("button", name="Import 2 rows").click()
    page.wait_for_selector("text=Imported: 2 created, 0 updated, 0 unchanged, 1 failed.")
    check(page, "import-report")
    page.get_by_role("link", name="Failed rows (1)").click()
    assert "dirk-at-example" in page.content() and "carla@example.org" not in page.content()
    with app.extensions["idp"].sessions() as db:
        names = set(db.scalars(select(User.username)))
    assert {"carla", "emil"} <= names and "dirk" not in names
    page.context.close()


def test_batch_password_reset_sends_the_mails(site, chromium):
    app, base = site
    page = signed_in_page(chromium, base)
    page.goto(base + "/admin/test-users")
    page.get_by_label("ann").check()
    page.get_by_label("bob").check()
    page.get_by_label("With the selected users").select_option("password_reset")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector("text=Confirm the batch action")
    assert "2 users" in page.content()
    check(page, "batch-confirm")
    page.get_by_role("button", name="Send password-reset mails: 2 users").click()
    page.wait_for_selector("text=done for 2, failed for 0")
    check(page, "batch-result")
    # The reset mails (the administrator's own new-device mails go to root@ as well).
    mails = outbox(app.extensions["idp"])
    sent = sorted(m["To"] for m in mails if "/password/reset/" in text_of(m))
    assert sent == ["ann@example.org", "bob@example.org"]
    page.context.close()


@pytest.mark.parametrize("dark", [False, True])
def test_the_pages_pass_axe_and_reflow_at_390px(site, chromium, dark):
    app, base = site
    wide = signed_in_page(chromium, base, dark=dark)
    wide.goto(base + "/admin/")
    assert wide.locator("svg.chart[role=img]").count() == 2
    check(wide, f"dashboard-{'dark' if dark else 'light'}")
    wide.context.close()
    narrow = signed_in_page(chromium, base, viewport=NARROW, dark=dark)
    for path, name in (("/admin/", "dashboard"), ("/admin/users/import", "import-form")):
        narrow.goto(base + path)
        assert not scrolls_sideways(narrow), path
        check(narrow, f"{name}-narrow-{'dark' if dark else 'light'}")
    narrow.context.close()
