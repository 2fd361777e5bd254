"""Delegated administration through the API (no IDOR across companies): an administrator whose
User Manager role is scoped to company acme, signed in with their own token, lists only acme's
people, and for a globex user every operation answers 404, as for an id that does not exist;
globex's rows stay exactly as they were.

How the token gets the ``admin`` scope: a scope is handed out only on a permission held
everywhere (``oauth:scope:admin``, idp.oidc.permissions), never on one held in a scope (a scope
has no target user). So the delegated admin holds two roles: User Manager scoped to acme (what
they may do, and over whom) and, globally, a role that carries nothing but
``oauth:scope:admin`` (that they may use the API at all). The scope grants no data access.
"""

from __future__ import annotations

import json

import pytest
from api_kit import api, user_token
from login_kit import GOOD, make_user
from sqlalchemy import inspect, select, text

from idp.storage.directory import Directory
from idp.storage.models import User

BASE = "/api/v1/users"
PROBLEM = "application/problem+json"


@pytest.fixture
def realm(app):
    """acme: lead (the delegated admin), ann, and chief (a global Administrator placed in
    acme); globex: gus and gil. Returns (lead's token, uuids by name)."""
    svc = app.extensions["idp"]
    for name in ("lead", "ann", "chief", "gus", "gil"):
        make_user(svc, name)
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        d.create_role("API access", ["oauth:scope:admin"], description="May call the admin API")
        for name, company in (
            ("lead", acme),
            ("ann", acme),
            ("chief", acme),
            ("gus", globex),
            ("gil", globex),
        ):
            d.place_user(d.user_by_username(name), company=company)
        lead = d.user_by_username("lead")
        d.assign_role(lead, d.role_by_name("User Manager"), scope_company=acme)
        d.assign_role(lead, d.role_by_name("API access"))
        d.assign_role(d.user_by_username("chief"), d.role_by_name("Administrator"))
        d.assign_role(d.user_by_username("gil"), d.role_by_name("Auditor"))
        uuids = {n: d.user_by_username(n).uuid for n in ("lead", "ann", "chief", "gus", "gil")}
    return user_token(app, "lead", GOOD), uuids


def globex_rows(svc) -> dict[str, list]:
    """Every row that mentions a globex user (their user rows and everything keyed to them)."""
    with svc.sessions() as db:
        ids = list(
            db.scalars(select(User.id).where(User.username.in_(["gus", "gil"])).order_by(User.id))
        )
    out: dict[str, list] = {}
    with svc.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            cols = {c["name"] for c in inspect(conn).get_columns(table)}
            key = "id" if table == "users" else "user_id" if "user_id" in cols else None
            if key is None:
                continue
            marks = ",".join(str(i) for i in ids)
            # Table and column names come from the database's catalogue, ids are integers.
            out[table] = sorted(
                map(repr, conn.execute(text(f'SELECT * FROM "{table}" WHERE {key} IN ({marks})')))  # noqa: S608
            )
    return out


def test_the_token_has_the_admin_scope_but_only_acme_data(app, client, realm):
    token, uuids = realm
    resp = api(client, "GET", BASE, token)
    assert resp.status_code == 200, resp.json
    assert sorted(u["username"] for u in resp.json["items"]) == ["ann", "chief", "lead"]
    assert resp.json["total"] == 3
    for query in ({"company": "globex"}, {"q": "gus"}, {"q": "example.org", "per_page": 100}):
        names = [
            u["username"] for u in api(client, "GET", BASE, token, query_string=query).json["items"]
        ]
        assert "gus" not in names and "gil" not in names
    ann = api(client, "GET", f"{BASE}/{uuids['ann']}", token)
    assert ann.status_code == 200
    changed = api(
        client,
        "PATCH",
        f"{BASE}/{uuids['ann']}",
        token,
        data=json.dumps({"given_name": "Annette"}),
        headers={"Content-Type": "application/merge-patch+json", "If-Match": ann.headers["ETag"]},
    )
    assert changed.status_code == 200 and changed.json["given_name"] == "Annette"
    assert api(client, "POST", f"{BASE}/{uuids['ann']}/lock", token).json["status"] == "locked"


OUTSIDE = [
    ("GET", "", None),
    ("PATCH", "", {"given_name": "Owned"}),
    ("DELETE", "", None),
    ("POST", "/lock", None),
    ("POST", "/unlock", None),
    ("POST", "/password", {"password": "Taken-Over-Password-99"}),
    ("POST", "/force-password-change", None),
    ("POST", "/reset-mfa", None),
    ("GET", "/sessions", None),
    ("DELETE", "/sessions", None),
    ("GET", "/roles", None),
    ("POST", "/roles", {"role": "Helpdesk"}),
    ("DELETE", "/roles/Auditor", None),
    ("GET", "/permissions", None),
]


@pytest.mark.parametrize(
    ("method", "suffix", "body"), OUTSIDE, ids=[f"{m} {s}" for m, s, _ in OUTSIDE]
)
def test_another_companys_user_is_404_and_unchanged(app, client, realm, method, suffix, body):
    token, uuids = realm
    svc = app.extensions["idp"]
    before = globex_rows(svc)
    for target in ("gus", "gil"):
        resp = api(client, method, f"{BASE}/{uuids[target]}{suffix}", token, json=body)
        assert resp.status_code == 404, (target, resp.get_data(as_text=True))
        assert resp.mimetype == PROBLEM
        missing = api(
            client, method, f"{BASE}/00000000-0000-4000-8000-000000000000{suffix}", token, json=body
        )
        assert missing.status_code == 404
        # The same answer as for an id that does not exist: nothing tells them apart.
        assert resp.json["detail"] == missing.json["detail"]
    assert globex_rows(svc) == before


def test_a_global_admin_inside_the_branch_is_not_theirs(app, client, realm):
    token, uuids = realm
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        before = db.scalar(select(User.given_name).where(User.username == "chief"))
    resp = api(
        client,
        "PATCH",
        f"{BASE}/{uuids['chief']}",
        token,
        json={"given_name": "Pwned"},
    )
    # Listed (they are in acme), so not hidden: refused outright.
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert api(client, "POST", f"{BASE}/{uuids['chief']}/lock", token).status_code == 403
    with svc.sessions() as db:
        chief = db.scalar(select(User).where(User.username == "chief"))
        assert chief.given_name == before and chief.status == "active"


def test_the_delegated_admin_cannot_create_users(client, realm):
    token, _ = realm
    resp = api(client, "POST", BASE, token, json={"username": "newbie", "email": "n@example.org"})
    assert resp.status_code == 403 and "users:accounts:create" in resp.json["detail"]
