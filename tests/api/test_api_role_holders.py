"""``GET /api/v1/roles/{id}/holders`` (who holds a role, with delegation scope and expiry: the
console's role page) and the optional ``reason`` of an access-request decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_kit import api, service_token, user_token
from login_kit import GOOD, make_user
from sqlalchemy import func, select

from idp.storage.directory import Directory
from idp.storage.models import AccessRequest, AuditEvent, UserRole


@pytest.fixture
def world(app):
    """acme / Sales; ann in Sales, olga outside; Viewer held by ann (scoped to Sales) and by
    olga (until tomorrow); lead reads roles everywhere but users only in Sales."""
    svc = app.extensions["idp"]
    for name in ("ann", "olga", "lead", "approver"):
        make_user(svc, name, GOOD)
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        sales = d.create_department(acme, "Sales")
        ann, olga = d.user_by_username("ann"), d.user_by_username("olga")
        lead, approver = d.user_by_username("lead"), d.user_by_username("approver")
        d.place_user(ann, company=acme, department=sales)
        viewer = d.create_role("Viewer", ["users:accounts:read"])
        d.assign_role(ann, viewer, scope_department=sales)
        d.assign_role(olga, viewer, expires_at=svc.clock.utcnow() + timedelta(days=1))
        d.assign_role(lead, d.create_role("Role reader", ["roles:roles:read", "oauth:scope:admin"]))
        d.assign_role(lead, d.create_role("Branch", ["users:roles:read"]), scope_department=sales)
        d.assign_role(approver, d.role_by_name("User Manager"))
        req = d.request_access(ann, role=d.role_by_name("Helpdesk"), reason="on call")
        return {"viewer": viewer.id, "sales": sales.id, "request": req.id}


def test_holders_list_every_assignment_with_scope_and_expiry(app, client, world):
    resp = api(client, "GET", f"/api/v1/roles/{world['viewer']}/holders", service_token(app))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["total"] == 2
    ann, olga = body["items"]
    assert (ann["username"], ann["scope_department_id"]) == ("ann", world["sales"])
    assert (olga["username"], olga["scope_department_id"]) == ("olga", None)
    assert olga["expires_at"] is not None


def test_holders_are_only_those_the_caller_may_read(app, client, world):
    token = user_token(app, "lead", GOOD)
    body = api(client, "GET", f"/api/v1/roles/{world['viewer']}/holders", token).get_json()
    assert [h["username"] for h in body["items"]] == ["ann"] and body["total"] == 1


def test_holders_need_roles_read(app, client, world):
    token = service_token(app, roles=("Helpdesk",))
    resp = api(client, "GET", f"/api/v1/roles/{world['viewer']}/holders", token)
    assert resp.status_code == 403
    assert api(client, "GET", "/api/v1/roles/99999/holders", service_token(app)).status_code == 404


def _audit_count(app) -> int:
    with app.extensions["idp"].sessions() as db:
        return int(db.scalar(select(func.count()).select_from(AuditEvent)))


def test_a_decision_keeps_its_reason_in_the_audit_row(app, client, world):
    token = user_token(app, "approver", GOOD)
    url = f"/api/v1/access-requests/{world['request']}/deny"
    before = _audit_count(app)
    too_long = api(client, "POST", url, token, json={"reason": "x" * 501})
    assert too_long.status_code == 400
    assert _audit_count(app) == before
    with app.extensions["idp"].sessions() as db:
        assert db.get(AccessRequest, world["request"]).status == "pending"
    resp = api(client, "POST", url, token, json={"reason": "not on call this week"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "rejected"
    with app.extensions["idp"].sessions() as db:
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "access_request.denied"))
        assert "not on call this week" in str(event.details)
        assert (
            db.scalar(
                select(UserRole)
                .where(UserRole.role_id != world["viewer"])
                .where(UserRole.user_id == db.get(AccessRequest, world["request"]).user_id)
            )
            is None
        )
