"""``GET /api/v1/users`` and ``/users/export``: the position filter, the start / end date ranges
and the date sorts (the console's user list offers them, so the API does too)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from api_kit import api, service_token
from login_kit import make_user

from idp.storage.directory import Directory

BASE = "/api/v1/users"


@pytest.fixture
def admin(app):
    return service_token(app)


@pytest.fixture
def staff(svc):
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        d.create_position(acme, "Engineer")
        d.create_position(acme, "Sales rep")
    make_user(svc, "ann", start_date=date(2020, 1, 1), end_date=date(2030, 6, 30))
    make_user(svc, "bob", start_date=date(2022, 5, 1))
    make_user(svc, "cid", end_date=date(2024, 12, 31))
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.company("acme")
        d.place_user(d.user_by_username("ann"), company=acme, position=d.position(acme, "Engineer"))
        d.place_user(
            d.user_by_username("bob"), company=acme, position=d.position(acme, "Sales rep")
        )


def listed(client, token, **query) -> list[str]:
    resp = api(client, "GET", BASE, token, query_string=query)
    assert resp.status_code == 200, resp.json
    return [u["username"] for u in resp.json["items"]]


def test_position_filter_by_name(client, admin, staff):
    assert listed(client, admin, position="Engineer") == ["ann"]
    assert listed(client, admin, position="Sales rep") == ["bob"]
    assert listed(client, admin, position="Astronaut") == []


def test_start_and_end_date_ranges_include_their_bounds(client, admin, staff):
    assert listed(client, admin, start_from="2020-01-01") == ["ann", "bob"]
    assert listed(client, admin, start_from="2020-01-02") == ["bob"]
    assert listed(client, admin, start_to="2020-01-01") == ["ann"]
    assert listed(client, admin, start_from="2021-01-01", start_to="2022-05-01") == ["bob"]
    assert listed(client, admin, end_to="2024-12-31") == ["cid"]
    assert listed(client, admin, end_from="2025-01-01") == ["ann"]
    # A range that ends before it starts matches nobody (no error: the request is well formed).
    assert listed(client, admin, start_from="2023-01-01", start_to="2019-01-01") == []


def test_sort_by_start_date_puts_empty_dates_last(client, admin, staff):
    assert listed(client, admin, sort="start_date") == ["ann", "bob", "cid"]
    assert listed(client, admin, sort="-start_date") == ["bob", "ann", "cid"]
    assert listed(client, admin, sort="end_date") == ["cid", "ann", "bob"]


@pytest.mark.parametrize("query", [{"start_from": "2020-13-01"}, {"end_to": "yesterday"}])
def test_a_malformed_date_is_400_naming_it(client, admin, staff, query):
    resp = api(client, "GET", BASE, admin, query_string=query)
    assert resp.status_code == 400
    assert next(iter(query)) in json.dumps(resp.json["errors"])


def test_export_takes_the_same_filters(client, admin, staff):
    resp = api(
        client,
        "GET",
        f"{BASE}/export",
        admin,
        query_string={"format": "csv", "position": "Engineer", "start_to": "2021-01-01"},
    )
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["username"] for r in rows] == ["ann"]


def test_end_one_session_of_a_user(app, client, admin, svc):
    from login_kit import GOOD, login

    from idp.storage.models import AuditEvent

    make_user(svc, "eve")
    for _ in range(2):
        login(app.test_client(), "eve", GOOD)
    with svc.sessions() as db:
        uuid = Directory(db).user_by_username("eve").uuid
    sessions = api(client, "GET", f"{BASE}/{uuid}/sessions", admin).json["items"]
    assert len(sessions) == 2
    gone, kept = sessions[0]["id"], sessions[1]["id"]
    resp = api(client, "DELETE", f"{BASE}/{uuid}/sessions/{gone}", admin)
    assert resp.status_code == 204
    left = [s["id"] for s in api(client, "GET", f"{BASE}/{uuid}/sessions", admin).json["items"]]
    assert left == [kept]
    with svc.sessions() as db:
        rows = db.query(AuditEvent).filter(AuditEvent.action == "session.revoked").count()
    # Ending it again, or a session that is not the user's, is 404 and changes nothing.
    assert api(client, "DELETE", f"{BASE}/{uuid}/sessions/{gone}", admin).status_code == 404
    assert api(client, "DELETE", f"{BASE}/{uuid}/sessions/nope", admin).status_code == 404
    with svc.sessions() as db:
        assert db.query(AuditEvent).filter(AuditEvent.action == "session.revoked").count() == rows
    left = [s["id"] for s in api(client, "GET", f"{BASE}/{uuid}/sessions", admin).json["items"]]
    assert left == [kept]
