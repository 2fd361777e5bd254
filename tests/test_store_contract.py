"""The short-lived store contract (``idp.core.ports.ShortLivedStore``), one suite for every
backend: SqlStore on SQLite, SqlStore on PostgreSQL, RedisStore.

Concurrency is proven with several OS processes (the way server workers share the store), each
building its own store from the same settings; a barrier makes them race for real.
"""

from __future__ import annotations

import multiprocessing as mp
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from idp.clock import Clock, FrozenClock
from idp.storage.db import make_engine
from idp.storage.migrate import upgrade
from idp.storage.store import RedisStore, SqlStore

PROCESSES = 6


@dataclass
class Backend:
    kind: str  # "sqlite" | "postgresql" | "redis"
    url: str
    prefix: str = "idp:"


def _open(backend: Backend, clock: Clock) -> Any:
    if backend.kind == "redis":
        return RedisStore(backend.url, backend.prefix, timeout=5)
    return SqlStore(make_engine(backend.url), clock, purge_interval=60)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield Backend("sqlite", url)
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield Backend("postgresql", url)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"idp-test-{secrets.token_hex(6)}:"
        yield Backend("redis", url, prefix)
        import redis

        r = redis.Redis.from_url(url)
        keys = list(r.scan_iter(match=f"{prefix}*"))
        if keys:
            r.delete(*keys)
        r.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_700_000_000.0)


@pytest.fixture
def store(backend: Backend, clock: FrozenClock) -> Iterator[Any]:
    s = _open(backend, clock)
    yield s
    if isinstance(s, SqlStore):
        s._engine.dispose()


def expire(backend: Backend, clock: FrozenClock, seconds: float) -> None:
    """Let ``seconds`` pass: the SQL store reads the injected clock, Redis its own."""
    if backend.kind == "redis":
        time.sleep(seconds)
    else:
        clock.advance(seconds)


# TTLs short enough to wait for on Redis, and the time that certainly expires them.
TTL = 0.3
PAST_TTL = 0.45


# --- single-caller semantics ---------------------------------------------------------------------


def test_put_get_roundtrip_json_values(store):
    value = {"sub": "u1", "scopes": ["openid", "email"], "n": 3, "ok": True, "none": None}
    store.put("code:1", value, 60)
    assert store.get("code:1") == value
    store.put("s", "text", 60)
    assert store.get("s") == "text"
    assert store.get("absent") is None


def test_put_many_stores_every_item_with_its_own_ttl(store, backend, clock):
    store.put("b", "old", 60)
    store.put_many([("a", {"n": 1}, TTL), ("b", "new", 60)])
    assert store.get("a") == {"n": 1} and store.get("b") == "new"
    expire(backend, clock, PAST_TTL)
    assert store.get("a") is None and store.get("b") == "new"


def test_get_many_in_the_order_asked(store, backend, clock):
    store.put("a", {"n": 1}, 60)
    store.put("short", 2, TTL)
    assert store.incr("count", 60) == 1
    assert store.get_many(["absent", "a", "count", "short"]) == [None, {"n": 1}, 1, 2]
    assert store.get_many([]) == []
    expire(backend, clock, PAST_TTL)
    assert store.get_many(["short", "a"]) == [None, {"n": 1}]


def test_put_replaces(store):
    store.put("k", 1, 60)
    store.put("k", 2, 60)
    assert store.get("k") == 2


def test_take_returns_once(store):
    store.put("code", {"a": 1}, 60)
    assert store.take("code") == {"a": 1}
    assert store.take("code") is None
    assert store.get("code") is None
    assert store.take("never-there") is None


def test_delete(store):
    store.put("k", "v", 60)
    store.delete("k")
    assert store.get("k") is None
    store.delete("k")  # deleting what is absent is fine


def test_add_first_caller_wins(store):
    assert store.add("jti:1", True, 60) is True
    assert store.add("jti:1", "other", 60) is False
    assert store.get("jti:1") is True


def test_incr_counts(store):
    assert [store.incr("rate:ip", 60) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert store.incr("rate:other", 60) == 1
    assert store.get("rate:ip") == 5  # a counter reads back as its number


def test_take_and_delete_leave_other_keys_alone(store):
    store.put("a", 1, 60)
    store.put("b", 2, 60)
    store.take("a")
    store.delete("zzz")
    assert store.get("b") == 2


def test_ping(store):
    store.ping()


# --- expiry --------------------------------------------------------------------------------------


def test_get_and_take_after_expiry(store, backend, clock):
    store.put("a", 1, TTL)
    store.put("b", 2, TTL)
    store.put("long", 3, 60)
    expire(backend, clock, PAST_TTL)
    assert store.get("a") is None
    assert store.take("b") is None
    assert store.get("long") == 3


def test_put_refreshes_ttl(store, backend, clock):
    store.put("k", 1, TTL)
    store.put("k", 2, 60)
    expire(backend, clock, PAST_TTL)
    assert store.get("k") == 2


def test_add_succeeds_again_after_expiry(store, backend, clock):
    assert store.add("nonce", 1, TTL) is True
    assert store.add("nonce", 2, TTL) is False
    expire(backend, clock, PAST_TTL)
    assert store.add("nonce", 3, 60) is True
    assert store.get("nonce") == 3


def test_incr_fixed_window_resets_after_expiry(store, backend, clock):
    assert store.incr("rate", TTL) == 1
    assert store.incr("rate", TTL) == 2
    # Later increments do not extend the window (fixed, not sliding).
    expire(backend, clock, TTL / 2)
    assert store.incr("rate", TTL) == 3
    expire(backend, clock, TTL / 2 + 0.15)
    assert store.incr("rate", TTL) == 1
    assert store.incr("rate", TTL) == 2


def test_sql_store_purges_expired_rows(tmp_path, clock):
    """Expired rows do not pile up in the embedded store's table."""
    from sqlalchemy import select

    from idp.storage.models import KVEntry

    engine = make_engine(f"sqlite:///{tmp_path / 'purge.db'}")
    upgrade(engine)
    s = SqlStore(engine, clock, purge_interval=10)
    for i in range(5):
        s.put(f"old{i}", i, 1)
    clock.advance(11)
    s.put("fresh", 1, 60)  # the first write after the interval sweeps
    with engine.connect() as conn:
        keys = set(conn.execute(select(KVEntry.key)).scalars())
    assert keys == {"fresh"}
    engine.dispose()


# --- concurrency across processes ---------------------------------------------------------------


def _race(backend: Backend, op: str, key: str, start, results) -> None:
    """One competing worker process: its own store, then all start at once."""
    store = _open(backend, Clock())
    store.ping()  # connect before the start signal so the race is on the operation
    start.wait(30)
    try:
        if op == "take":
            results.put(store.take(key))
        elif op == "add":
            results.put(store.add(key, secrets.token_hex(4), 60))
        elif op == "incr":
            results.put([store.incr(key, 60) for _ in range(10)])
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"error: {type(exc).__name__}: {exc}")


def run_race(backend: Backend, op: str, key: str) -> list[Any]:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(backend, op, key, start, results)) for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker import and connect
    start.set()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    errors = [r for r in out if isinstance(r, str) and r.startswith("error:")]
    assert not errors, errors
    return out


@pytest.mark.slow
def test_take_once_under_concurrency(backend):
    store = _open(backend, Clock())
    store.put("code:race", {"v": 42}, 60)
    out = run_race(backend, "take", "code:race")
    assert sorted(out, key=lambda r: r is None) == [{"v": 42}] + [None] * (PROCESSES - 1)
    assert store.get("code:race") is None


@pytest.mark.slow
def test_add_exactly_one_winner_under_concurrency(backend):
    out = run_race(backend, "add", "replay:jti")
    assert out.count(True) == 1 and out.count(False) == PROCESSES - 1


@pytest.mark.slow
def test_incr_counts_exactly_under_concurrency(backend):
    out = run_race(backend, "incr", "rate:race")
    seen = sorted(n for batch in out for n in batch)
    assert seen == list(range(1, PROCESSES * 10 + 1))  # no lost or doubled increments
    store = _open(backend, Clock())
    assert store.incr("rate:race", 60) == PROCESSES * 10 + 1
