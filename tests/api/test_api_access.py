"""``/api/v1/access-requests`` and ``/api/v1/grants``: deciding access requests and managing
temporary grants through the admin API. The rules of ``Directory.may_decide`` hold over the
API: the user's manager or an approver over the user decides, nobody their own request (nor one
they filed), a service account not at all; a delegated approver sees only their branch (others
are 404); without permission -> 403 with nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_kit import api, service_token, user_token
from directory_api_kit import snapshot
from login_kit import GOOD, make_user
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import AccessRequest, AuditEvent, GroupMember, UserRole

PROBLEM = "application/problem+json"


@pytest.fixture
def world(app):
    """acme with Sales and Ops; ann (Sales) reports to boss; olga is in Ops. approver is a
    User Manager everywhere; lead approves group requests in Sales only; boss and plain hold
    nothing but the admin scope."""
    svc = app.extensions["idp"]
    for name in ("ann", "boss", "olga", "approver", "lead", "plain"):
        make_user(svc, name, GOOD)
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        sales = d.create_department(acme, "Sales")
        ops = d.create_department(acme, "Ops")
        users = {n: d.user_by_username(n) for n in ("ann", "boss", "olga", "approver", "lead")}
        users["plain"] = d.user_by_username("plain")
        d.place_user(users["ann"], company=acme, department=sales, manager=users["boss"])
        d.place_user(users["olga"], company=acme, department=ops)
        d.place_user(users["lead"], company=acme, department=sales)
        scope_only = d.create_role("API access", ["oauth:scope:admin"])
        for n in ("boss", "plain", "lead"):
            d.assign_role(users[n], scope_only)
        d.assign_role(users["approver"], d.role_by_name("User Manager"))
        branch = d.create_role(
            "Branch approver",
            ["users:access:approve", "users:access:read", "users:groups:assign"],
        )
        d.assign_role(users["lead"], branch, scope_department=sales)
        d.create_group("project-x")
        ids = {n: (u.id, u.uuid) for n, u in users.items()}
    return ids


def _request(app, username: str, *, role=None, group=None, by=None, days=7) -> int:
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        req = d.request_access(
            d.user_by_username(username),
            role=d.role_by_name(role) if role else None,
            group=d.group_by_path(group) if group else None,
            expires_at=svc.clock.utcnow() + timedelta(days=days),
            reason="for the audit",
            requested_by=d.user_by_username(by) if by else None,
        )
        return req.id


def _status(app, request_id: int) -> str:
    with app.extensions["idp"].sessions() as db:
        return db.get(AccessRequest, request_id).status


def _grants_of(app, user_id: int) -> tuple[list, list]:
    with app.extensions["idp"].sessions() as db:
        roles = db.execute(
            select(UserRole.role_id, UserRole.expires_at).where(UserRole.user_id == user_id)
        ).all()
        groups = db.execute(
            select(GroupMember.group_id, GroupMember.expires_at).where(
                GroupMember.user_id == user_id
            )
        ).all()
        return list(roles), list(groups)


def _actions(app) -> list[str]:
    with app.extensions["idp"].sessions() as db:
        return list(db.scalars(select(AuditEvent.action)))


def token_of(app, username: str) -> str:
    return user_token(app, username, GOOD)


# --- access requests ------------------------------------------------------------------------------


def test_list_and_filter_requests(app, client, world):
    role_req = _request(app, "ann", role="Helpdesk")
    group_req = _request(app, "ann", group="project-x")
    other = _request(app, "olga", group="project-x")
    token = token_of(app, "approver")
    everything = api(client, "GET", "/api/v1/access-requests", token).get_json()
    assert {r["id"] for r in everything["items"]} == {role_req, group_req, other}
    mine = api(
        client,
        "GET",
        "/api/v1/access-requests",
        token,
        query_string={"user": world["ann"][1], "kind": "group", "status": "pending"},
    ).get_json()
    assert [r["id"] for r in mine["items"]] == [group_req]
    item = mine["items"][0]
    assert item["user"] == {"id": world["ann"][1], "username": "ann"}
    assert item["group"] == "project-x" and item["reason"] == "for the audit"
    one = api(client, "GET", f"/api/v1/access-requests/{role_req}", token).get_json()
    assert one["role"] == "Helpdesk" and one["status"] == "pending" and one["expires_at"]
    for bad in ("999999", "abc", "-1"):
        resp = api(client, "GET", f"/api/v1/access-requests/{bad}", token)
        assert resp.status_code == 404 and resp.mimetype == PROBLEM


def test_approval_grants_the_role_until_the_requested_end(app, client, world):
    req = _request(app, "ann", role="Helpdesk", days=3)
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token_of(app, "approver"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "approved" and body["decided_by"]["username"] == "approver"
    roles, _ = _grants_of(app, world["ann"][0])
    assert len(roles) == 1 and roles[0].expires_at is not None
    grants = api(client, "GET", "/api/v1/grants", service_token(app)).get_json()["items"]
    assert [(g["kind"], g["role"], g["user"]["username"]) for g in grants] == [
        ("role", "Helpdesk", "ann")
    ]
    assert "access_request.approved" in _actions(app)


def test_denial_grants_nothing(app, client, world):
    req = _request(app, "ann", group="project-x")
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/deny", token_of(app, "approver"))
    assert resp.status_code == 200 and resp.get_json()["status"] == "rejected"
    assert _grants_of(app, world["ann"][0]) == ([], [])
    assert "access_request.denied" in _actions(app)
    again = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token_of(app, "approver"))
    assert again.status_code == 409 and _status(app, req) == "rejected"


def test_nobody_decides_their_own_request_or_one_they_filed(app, client, world):
    own = _request(app, "approver", group="project-x")
    filed = _request(app, "ann", group="project-x", by="approver")
    token = token_of(app, "approver")
    for req in (own, filed):
        resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token)
        assert resp.status_code == 403 and resp.mimetype == PROBLEM
        assert _status(app, req) == "pending"
    assert _grants_of(app, world["approver"][0])[1] == []
    assert _grants_of(app, world["ann"][0]) == ([], [])


def test_the_manager_decides_without_any_permission(app, client, world):
    req = _request(app, "ann", group="project-x")
    token = token_of(app, "boss")
    listed = api(client, "GET", "/api/v1/access-requests", token).get_json()
    assert [r["id"] for r in listed["items"]] == [req]
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token)
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"
    assert len(_grants_of(app, world["ann"][0])[1]) == 1


def test_the_manager_approves_only_roles_they_hold(app, client, world):
    """boss holds "API access", not Helpdesk: ann's request for Helpdesk is 403 and nothing
    changes (a manager is no global administrator); the one for "API access" is approved."""
    held = _request(app, "ann", role="API access")
    not_held = _request(app, "ann", role="Helpdesk")
    token = token_of(app, "boss")
    before = snapshot(app.extensions["idp"])
    resp = api(client, "POST", f"/api/v1/access-requests/{not_held}/approve", token)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert snapshot(app.extensions["idp"]) == before and _status(app, not_held) == "pending"
    done = api(client, "POST", f"/api/v1/access-requests/{held}/approve", token)
    assert done.status_code == 200, done.get_json()
    assert len(_grants_of(app, world["ann"][0])[0]) == 1


def test_a_service_account_cannot_decide(app, client, world):
    req = _request(app, "ann", group="project-x")
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", service_token(app))
    assert resp.status_code == 403 and "person" in resp.get_json()["detail"]
    assert _status(app, req) == "pending"


def test_without_permission_nothing_is_seen_or_decided(app, client, world):
    req = _request(app, "ann", group="project-x")
    token = token_of(app, "plain")
    assert api(client, "GET", "/api/v1/access-requests", token).status_code == 403
    assert api(client, "GET", f"/api/v1/access-requests/{req}", token).status_code == 403
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token)
    assert resp.status_code == 403
    assert _status(app, req) == "pending" and _grants_of(app, world["ann"][0]) == ([], [])


def test_a_delegated_approver_sees_and_decides_only_their_branch(app, client, world):
    inside = _request(app, "ann", group="project-x")
    outside = _request(app, "olga", group="project-x")
    token = token_of(app, "lead")
    listed = api(client, "GET", "/api/v1/access-requests", token).get_json()
    assert [r["id"] for r in listed["items"]] == [inside]
    assert api(client, "GET", f"/api/v1/access-requests/{outside}", token).status_code == 404
    refused = api(client, "POST", f"/api/v1/access-requests/{outside}/approve", token)
    assert refused.status_code == 404 and _status(app, outside) == "pending"
    done = api(client, "POST", f"/api/v1/access-requests/{inside}/approve", token)
    assert done.status_code == 200, done.get_json()


def test_a_delegated_approver_cannot_grant_a_role_they_do_not_hold(app, client, world):
    req = _request(app, "ann", role="Helpdesk")
    resp = api(client, "POST", f"/api/v1/access-requests/{req}/approve", token_of(app, "lead"))
    assert resp.status_code == 403
    assert _status(app, req) == "pending" and _grants_of(app, world["ann"][0]) == ([], [])


# --- temporary grants -----------------------------------------------------------------------------


@pytest.fixture
def temporary(app, world):
    """ann: Helpdesk for 2 days, project-x for 5 days, and Auditor for good."""
    svc = app.extensions["idp"]
    now = svc.clock.utcnow()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        ann = d.user_by_username("ann")
        role = d.assign_role(ann, d.role_by_name("Helpdesk"), expires_at=now + timedelta(days=2))
        d.add_member(d.group_by_path("project-x"), ann, expires_at=now + timedelta(days=5))
        permanent = d.assign_role(ann, d.role_by_name("Auditor"))
        group_id = d.group_by_path("project-x").id
        return {
            "role": f"role-{role.id}",
            "group": f"group-{group_id}-{ann.id}",
            "permanent": f"role-{permanent.id}",
        }


def test_grants_list_soonest_first_with_filters(app, client, clock, temporary):
    token = service_token(app)
    items = api(client, "GET", "/api/v1/grants", token).get_json()["items"]
    assert [g["id"] for g in items] == [temporary["role"], temporary["group"]]
    assert items[1]["group"] == "project-x" and items[1]["expired"] is False
    groups = api(client, "GET", "/api/v1/grants", token, query_string={"kind": "group"})
    assert [g["id"] for g in groups.get_json()["items"]] == [temporary["group"]]
    clock.advance(3 * 86400)
    token = service_token(app)  # the first one has expired meanwhile
    active = api(client, "GET", "/api/v1/grants", token).get_json()["items"]
    assert [g["id"] for g in active] == [temporary["group"]]
    ended = api(client, "GET", "/api/v1/grants", token, query_string={"state": "expired"})
    assert [(g["id"], g["expired"]) for g in ended.get_json()["items"]] == [
        (temporary["role"], True)
    ]


def test_revoking_a_temporary_role_and_membership(app, client, world, temporary):
    token = service_token(app)
    for grant in (temporary["role"], temporary["group"]):
        assert api(client, "DELETE", f"/api/v1/grants/{grant}", token).status_code == 204
        again = api(client, "DELETE", f"/api/v1/grants/{grant}", token)
        assert again.status_code == 404 and again.mimetype == PROBLEM
    roles, groups = _grants_of(app, world["ann"][0])
    assert [r.expires_at for r in roles] == [None]  # the permanent Auditor role stays
    assert groups == []
    actions = _actions(app)
    assert "user.role_removed" in actions and "group.member_removed" in actions


def test_permanent_grants_and_odd_ids_are_404(app, client, world, temporary):
    token = service_token(app)
    for grant in (temporary["permanent"], "role-x", "group-1", "bogus", "role-1-2"):
        resp = api(client, "DELETE", f"/api/v1/grants/{grant}", token)
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, grant
    assert len(_grants_of(app, world["ann"][0])[0]) == 2


def test_revoking_needs_the_assign_permission(app, client, world, temporary):
    before = _grants_of(app, world["ann"][0])
    auditor = service_token(app, roles=("Auditor",))  # reads users' roles, assigns nothing
    assert api(client, "GET", "/api/v1/grants", auditor).status_code == 200
    for grant in (temporary["role"], temporary["group"]):
        resp = api(client, "DELETE", f"/api/v1/grants/{grant}", auditor)
        assert resp.status_code == 403 and resp.mimetype == PROBLEM
    helpdesk = service_token(app, roles=("Helpdesk",))
    assert api(client, "GET", "/api/v1/grants", helpdesk).status_code == 403
    assert _grants_of(app, world["ann"][0]) == before


def test_grants_of_users_outside_a_delegated_scope_are_invisible(app, client, world):
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        olga = d.user_by_username("olga")
        row = d.add_member(
            d.group_by_path("project-x"), olga, expires_at=svc.clock.utcnow() + timedelta(days=1)
        )
        grant = f"group-{row.group_id}-{olga.id}"
        reader = d.create_role("Branch reader", ["users:roles:read", "users:groups:assign"])
        d.assign_role(
            d.user_by_username("lead"), reader, scope_department=d.department("acme/Sales")
        )
    token = token_of(app, "lead")
    assert api(client, "GET", "/api/v1/grants", token).get_json()["items"] == []
    resp = api(client, "DELETE", f"/api/v1/grants/{grant}", token)
    assert resp.status_code == 404
    with svc.sessions() as db:
        assert db.get(GroupMember, (int(grant.split("-")[1]), world["olga"][0])) is not None
