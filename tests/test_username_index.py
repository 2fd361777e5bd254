"""Logins match usernames case-insensitively; an expression index on lower(username) serves
that lookup (no scan of the users table per login) and makes "Ann" and "ann" one name, on
SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from idp.storage.db import make_engine
from idp.storage.migrate import upgrade

INSERT = ("INSERT INTO users (uuid, username, email_verified, phone_verified, status, source, "
          "must_change_password, require_mfa, custom, created_at, updated_at) VALUES "
          "(:uuid, :name, false, false, 'active', 'local', false, false, '{}', "
          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")


def _check(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        for i in range(300):
            conn.execute(text(INSERT), {"uuid": f"u-{i}", "name": f"user{i}"})
        conn.execute(text(INSERT), {"uuid": "u-ann", "name": "Ann"})
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE users"))
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT id FROM users WHERE lower(username) = 'ann'")))
        else:
            plan = " ".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT id FROM users WHERE lower(username) = 'ann'")))
    assert "uq_users_username_lower" in plan, plan
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(INSERT), {"uuid": "u-ann2", "name": "ann"})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE lower(username) = 'ann'")
                            ).scalar() == 1
    engine.dispose()


def test_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'idp.db'}")


def test_postgresql(pg_url):
    _check(pg_url)
