"""Models and Alembic migrations agree, on SQLite and on PostgreSQL; upgrading twice is a no-op.

When this fails after a model change: run ``.venv/bin/python migrations/regenerate_initial.py``
(pre-release) and commit ``migrations/versions/0001_initial_schema.py`` with the change.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from idp.storage.db import make_engine
from idp.storage.migrate import current_revision, head_revision, upgrade
from idp.storage.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrate.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def _diff(engine: Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def _schema(engine: Engine) -> dict:
    insp = inspect(engine)
    return {
        t: (
            sorted(c["name"] for c in insp.get_columns(t)),
            sorted(str(i["name"]) for i in insp.get_indexes(t)),
            sorted(str(u["name"]) for u in insp.get_unique_constraints(t)),
        )
        for t in insp.get_table_names()
    }


def test_models_and_migrations_agree(engine):
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    diff = _diff(engine)
    assert diff == [], (
        "models and migrations differ; run migrations/regenerate_initial.py: " + repr(diff)
    )
    # Every model table exists (compare_metadata would say so too; this names them).
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_upgrade_twice_is_a_no_op(engine):
    upgrade(engine)
    before = _schema(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _schema(engine) == before


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'pragma.db'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    eng.dispose()


def test_postgresql_uses_psycopg_3(pg_url):
    eng = make_engine(pg_url)
    assert eng.dialect.driver == "psycopg"
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    eng.dispose()
