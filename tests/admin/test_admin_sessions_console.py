"""The console's session screens (issue 19): a role's and a group's concurrent-session limit
(linked from their screens, saved through idp.manage.session_limits, audited, bad input shown
beside the field with nothing stored, CSRF), and the user screen's sessions with device,
browser / OS, IP, location, created and last activity, and "End all" keeping offline access
when asked."""

from __future__ import annotations

import html as html_lib

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from geo_kit import write_city_db
from login_kit import GOOD, login, make_user
from sqlalchemy import select

from idp.manage import Actor, groups, roles, transaction
from idp.storage import session_limits
from idp.storage.models import AuditEvent, User

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def _text(response) -> str:
    return html_lib.unescape(response.get_data(as_text=True))


def _audits(svc, action: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def scopes(svc):
    with transaction(svc, Actor.operator("test")) as ctx:
        return {
            "role": roles.create(ctx, "kiosk-staff", []).id,
            "group": groups.create(ctx, "kiosks").id,
        }


@pytest.fixture
def root(app):
    make_admin(app.extensions["idp"])
    return signed_in(app)


def _limit(svc, kind: str, key: int) -> int | None:
    with svc.sessions() as db:
        return session_limits.limit_of(db, **{f"{kind}_id": key})


def _pages(kind: str, key: int) -> tuple[str, str]:
    own = f"/admin/{kind}s/{key}"
    return own, own + "/session-limit"


def _save(client, page: str, value: str, csrf: bool = True):
    form = {"max_sessions": value}
    if csrf:
        form["csrf_token"] = console_csrf(client, page)
    return client.post(page, data=form)


@pytest.mark.parametrize("kind", ["role", "group"])
def test_the_limit_is_linked_shown_saved_audited_and_removed(svc, root, scopes, kind):
    own, page = _pages(kind, scopes[kind])
    assert f'href="{page}"' in root.get(own).get_data(as_text=True)
    assert root.get(page).status_code == 200
    saved = _save(root, page, " 2 ")
    assert saved.status_code == 302 and saved.headers["Location"].endswith(page)
    assert "Session limit saved: at most 2 sessions at once." in _text(root.get(page))
    assert _limit(svc, kind, scopes[kind]) == 2
    (row,) = _audits(svc, f"{kind}.session_limit")
    assert row.details["before"] is None and row.details["after"] == 2
    assert 'value="2"' in root.get(page).get_data(as_text=True)
    assert _save(root, page, "2").status_code == 302
    assert "Nothing changed." in _text(root.get(page))
    assert len(_audits(svc, f"{kind}.session_limit")) == 1
    assert _save(root, page, "").status_code == 302
    assert "The session limit was removed." in _text(root.get(page))
    assert _limit(svc, kind, scopes[kind]) is None


@pytest.mark.parametrize("bad", ["-1", "0", "abc", "2.5", "10001", "٣", "1_0"])
def test_bad_values_are_refused_beside_the_field_and_nothing_is_stored(svc, root, scopes, bad):
    _, page = _pages("role", scopes["role"])
    assert _save(root, page, "3").status_code == 302
    before = len(_audits(svc, "role.session_limit"))
    refused = _save(root, page, bad)
    assert refused.status_code == 400
    body = _text(refused)
    assert 'id="max_sessions-error"' in body and "whole number from 1 to 10000" in body
    assert "Nothing was saved" in body and "Traceback" not in body
    assert _limit(svc, "role", scopes["role"]) == 3
    assert len(_audits(svc, "role.session_limit")) == before


def test_without_csrf_or_permission_nothing_is_stored(app, svc, root, scopes):
    _, page = _pages("group", scopes["group"])
    assert _save(root, page, "4", csrf=False).status_code == 400
    assert _limit(svc, "group", scopes["group"]) is None
    make_admin(svc, "reader", role="Auditor")
    reader = signed_in(app, "reader")
    shown = reader.get(page)
    if shown.status_code == 200:  # may read: shown without the form
        assert 'name="max_sessions"' not in shown.get_data(as_text=True)
    else:
        assert shown.status_code == 403
    token = console_csrf(reader, "/account/")
    assert reader.post(page, data={"max_sessions": "4", "csrf_token": token}).status_code == 403
    assert _limit(svc, "group", scopes["group"]) is None
    assert _audits(svc, "group.session_limit") == []


def _user_page(app, svc, ip: str) -> tuple[str, str]:
    """ann signed in from ``ip`` with Chrome; the console's page of ann and her uuid."""
    make_user(svc, "ann")
    browser = app.test_client()
    browser.environ_base.update(REMOTE_ADDR=ip, HTTP_USER_AGENT=CHROME)
    assert login(browser, "ann", GOOD).status_code == 302
    make_admin(svc)
    admin = signed_in(app)
    with svc.sessions() as db:
        uuid = db.scalar(select(User.uuid).where(User.username == "ann"))
    return _text(admin.get(f"/admin/users/{uuid}")), uuid


def test_user_sessions_show_device_browser_os_ip_location_and_times(make_app, clock, tmp_path):
    app = make_app(clock=clock, geoip={"database": str(write_city_db(tmp_path / "city.mmdb"))})
    page, _ = _user_page(app, app.extensions["idp"], "81.2.69.160")
    for fact in ("Chrome 120 on Linux", "Chrome 120 · Linux", "81.2.69.160"):
        assert fact in page
    assert "London, United Kingdom" in page and "Unknown location" not in page
    assert "Last activity" in page and "Keep offline app access" in page


def test_without_a_geoip_database_the_location_is_unknown(app, svc):
    page, _ = _user_page(app, svc, "81.2.69.160")
    assert "Unknown location" in page and "London" not in page


@pytest.mark.parametrize("keep", [True, False])
def test_end_all_keeps_offline_access_when_ticked(app, svc, keep):
    _, uuid = _user_page(app, svc, "81.2.69.160")
    admin = signed_in(app)
    form = {"session": "all", "csrf_token": console_csrf(admin, f"/admin/users/{uuid}")}
    if keep:
        form["keep_offline"] = "1"
    assert admin.post(f"/admin/users/{uuid}/sessions/end", data=form).status_code == 302
    after = _text(admin.get(f"/admin/users/{uuid}"))
    assert "not signed in anywhere" in after
    assert ("apps with offline access stay signed in" in after) is keep
    (row,) = [r for r in _audits(svc, "session.revoked") if r.target == uuid]
    assert row.details["offline_revoked"] is (not keep)
