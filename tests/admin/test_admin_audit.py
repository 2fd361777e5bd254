"""The console's audit log (/admin/audit): filters applied in SQL (actor, target, event type,
time range), newest first, paginated; one event's details; the filtered log exported as CSV
and JSON lines (console and GET /api/v1/audit/events/export), the export itself audited."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from admin_kit import make_admin, signed_in
from api_kit import api, service_token
from login_kit import make_user
from sqlalchemy import func, select

from idp.manage import audit as manage_audit
from idp.storage.audit import audit
from idp.storage.models import AuditEvent, User

DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the frozen clock (sign-ins) is in 2027
MONTH = timedelta(days=30)
SEEDED = "since=2026-03-01&until=2026-03-30"


@pytest.fixture
def seeded(app):
    """An auditor, a person "ann", and 14 events over 7 days (newest: day 6)."""
    svc = app.extensions["idp"]
    make_admin(svc, "aud", role="Auditor")
    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        ann = db.scalar(select(User.uuid).where(User.username == "ann"))
        aud = db.scalar(select(User.uuid).where(User.username == "aud"))
        for i in range(14):
            audit(
                db,
                "user.locked" if i % 2 else "group.created",
                at=DAY + timedelta(days=i // 2, minutes=i),
                actor=aud if i < 4 else "cli",
                target=ann if i % 2 else ('=HYPERLINK("x")' if i == 12 else f"group-{i}"),
                ip="192.0.2.7",
                reason=f"=cmd|{i}" if i == 13 else f"row {i}",
            )
    return {"ann": ann, "aud": aud}


@pytest.fixture
def auditor(app, seeded):
    return signed_in(app, "aud")


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'href="/admin/audit/(\d+)"', html)]


def _count(svc, action: str) -> int:
    with svc.sessions() as db:
        return db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def _seeded_ids(svc, **where) -> list[int]:
    """Ids of the seeded rows matching, newest first (what the screen must show)."""
    with svc.sessions() as db:
        q = select(AuditEvent.id).where(AuditEvent.at >= DAY, AuditEvent.at < DAY + MONTH)
        for column, value in where.items():
            q = q.where(getattr(AuditEvent, column) == value)
        return list(db.scalars(q.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())))


def test_the_log_is_newest_first_and_paginated(app, auditor):
    svc = app.extensions["idp"]
    html = auditor.get(f"/admin/audit?{SEEDED}&per_page=10").get_data(as_text=True)
    assert _ids(html) == _seeded_ids(svc)[:10]
    assert "14 results · page 1 of 2" in html
    page2 = auditor.get(f"/admin/audit?{SEEDED}&per_page=10&page=2").get_data(as_text=True)
    assert _ids(page2) == _seeded_ids(svc)[10:]
    assert '<th scope="col">' in html and 'data-label="Event"' in html
    assert "Account locked" in html  # the human name of user.locked


def test_filter_by_actor_username_target_username_and_event_type(app, auditor, seeded):
    svc = app.extensions["idp"]
    by_actor = auditor.get(f"/admin/audit?actor=aud&{SEEDED}").get_data(as_text=True)
    assert _ids(by_actor) == _seeded_ids(svc, actor=seeded["aud"])
    assert len(_ids(by_actor)) == 4
    by_target = auditor.get(f"/admin/audit?target=ann&{SEEDED}").get_data(as_text=True)
    assert _ids(by_target) == _seeded_ids(svc, target=seeded["ann"])
    assert ">ann<" in by_target  # shown by name, not by id
    by_action = auditor.get(f"/admin/audit?action=group.created&{SEEDED}")
    assert _ids(by_action.get_data(as_text=True)) == _seeded_ids(svc, action="group.created")
    assert '<option value="user.locked">Account locked (user.locked)</option>' in (
        by_action.get_data(as_text=True)
    )


def test_filter_by_time_range_takes_whole_days(app, auditor):
    svc = app.extensions["idp"]
    html = auditor.get("/admin/audit?since=2026-03-02&until=2026-03-03").get_data(as_text=True)
    expected = [
        i
        for i in _seeded_ids(svc)
        if DAY + timedelta(days=1) <= _at(svc, i) < DAY + timedelta(days=2, hours=12)
    ]
    assert _ids(html) == expected and len(expected) == 4


def _at(svc, event_id: int) -> datetime:
    with svc.sessions() as db:
        return db.get(AuditEvent, event_id).at


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "f-since"), ("since=2026-03-05&until=2026-03-01", "f-until")],
)
def test_bad_dates_are_refused_beside_the_filter(auditor, query, field):
    response = auditor.get(f"/admin/audit?{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and _ids(html) == []


def test_one_event_shows_its_details_as_a_definition_list(app, auditor):
    svc = app.extensions["idp"]
    newest = _seeded_ids(svc)[0]
    html = auditor.get(f"/admin/audit/{newest}").get_data(as_text=True)
    assert "<dt>reason</dt><dd>=cmd|13</dd>" in html
    assert "<code>user.locked</code>" in html and "192.0.2.7" in html
    assert auditor.get("/admin/audit/999999").status_code == 404


def test_csv_export_holds_exactly_the_filtered_rows_and_is_audited(app, auditor, seeded):
    svc = app.extensions["idp"]
    response = auditor.get("/admin/audit/export?format=csv&target=ann")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["id"]) for r in rows] == _seeded_ids(svc, target=seeded["ann"])
    assert rows[0]["event"] == "Account locked"
    assert json.loads(rows[0]["details"])["reason"] == "=cmd|13"
    (exported,) = _exports(svc)
    assert exported.details == {"format": "csv", "filters": {"target": seeded["ann"]}}
    groups = auditor.get(f"/admin/audit/export?format=csv&action=group.created&{SEEDED}")
    first = next(csv.DictReader(io.StringIO(groups.get_data(as_text=True))))
    assert first["target"] == '\'=HYPERLINK("x")'  # a formula is escaped with '
    assert len(_exports(svc)) == 2


def _exports(svc) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == "audit.exported")))


def test_jsonl_export_streams_in_chunks(app, auditor, monkeypatch):
    svc = app.extensions["idp"]
    monkeypatch.setattr(manage_audit, "EXPORT_CHUNK", 3)
    response = auditor.get(f"/admin/audit/export?format=jsonl&{SEEDED}")
    assert response.is_streamed
    lines = [json.loads(x) for x in response.get_data(as_text=True).splitlines()]
    assert [x["id"] for x in lines] == _seeded_ids(svc)
    assert lines[-1]["action"] == "group.created" and lines[-1]["details"]["reason"] == "row 0"


def test_export_refuses_an_unknown_format(auditor):
    assert auditor.get("/admin/audit/export?format=xml").status_code == 400


def test_helpdesk_cannot_read_the_log(app, seeded):
    svc = app.extensions["idp"]
    make_admin(svc, "help", role="Helpdesk")
    client = signed_in(app, "help")
    before = _count(svc, "audit.exported")
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/admin/audit/1").status_code == 403
    assert client.get("/admin/audit/export?format=csv").status_code == 403
    assert _count(svc, "audit.exported") == before


def test_api_export_with_filters_and_permission(app, seeded):
    svc = app.extensions["idp"]
    client = app.test_client()
    token = service_token(app, roles=("Auditor",))
    resp = api(
        client,
        "GET",
        "/api/v1/audit/events/export?format=jsonl&action=user.locked&until=2026-04-01T00:00:00Z",
        token,
    )
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    ids = [json.loads(x)["id"] for x in resp.get_data(as_text=True).splitlines()]
    assert ids == _seeded_ids(svc, action="user.locked")
    assert _count(svc, "audit.exported") == 1
    helpdesk = service_token(app, roles=("Helpdesk",))
    resp = api(client, "GET", "/api/v1/audit/events/export", helpdesk)
    assert resp.status_code == 403 and resp.mimetype == "application/problem+json"
    assert _count(svc, "audit.exported") == 1
    bad = api(client, "GET", "/api/v1/audit/events/export?format=xml", token)
    assert bad.status_code == 400
