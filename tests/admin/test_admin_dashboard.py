"""The dashboard (/admin/, idp.manage.stats, GET /api/v1/stats): figures computed in SQL
against seeded data on a frozen clock (users by status, accounts locked now, live sessions,
sign-ins and failures per hour and per day, recent security events, pending access
requests), each only for an administrator who may read what it counts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from admin_kit import make_admin, signed_in
from api_kit import api, service_token
from login_kit import make_user
from sqlalchemy import select

from idp.manage import stats
from idp.manage.context import Actor, transaction
from idp.storage.audit import audit
from idp.storage.directory import Directory
from idp.storage.models import AccessRequest, User
from idp.storage.models_auth import SsoSessionIndex


@pytest.fixture
def seeded(app):
    """root (admin, active), ann (inactive), bob (locked), cat (pending), dan (active, in a
    lockout after failed sign-ins); sessions, sign-in audit rows, access requests."""
    svc = app.extensions["idp"]
    make_admin(svc)
    for name, status in (("ann", "inactive"), ("bob", "locked"), ("cat", "pending"), ("dan", None)):
        make_user(svc, name, **({"status": status} if status else {}))
    now = svc.clock.utcnow()
    with svc.sessions.begin() as db:
        d = Directory(db)
        uid = {u.username: u for u in db.scalars(select(User))}
        rows = [
            ("login.success", now - timedelta(minutes=10), "root"),
            ("login.success", now - timedelta(hours=2, minutes=30), "ann"),
            ("login.success", now - timedelta(hours=2, minutes=20), "ann"),
            ("login.failure", now - timedelta(hours=1), "bob"),
            ("login.success", now - timedelta(hours=30), "cat"),
            ("login.failure", now - timedelta(days=3), "dan"),
            ("login.success", now - timedelta(days=8), "dan"),  # too old for either chart
            ("login.lockout", now - timedelta(minutes=5), "dan"),  # dan: locked for a while
            ("login.lockout", now - timedelta(hours=3), "ann"),  # over long ago
            ("user.updated", now - timedelta(minutes=1), "ann"),  # not a security event
        ]
        for action, at, who in rows:
            audit(db, action, at=at, actor=uid[who].uuid, target=uid[who].uuid, ip="192.0.2.1")
        db.add(
            SsoSessionIndex(sid="s1", user_id=uid["ann"].id, created_at=now - timedelta(hours=1))
        )
        db.add(
            SsoSessionIndex(sid="s2", user_id=uid["dan"].id, created_at=now - timedelta(hours=11))
        )
        role = d.role_by_name("Auditor")
        db.add(AccessRequest(user_id=uid["ann"].id, kind="role", target_id=role.id))
        db.add(AccessRequest(user_id=uid["dan"].id, kind="role", target_id=role.id))
        db.add(
            AccessRequest(user_id=uid["cat"].id, kind="role", target_id=role.id, status="approved")
        )
    return svc


def figures(svc, username: str) -> stats.Stats:
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
    with transaction(svc, Actor.user(user.id, user.uuid)) as ctx:
        return stats.dashboard(ctx)


def test_the_figures_match_the_seeded_data(seeded):
    s = figures(seeded, "root")
    assert s.users_by_status == {"active": 2, "inactive": 1, "locked": 1, "pending": 1}
    assert s.users_total == 5
    assert s.locked_now == 1 and s.temporarily_locked == 1
    assert s.live_sessions == 1  # the 11-hour-old one is past [session] max_hours
    assert len(s.hours) == 24 and len(s.days) == 7
    assert s.hours[-1].start == seeded.clock.utcnow().replace(minute=0)
    assert [(b.sign_ins, b.failures) for b in s.hours if b.sign_ins or b.failures] == [
        (2, 0),  # 05:00
        (1, 1),  # 07:00 (the clock stands at 08:00:00)
    ]
    assert sum(b.sign_ins for b in s.hours) == 3 and sum(b.failures for b in s.hours) == 1
    assert [(b.sign_ins, b.failures) for b in s.days] == [
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 1),  # three days ago
        (0, 0),
        (1, 0),  # yesterday (30 hours ago)
        (3, 1),  # today
    ]
    assert s.pending_requests == 2
    assert [e.action for e in s.recent_events] == [
        "login.lockout",
        "login.failure",
        "login.lockout",
        "login.failure",
    ]
    assert s.recent_events[0].target_name == "dan"


def test_an_unlock_ends_the_temporary_lock(seeded):
    with seeded.sessions.begin() as db:
        dan = db.scalar(select(User).where(User.username == "dan"))
        audit(db, "user.unlocked", at=seeded.clock.utcnow(), target=dan.uuid)
    assert figures(seeded, "root").temporarily_locked == 0


def test_a_helpdesk_without_audit_read_sees_no_sign_ins_or_events(seeded):
    make_admin(seeded, "desk", role="Helpdesk")
    s = figures(seeded, "desk")
    assert s.users_total == 6  # desk is a user too
    assert s.hours is None and s.days is None and s.recent_events is None
    assert "audit" not in s.sections


def test_a_delegated_admin_counts_their_company_only(seeded):
    make_user(seeded, "lead")
    with seeded.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        for name in ("lead", "ann"):
            d.place_user(d.user_by_username(name), company=acme)
        d.create_role("Console", ["console:admin:access"])
        lead = d.user_by_username("lead")
        d.assign_role(lead, d.role_by_name("User Manager"), scope_company=acme)
        d.assign_role(lead, d.role_by_name("Console"))
    s = figures(seeded, "lead")
    assert s.users_by_status == {"active": 1, "inactive": 1, "locked": 0, "pending": 0}
    assert s.live_sessions == 1  # ann's
    assert s.temporarily_locked == 0  # dan is not theirs
    assert s.recent_events is None


def test_the_page_draws_accessible_charts_and_lists_events(app, seeded):
    html = signed_in(app).get("/admin/").get_data(as_text=True)
    svg = re.findall(r'<svg class="chart"[^>]*role="img"[^>]*aria-labelledby="([^"]+)"', html)
    assert len(svg) == 2
    for ids in svg:
        for part in ids.split():
            assert f'id="{part}"' in html  # the <title> and <desc> it names
    assert "<desc" in html and "sign-ins and" in html
    assert '<th scope="col" class="num">Sign-ins</th>' in html  # the numbers as a table
    assert "Recent security events" in html and "Sign-in failed" in html
    assert "Accounts locked now" in html and "Pending access requests" in html


def test_a_helpdesk_page_has_no_charts_or_events(app, seeded):
    make_admin(seeded, "desk", role="Helpdesk")
    html = signed_in(app, "desk").get("/admin/").get_data(as_text=True)
    assert "Users" in html and "Accounts locked now" in html
    assert "<svg" not in html and "Recent security events" not in html


def test_the_api_gives_the_same_figures(app, seeded):
    response = api(app.test_client(), "GET", "/api/v1/stats", service_token(app))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["users_by_status"] == {"active": 2, "inactive": 1, "locked": 1, "pending": 1}
    assert body["temporarily_locked"] == 1 and body["live_sessions"] == 1
    assert sum(b["sign_ins"] for b in body["hours"]) == 3
    assert [b["failures"] for b in body["days"]] == [0, 0, 0, 1, 0, 0, 1]
    assert body["pending_requests"] == 2
    assert body["recent_events"][0]["action"] == "login.lockout"


def test_the_api_leaves_out_what_the_caller_may_not_read(app, seeded):
    token = service_token(app, roles=("Helpdesk",))
    body = api(app.test_client(), "GET", "/api/v1/stats", token).get_json()
    assert body["users_total"] == 5
    assert body["hours"] is None and body["recent_events"] is None
