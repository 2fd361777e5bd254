"""The compliance reports in the console (/admin/reports): each page renders its rows, the
downloads open, dormant accounts reach the user batch's confirmation, the access review is
decided and signed off through its forms, and an administrator without the permission gets
403 pages and changes nothing."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
from admin_kit import console_csrf, make_admin, signed_in
from directory_api_kit import snapshot
from login_kit import make_user
from sqlalchemy import select

from idp.storage.audit import audit
from idp.storage.directory import Directory
from idp.storage.models import User, UserRole
from idp.storage.models_reports import AccessReview, AccessReviewItem


def _seed(app):
    svc = app.extensions["idp"]
    now = svc.clock.utcnow()
    make_admin(svc, "root", last_login_at=now)
    make_user(svc, "sleepy", last_login_at=now - timedelta(days=120), display_name="=1+2")
    make_user(svc, "fresh", last_login_at=now - timedelta(days=3))
    with svc.sessions.begin() as db:
        audit(db, "login.failure", at=now - timedelta(days=2), ip="192.0.2.1", target=None)
    return svc


def test_report_pages_render(app):
    _seed(app)
    client = signed_in(app)
    nav = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/reports"' in nav
    page = client.get("/admin/reports/users-without-mfa").get_data(as_text=True)
    assert "sleepy" in page and "fresh" in page
    page = client.get("/admin/reports/dormant").get_data(as_text=True)
    assert "sleepy" in page and "fresh" not in page
    assert 'name="action" value="deactivate"' in page
    page = client.get("/admin/reports/privileged").get_data(as_text=True)
    assert "root" in page and "assigned -&gt; role Administrator -&gt; *" in page
    assert "sleepy" not in page
    page = client.get("/admin/reports/failed-logins?days=7").get_data(as_text=True)
    assert '<svg class="chart"' in page and page.count('class="bar-bad"') == 7
    assert "192.0.2.1" in page


def test_report_downloads(app):
    _seed(app)
    client = signed_in(app)
    resp = client.get("/admin/reports/dormant?format=csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))
    assert [r["username"] for r in rows] == ["sleepy"] and rows[0]["display_name"] == "'=1+2"
    resp = client.get("/admin/reports/users-without-mfa?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(resp.get_data())).active
    values = [r[1] for r in sheet.iter_rows(values_only=True)]
    assert "'=1+2" in values
    assert client.get("/admin/reports/dormant?format=pdf").status_code == 400


def test_dormant_selection_goes_to_the_batch_confirmation(app):
    svc = _seed(app)
    client = signed_in(app)
    with svc.sessions() as db:
        uuid = db.scalar(select(User.uuid).where(User.username == "sleepy"))
    resp = client.post(
        "/admin/users/batch",
        data={
            "csrf_token": console_csrf(client, "/admin/reports/dormant"),
            "action": "deactivate",
            "user": uuid,
        },
    )
    assert resp.status_code == 200 and "sleepy" in resp.get_data(as_text=True)


def test_review_in_the_console(app):
    svc = _seed(app)
    client = signed_in(app)
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        helpdesk = d.role_by_name("Helpdesk")
        d.assign_role(d.user_by_username("fresh"), helpdesk)
        d.assign_role(d.user_by_username("root"), helpdesk)
        role_id = helpdesk.id
    token = console_csrf(client, "/admin/reports/reviews")
    resp = client.post(
        "/admin/reports/reviews", data={"csrf_token": token, "kind": "role", "subject_id": role_id}
    )
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Your own access" in page, page[page.find("<main") :][:3000]
    with svc.sessions() as db:
        review = db.scalar(select(AccessReview))
        items = {i.username: i.id for i in db.scalars(select(AccessReviewItem))}
    base = f"/admin/reports/reviews/{review.id}"
    before = snapshot(svc)
    client.post(f"{base}/items/{items['root']}", data={"csrf_token": token, "decision": "revoke"})
    assert snapshot(svc) == before  # own grant: refused
    client.post(
        f"{base}/items/{items['fresh']}",
        data={"csrf_token": token, "decision": "revoke", "comment": "left"},
    )
    with svc.sessions() as db:
        fresh = db.scalar(select(User.id).where(User.username == "fresh"))
        assert not db.scalar(
            select(UserRole).where(UserRole.role_id == role_id, UserRole.user_id == fresh)
        )
    resp = client.post(f"{base}/sign-off", data={"csrf_token": token}, follow_redirects=True)
    assert "not decided yet" in resp.get_data(as_text=True)
    with svc.sessions() as db:
        assert db.get(AccessReview, review.id).signed_off_at is None


def test_console_reports_refused_without_permission(app):
    svc = _seed(app)
    make_admin(svc, "helper", role="Helpdesk")
    client = signed_in(app, "helper")
    nav = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/reports"' not in nav
    before = snapshot(svc)
    for path in (
        "/admin/reports",
        "/admin/reports/users-without-mfa?format=csv",
        "/admin/reports/dormant",
        "/admin/reports/privileged",
        "/admin/reports/failed-logins",
        "/admin/reports/reviews",
    ):
        assert client.get(path).status_code == 403, path
    token = console_csrf(client, "/admin/users")
    resp = client.post(
        "/admin/reports/reviews", data={"csrf_token": token, "kind": "role", "subject_id": 1}
    )
    assert resp.status_code == 403
    assert snapshot(svc) == before
