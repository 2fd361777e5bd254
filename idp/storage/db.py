"""Engine and session factory: SQLite (WAL, foreign keys) or PostgreSQL through psycopg 3."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timestamps stored as naive UTC (portable across SQLite and PostgreSQL), read back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use the clock's aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    connect_timeout: int = 5,
    echo: bool = False,
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 10},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": connect_timeout},
    )


@contextmanager
def dbapi_transaction(engine: Engine, *, immediate: bool = False) -> Iterator[Any]:
    """A cursor on a pooled DBAPI connection, committed at the end (rolled back on an error):
    for the few statements on every request's path (the SQLite store, the client_credentials
    audit row), where SQLAlchemy's connection, transaction and result objects cost several
    times the statements themselves. ``immediate`` (SQLite): take the write lock first, with
    :func:`_begin_immediate`'s short waits."""
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        try:
            if immediate:
                _begin_immediate(cursor)
            yield cursor
        finally:
            cursor.close()
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def _begin_immediate(cursor: Any) -> None:
    """Take SQLite's write lock, waiting for another writer in steps of 0.1 ms growing to 2 ms,
    as long as the connection's busy timeout. SQLite's own busy handler sleeps 1, 2, 5, 10 ...
    ms between tries, against a lock held for some 50 us by a short write transaction: under
    load a worker slept through a millisecond or more for nothing every few transactions."""
    waits_ms = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
    cursor.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + waits_ms / 1000
        pause = 0.0001
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(waits_ms)}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


class Precompiled:
    """A statement compiled once for a dialect and run from its SQL text
    (``conn.exec_driver_sql(p.text, p.args({...}))``): on a path taken by every request (the
    short-lived store, the audit chain's head), building the statement and finding it in
    SQLAlchemy's compiled cache cost several times more than running it. Only for statements
    whose parameters need no type conversion (strings, numbers)."""

    def __init__(self, dialect: Any, stmt: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.text = str(compiled)
        self._names = compiled.positiontup if compiled.positional else list(compiled.params)
        self._positional = compiled.positional
        self._fixed = {k: v for k, v in compiled.params.items() if v is not None}

    def args(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: in order (SQLite) or by name (PostgreSQL)."""
        given = {**self._fixed, **params}
        if self._positional:
            return tuple(given[n] for n in self._names)
        return {n: given[n] for n in self._names}
