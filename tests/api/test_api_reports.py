"""Compliance reports over the admin API (``/api/v1/reports``; docs/reports.md): each report's
content on seeded data with its negative cases, CSV / XLSX downloads read back with csv and
openpyxl, formula injection escaped, the access-review campaign end to end, and refusals."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from directory_api_kit import (
    PROBLEM,
    Caller,
    admin_user,
    audit_actions,
    last_audit_id,
    refused,
    snapshot,
)
from login_kit import login, make_user
from mfa_kit import enrol_totp
from sqlalchemy import select

from idp.storage.audit import audit
from idp.storage.directory import Directory
from idp.storage.models import User, UserRole
from idp.storage.models_reports import AccessReview, AccessReviewItem

EVIL = '=HYPERLINK("http://x.invalid","y")'


@pytest.fixture
def world(app):
    """Users for every report: with and without MFA, dormant / recent / never / new, and
    privileged through each kind of path."""
    svc = app.extensions["idp"]
    now = svc.clock.utcnow()
    ids = {}
    ids["nomfa"] = make_user(svc, "nomfa", display_name=EVIL, last_login_at=now - timedelta(days=2))
    ids["withmfa"] = make_user(svc, "withmfa", last_login_at=now - timedelta(days=200))
    enrol_totp(svc, ids["withmfa"])
    ids["required"] = make_user(svc, "required", require_mfa=True, last_login_at=now)
    ids["sleepy"] = make_user(svc, "sleepy", last_login_at=now - timedelta(days=120))
    ids["gone"] = make_user(svc, "gone", status="inactive", last_login_at=now - timedelta(days=400))
    ids["never"] = make_user(svc, "never", created_at=now - timedelta(days=300))
    ids["newbie"] = make_user(svc, "newbie", created_at=now - timedelta(days=1))
    for name in ("helper", "grouped", "nested", "delegate", "plain"):
        ids[name] = make_user(svc, name, last_login_at=now - timedelta(days=1))
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        user = lambda n: db.get(User, ids[n])  # noqa: E731
        d.create_company("acme", "Acme")
        user("nomfa").company_id = d.company("acme").id
        d.assign_role(user("helper"), d.role_by_name("Helpdesk"))
        d.create_group("ops")
        d.create_group("team", "ops")
        d.assign_group_role(d.group_by_path("ops"), d.role_by_name("User Manager"))
        d.add_member(d.group_by_path("ops/team"), user("grouped"))
        inner = d.create_role("Inner", ["audit:log:read"])
        outer = d.create_role("Outer", [])
        d.add_composite(outer, inner)
        d.assign_role(user("nested"), outer)
        d.assign_role(user("delegate"), d.role_by_name("Helpdesk"), scope_company=d.company("acme"))
        d.assign_role(user("plain"), d.create_role("viewer", ["app:documents:read"]))
    return ids


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [i["username"] for i in resp.json["items"]]


def read_csv(resp) -> list[dict]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/csv"
    text = resp.get_data().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def read_xlsx(resp) -> list[dict]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(resp.get_data())).active
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


# --- users without MFA ---------------------------------------------------------------------------


def test_users_without_mfa_lists_active_users_without_a_factor(app, admin, world):
    found = names(admin.get("/reports/users-without-mfa?per_page=100"))
    assert {"nomfa", "required", "sleepy", "never", "helper"} <= set(found)
    assert "withmfa" not in found  # a TOTP is a second factor
    assert "gone" not in found  # inactive
    assert found == sorted(found, key=str.lower)


def test_users_without_mfa_shows_policy_and_grace(make_app, clock):
    app = make_app(clock=clock, mfa={"grace_days": 14})
    svc = app.extensions["idp"]
    now = svc.clock.utcnow()
    make_user(svc, "fresh", require_mfa=True, created_at=now - timedelta(days=4))
    make_user(svc, "late", require_mfa=True, created_at=now - timedelta(days=40))
    make_user(svc, "free")
    admin = Caller(app.test_client(), admin_token(app))
    rows = {i["username"]: i for i in admin.get("/reports/users-without-mfa").json["items"]}
    assert rows["fresh"]["mfa_required"] and rows["fresh"]["required_by"] == ["user"]
    assert rows["fresh"]["in_grace"]
    assert rows["fresh"]["grace_until"].startswith((now + timedelta(days=10)).date().isoformat())
    assert rows["late"]["mfa_required"] and not rows["late"]["in_grace"]
    assert not rows["free"]["mfa_required"] and rows["free"]["grace_until"] is None


def admin_token(app) -> str:
    from api_kit import service_token

    return service_token(app)


def test_users_without_mfa_filters_like_the_user_list(app, admin, world):
    assert names(admin.get("/reports/users-without-mfa?company=acme")) == ["nomfa"]
    assert names(admin.get("/reports/users-without-mfa?group=ops")) == ["grouped"]


def test_users_without_mfa_downloads_escape_formulas(app, admin, world):
    rows = read_csv(admin.get("/reports/users-without-mfa?format=csv&company=acme"))
    assert [r["username"] for r in rows] == ["nomfa"]
    assert rows[0]["display_name"] == "'" + EVIL
    assert rows[0]["mfa_required"] == "false"
    rows = read_xlsx(admin.get("/reports/users-without-mfa?format=xlsx&company=acme"))
    assert rows[0]["display_name"] == "'" + EVIL
    assert rows[0]["mfa_required"] is False
    assert audit_actions(app.extensions["idp"])[-1] == "report.exported"


# --- dormant accounts ----------------------------------------------------------------------------


def test_dormant_accounts_by_days_and_never(app, admin, world):
    assert names(admin.get("/reports/dormant-accounts")) == ["withmfa", "sleepy"]
    assert names(admin.get("/reports/dormant-accounts?days=150")) == ["withmfa"]
    never = admin.get("/reports/dormant-accounts?kind=never&per_page=100").json
    assert "never" in [i["username"] for i in never["items"]]
    assert "newbie" not in [i["username"] for i in never["items"]]  # made yesterday
    assert "nomfa" not in [i["username"] for i in never["items"]]
    sleepy = admin.get("/reports/dormant-accounts").json["items"][1]
    assert sleepy["idle_days"] == 120


def test_dormant_accounts_download_and_bad_days(app, admin, world):
    rows = read_xlsx(admin.get("/reports/dormant-accounts?format=xlsx&days=100"))
    assert [r["username"] for r in rows] == ["withmfa", "sleepy"]
    assert rows[1]["idle_days"] == 120
    resp = admin.get("/reports/dormant-accounts?days=0")
    assert resp.status_code == 400 and resp.mimetype == PROBLEM


# --- privileged accounts -------------------------------------------------------------------------


def test_privileged_accounts_with_their_paths(app, admin, world):
    body = admin.get("/reports/privileged-accounts?per_page=100").json
    rows = {i["username"]: i for i in body["items"]}
    assert {"helper", "grouped", "nested", "delegate"} <= set(rows)
    assert "plain" not in rows and "nomfa" not in rows
    assert any(
        p.startswith("member of group ops/team (inside ops) -> role User Manager")
        for p in rows["grouped"]["granted_through"]
    )
    assert rows["nested"]["granted_through"] == [
        "assigned -> role Outer -> includes role Inner -> audit:log:read"
    ]
    assert any("(in company #" in p for p in rows["delegate"]["permissions"])
    assert rows["helper"]["mfa_enrolled"] is False
    assert rows["helper"]["last_login_at"] is not None
    rows = read_csv(admin.get("/reports/privileged-accounts?format=csv"))
    nested = next(r for r in rows if r["username"] == "nested")
    assert nested["permissions"] == "audit:log:read"


# --- failed logins -------------------------------------------------------------------------------


def test_failed_login_trend(app, admin, world):
    svc = app.extensions["idp"]
    now = svc.clock.utcnow()
    uuid = lambda n: svc.sessions().get(User, world[n]).uuid  # noqa: E731
    with svc.sessions.begin() as db:
        for days_ago, action, target, ip in (
            (1, "login.failure", uuid("sleepy"), "192.0.2.7"),
            (1, "login.failure", uuid("sleepy"), "192.0.2.7"),
            (1, "login.failure", None, "192.0.2.7"),
            (3, "login.step_failed.mfa", uuid("helper"), "198.51.100.1"),
            (3, "login.locked", uuid("sleepy"), "192.0.2.7"),
            (40, "login.failure", uuid("helper"), "192.0.2.9"),  # outside 30 days
            (1, "login.success", uuid("helper"), "192.0.2.9"),  # not a failure
        ):
            audit(db, action, at=now - timedelta(days=days_ago), target=target, ip=ip)
    # and one real failed sign-in, today
    assert login(app.test_client(), "helper", "wrong-password").status_code == 401
    body = admin.get("/reports/failed-logins").json
    assert len(body["days"]) == 30 and body["total"] == 6
    today, yesterday, three = body["days"][-1], body["days"][-2], body["days"][-4]
    assert today["by_reason"]["bad_credentials"] == 1
    assert yesterday["total"] == 3
    assert yesterday["by_reason"] == {
        "bad_credentials": 2,
        "unknown_account": 1,
        "second_factor": 0,
        "locked": 0,
        "account_state": 0,
    }
    assert three["by_reason"]["second_factor"] == 1 and three["by_reason"]["locked"] == 1
    assert body["addresses"][0] == {"key": "192.0.2.7", "username": None, "failures": 4}
    assert body["accounts"][0]["username"] == "sleepy" and body["accounts"][0]["failures"] == 3
    rows = read_csv(admin.get("/reports/failed-logins?format=csv"))
    assert len(rows) == 30 and rows[-2]["total"] == "3" and rows[-2]["unknown_account"] == "1"
    rows = read_xlsx(admin.get("/reports/failed-logins?format=xlsx&part=accounts"))
    assert rows[0]["username"] == "sleepy" and rows[0]["failures"] == 3


# --- refusals ------------------------------------------------------------------------------------


def test_reports_refused_without_the_permission(app, world):
    token = admin_user(app, "nobody", [])
    caller = Caller(app.test_client(), token)
    for path in (
        "/reports/users-without-mfa",
        "/reports/users-without-mfa?format=csv",
        "/reports/dormant-accounts?format=xlsx",
        "/reports/privileged-accounts",
        "/reports/failed-logins",
        "/reports/access-reviews",
    ):
        resp = refused(app, 403, lambda p=path: caller.get(p))
        assert "reports:compliance:read" in resp.json["detail"]
    role_id = _role_id(app, "Helpdesk")
    refused(
        app, 403, lambda: caller.post("/reports/access-reviews", {"kind": "role", "id": role_id})
    )


def _role_id(app, name: str) -> int:
    with app.extensions["idp"].sessions() as db:
        return Directory(db).role_by_name(name).id


# --- access review ------------------------------------------------------------------------------


def test_access_review_end_to_end(app, admin, world):
    svc = app.extensions["idp"]
    reviewer = Caller(
        app.test_client(),
        admin_user(app, "reviewer", ["Helpdesk"], global_roles=("Administrator",)),
    )
    make_user(svc, "keeper")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.assign_role(d.user_by_username("keeper"), d.role_by_name("Helpdesk"))
    helpdesk = _role_id(app, "Helpdesk")
    created = reviewer.post(
        "/reports/access-reviews", {"kind": "role", "id": helpdesk, "title": "Q1 Helpdesk"}
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    review = created.json
    assert review["holders"] == 4 and review["subject"] == "Helpdesk"  # helper, delegate, ...
    page = reviewer.get(f"/reports/access-reviews/{review['id']}").json
    items = {i["username"]: i for i in page["items"]}
    assert set(items) == {"delegate", "helper", "keeper", "reviewer"}
    assert items["delegate"]["grant"].startswith("assigned in company #")
    base = f"/reports/access-reviews/{review['id']}"

    # the reviewer's own grant: refused, nothing changed
    refused(
        app,
        403,
        lambda: reviewer.post(f"{base}/items/{items['reviewer']['id']}", {"decision": "confirm"}),
    )
    ok = reviewer.post(
        f"{base}/items/{items['keeper']['id']}",
        {"decision": "confirm", "comment": "still on the desk"},
    )
    assert ok.status_code == 200 and ok.json["decided_by"] == "reviewer"
    mark = last_audit_id(svc)
    gone = reviewer.post(
        f"{base}/items/{items['helper']['id']}", {"decision": "revoke", "comment": "moved teams"}
    )
    assert gone.status_code == 200, gone.get_data(as_text=True)
    with svc.sessions() as db:
        assert not db.scalar(
            select(UserRole).where(
                UserRole.user_id == world["helper"], UserRole.role_id == helpdesk
            )
        )
    assert audit_actions(svc, mark) == ["user.role_removed", "access_review.decided"]
    # decided once: a second decision is refused
    refused(
        app,
        409,
        lambda: reviewer.post(f"{base}/items/{items['keeper']['id']}", {"decision": "revoke"}),
    )
    # sign-off waits for every holder
    refused(app, 409, lambda: reviewer.post(f"{base}/sign-off"))
    reviewer.post(f"{base}/items/{items['delegate']['id']}", {"decision": "confirm"})
    assert (
        admin.post(f"{base}/items/{items['reviewer']['id']}", {"decision": "confirm"}).status_code
        == 200
    )
    signed = reviewer.post(f"{base}/sign-off")
    assert signed.status_code == 200 and signed.json["signed_off_by"] == "reviewer"
    assert signed.json["revoked"] == 1

    # frozen: no decision, no second sign-off; nothing changes
    with svc.sessions.begin() as db:
        db.add(
            AccessReviewItem(
                review_id=review["id"], user_uuid="x", username="late", grant="assigned"
            )
        )
    late = _item_id(svc, review["id"], "late")
    before = snapshot(svc)
    for call in (
        lambda: reviewer.post(f"{base}/items/{items['keeper']['id']}", {"decision": "revoke"}),
        lambda: reviewer.post(f"{base}/items/{late}", {"decision": "confirm"}),
        lambda: reviewer.post(f"{base}/sign-off"),
    ):
        resp = call()
        assert resp.status_code == 409 and resp.mimetype == PROBLEM
    assert snapshot(svc) == before

    rows = read_xlsx(reviewer.get(f"{base}?format=xlsx"))
    by_name = {r["username"]: r for r in rows}
    assert by_name["helper"]["decision"] == "revoke"
    assert by_name["helper"]["comment"] == "moved teams"
    assert by_name["keeper"]["decided_by"] == "reviewer"
    assert {r["signed_off_by"] for r in rows} == {"reviewer"}
    assert all(r["signed_off_at"] for r in rows)
    rows = read_csv(reviewer.get(f"{base}?format=csv"))
    assert {r["review"] for r in rows} == {"Q1 Helpdesk"}


def _item_id(svc, review_id: int, username: str) -> int:
    with svc.sessions() as db:
        return db.scalar(
            select(AccessReviewItem.id).where(
                AccessReviewItem.review_id == review_id, AccessReviewItem.username == username
            )
        )


def test_group_review_revokes_membership(app, admin, world):
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        group_id = Directory(db).group_by_path("ops/team").id
    review = admin.post("/reports/access-reviews", {"kind": "group", "id": group_id}).json
    page = admin.get(f"/reports/access-reviews/{review['id']}").json
    assert [i["username"] for i in page["items"]] == ["grouped"]
    item = page["items"][0]
    resp = admin.post(
        f"/reports/access-reviews/{review['id']}/items/{item['id']}", {"decision": "revoke"}
    )
    assert resp.status_code == 200
    assert "grouped" not in names(admin.get("/reports/privileged-accounts?per_page=100"))
    with svc.sessions() as db:
        assert db.get(AccessReview, review["id"]).signed_off_at is None


def test_review_of_unknown_role_is_not_found(app, admin):
    refused(app, 404, lambda: admin.post("/reports/access-reviews", {"kind": "role", "id": 999}))
    refused(app, 404, lambda: admin.get("/reports/access-reviews/999"))
