"""Concurrent-session limits (issue 19): [session] max_per_user and limits stored on roles and
groups (the smallest wins), with limit_action "end_oldest" (the oldest sessions end, their
relying parties told) or "refuse" (a page, and nothing created). A new sign-in in the same
browser replaces its own session and does not count twice. Runs on the frozen clock, through
the real login page; the two-worker test is test_session_limits_served.py."""

from __future__ import annotations

import pytest
from login_kit import GOOD, audit_actions, login, make_user, post_form
from sqlalchemy import func, select

from idp.sso.sessions import COOKIE, session_id_of
from idp.storage.models_auth import SsoSessionIndex


def _app(make_app, clock, **session):
    return make_app(clock=clock, session=session)


def index_rows(svc, user_id: int) -> list[str]:
    with svc.sessions() as db:
        return list(
            db.scalars(select(SsoSessionIndex.sid).where(SsoSessionIndex.user_id == user_id))
        )


def sign_in(app, clock, username: str = "ann"):
    browser = app.test_client()
    clock.advance(5)  # distinct creation times: "oldest" is well defined
    resp = login(browser, username, GOOD)
    return browser, resp


def alive(svc, browser) -> bool:
    cookie = browser.get_cookie(COOKIE)
    return cookie is not None and svc.sso_sessions.peek(session_id_of(cookie.value)) is not None


def test_end_oldest_ends_the_oldest_session_at_the_user_limit(make_app, clock):
    app = _app(make_app, clock, max_per_user=2)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    first, _ = sign_in(app, clock)
    second, _ = sign_in(app, clock)
    third, resp = sign_in(app, clock)
    assert resp.status_code == 302
    assert not alive(svc, first) and alive(svc, second) and alive(svc, third)
    assert sorted(index_rows(svc, uid)) == sorted(
        [session_id_of(b.get_cookie(COOKIE).value) for b in (second, third)]
    )


def test_signing_in_again_in_the_same_browser_does_not_count_twice(make_app, clock):
    app = _app(make_app, clock, max_per_user=2)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    first, _ = sign_in(app, clock)
    second, _ = sign_in(app, clock)
    clock.advance(5)
    again = post_form(
        second, "/login", {"username": "ann", "password": GOOD}, page="/login?prompt=login"
    )
    assert again.status_code == 302
    assert alive(svc, first) and alive(svc, second)
    assert len(index_rows(svc, uid)) == 2


def test_refuse_answers_with_a_page_and_creates_nothing(make_app, clock):
    app = _app(make_app, clock, max_per_user=1, limit_action="refuse")
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    first, _ = sign_in(app, clock)
    before = index_rows(svc, uid)
    second, resp = sign_in(app, clock)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert "You are signed in on too many devices — sign out elsewhere first." in text
    assert second.get_cookie(COOKIE) is None
    assert index_rows(svc, uid) == before and alive(svc, first)
    assert "login.session_limit" in audit_actions(svc)
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(SsoSessionIndex)) == 1


def test_refused_page_links_to_the_configured_help(make_app, clock):
    app = _app(
        make_app,
        clock,
        max_per_user=1,
        limit_action="refuse",
        limit_help_url="https://help.example.org/sessions",
    )
    make_user(app.extensions["idp"], "ann")
    sign_in(app, clock)
    _, resp = sign_in(app, clock)
    assert 'href="https://help.example.org/sessions"' in resp.get_data(as_text=True)


def test_the_smallest_of_user_role_and_group_limits_wins(make_app, clock):
    from idp.storage.directory import Directory
    from idp.storage.models import Group, Role
    from idp.storage.session_limits import set_limit

    app = _app(make_app, clock, max_per_user=5)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_role("kiosk", [])
        d.create_group("staff")
        d.create_group("night", "staff")
        role = db.scalar(select(Role).where(Role.name == "kiosk"))
        staff = db.scalar(select(Group).where(Group.path == "staff"))
        set_limit(db, 3, role_id=role.id)
        set_limit(db, 2, group_id=staff.id)  # a parent group of the user's group
        from idp.storage.models import User

        user = db.get(User, uid)
        d.assign_role(user, role)
        d.add_member(db.scalar(select(Group).where(Group.path == "staff/night")), user)
    browsers = [sign_in(app, clock)[0] for _ in range(3)]
    assert [alive(svc, b) for b in browsers] == [False, True, True]
    assert len(index_rows(svc, uid)) == 2


def test_without_any_limit_sessions_are_not_capped(make_app, clock):
    app = _app(make_app, clock)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    browsers = [sign_in(app, clock)[0] for _ in range(4)]
    assert all(alive(svc, b) for b in browsers) and len(index_rows(svc, uid)) == 4


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({"max_per_user": -1}, "session.max_per_user"),
        ({"limit_action": "kick"}, "session.limit_action"),
    ],
)
def test_bad_limit_settings_stop_the_start(instance_dir, session, message):
    from support import base_overrides

    from idp.errors import ConfigError
    from idp.settings import load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(base_overrides(instance_dir, session=session))


def test_api_sets_reads_and_removes_a_role_and_a_group_limit(make_app, clock):
    from api_kit import service_token

    from idp.storage.directory import Directory
    from idp.storage.models import AuditEvent

    app = _app(make_app, clock)
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        role_id = Directory(db).create_role("kiosk", []).id
        group_id = Directory(db).create_group("night").id
    headers = {"Authorization": "Bearer " + service_token(app)}
    c = app.test_client()
    for kind, ref in (("roles", role_id), ("groups", group_id)):
        url = f"/api/v1/{kind}/{ref}/session-limit"
        assert c.get(url, headers=headers).json == {"max_sessions": None}
        assert c.put(url, json={"max_sessions": 2}, headers=headers).status_code == 200
        assert c.get(url, headers=headers).json == {"max_sessions": 2}
        for bad in (0, -1, 10001, "2", True):
            resp = c.put(url, json={"max_sessions": bad}, headers=headers)
            assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
        assert c.get(url, headers=headers).json == {"max_sessions": 2}  # unchanged
        assert c.put(url, json={"max_sessions": None}, headers=headers).status_code == 200
        assert c.get(url, headers=headers).json == {"max_sessions": None}
    missing = c.get("/api/v1/roles/99999/session-limit", headers=headers)
    assert missing.status_code == 404
    with svc.sessions() as db:
        actions = set(db.scalars(select(AuditEvent.action)))
    assert {"role.session_limit", "group.session_limit"} <= actions


def test_a_role_limit_set_by_the_api_applies_at_sign_in(make_app, clock):
    from api_kit import service_token

    from idp.storage.directory import Directory
    from idp.storage.models import User

    app = _app(make_app, clock, limit_action="refuse")
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db)
        role = d.create_role("kiosk", [])
        d.assign_role(db.get(User, uid), role)
        role_id = role.id
    headers = {"Authorization": "Bearer " + service_token(app)}
    put = app.test_client().put(
        f"/api/v1/roles/{role_id}/session-limit", json={"max_sessions": 1}, headers=headers
    )
    assert put.status_code == 200
    first, ok = sign_in(app, clock)
    _, refused = sign_in(app, clock)
    assert ok.status_code == 302 and refused.status_code == 403
    assert index_rows(svc, uid) == [session_id_of(first.get_cookie(COOKIE).value)]
