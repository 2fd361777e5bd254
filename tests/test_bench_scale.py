"""The hot lookups keep their indexes: bench/bench_scale.py's plan check on a small SQLite
instance (200 users, 50 clients). Every statement a point lookup sends (login, user by id and
e-mail, client, refresh token, code, session, SCIM filter, claims) must read a table that grows
through an index (SQLite ``SEARCH``), never whole (``SCAN``); the admin API's first page of
users must come off the username index without sorting every user."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_scale", None)


@pytest.fixture(scope="module")
def seeded(scale, tmp_path_factory):
    instance = tmp_path_factory.mktemp("scale") / "instance"
    instance.mkdir()
    inst = scale.open_instance({"instance_dir": str(instance), "logging": {"access_log": False}})
    scale.grow(inst, 200, 50)
    yield inst
    inst.svc.engine.dispose()


@pytest.fixture(scope="module")
def report(scale, seeded):
    return scale.plan_check(seeded)


POINT_LOOKUPS = {
    "login: user by username": "users",
    "user by id": "users",
    "user by e-mail": "users",
    "client by client_id (token endpoint, cache cold)": "clients",
    "refresh token by hash": "oauth_refresh_tokens",
    "authorization code, take once": "kv_store",
    "SSO session by id": "kv_store",
    "SCIM filter userName eq": "users",
    "claims: OIDC claims of a user with groups and roles": "group_members",
    "claims: effective permissions, cold": "user_roles",
}


def test_every_hot_lookup_reads_its_growing_tables_through_an_index(report):
    assert set(POINT_LOOKUPS) <= set(report)
    offending = {
        name: [(s["sql"][:120], s["plan"]) for s in entry["offending"]]
        for name, entry in report.items()
        if entry["offending"]
    }
    assert offending == {}
    for name, table in POINT_LOOKUPS.items():
        plans = [line for s in report[name]["statements"] for line in s["plan"]]
        # The check saw the lookup's own statement: its table is searched by a key.
        assert any(line.startswith(f"SEARCH {table} ") for line in plans), (name, plans)


def test_the_admin_users_first_page_walks_the_username_index(report):
    entry = report["admin API users, page of 50 at offset 0"]
    pages = [s for s in entry["statements"] if s["sql"].startswith("SELECT users.id, users.uuid")]
    assert len(pages) == 1, [s["sql"][:80] for s in entry["statements"]]
    assert pages[0]["plan"][0] == "SCAN users USING INDEX uq_users_username_lower"
    assert not any("TEMP B-TREE" in line for line in pages[0]["plan"]), pages[0]["plan"]


def test_the_check_flags_a_lookup_that_scans(scale, seeded):
    """A lookup on a column without an index is caught: the check is not blind."""
    from sqlalchemy import select

    from idp.storage.models import User

    def by_given_name(i: int):
        with seeded.svc.sessions() as db:
            return db.scalar(select(User.id).where(User.given_name == f"Given{i}"))

    stmts = scale.plans_of(seeded, scale.Lookup("by given name", by_given_name))
    assert [s["scans"] for s in stmts] == [["users"]]
    assert scale.full_scans("postgresql", ["Seq Scan on users  (cost=0.00..1.01 rows=1)"]) == [
        "users"
    ]
    assert scale.full_scans("sqlite", ["SCAN rbac_state"]) == []  # one row, never grows


def test_a_later_admin_page_skips_its_offset_on_the_ids_alone(report):
    entry = report["admin API users, page of 50, last page"]
    skipping = [s["sql"] for s in entry["statements"] if "OFFSET" in s["sql"]]
    assert len(skipping) == 1, skipping
    assert "WHERE users.id IN (SELECT users.id FROM users " in skipping[0]


@pytest.mark.parametrize("sort", ["username", "-username", "created_at", "-created_at", "-email"])
def test_admin_pages_are_the_slices_of_the_whole_ordered_list(seeded, sort):
    """Paging (the first page through the index, later ones through the ids) gives the same
    users in the same order as reading the whole list, for unique keys and for one every
    user shares (created_at: the id breaks the tie)."""
    from idp.manage import Actor, transaction
    from idp.manage import users as manage_users

    with transaction(seeded.svc, Actor.service(seeded.admin_client)) as ctx:
        everyone, total = manage_users.search(ctx, manage_users.UserQuery(sort=sort, per_page=None))
        assert total == len(everyone) == 200
        ids = [u.id for u in everyone]
        for page in range(1, 6):
            rows, count = manage_users.search(
                ctx, manage_users.UserQuery(sort=sort, page=page, per_page=50)
            )
            assert count == 200
            assert [u.id for u in rows] == ids[(page - 1) * 50 : page * 50]
