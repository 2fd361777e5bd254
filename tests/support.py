"""Helpers shared by test packages (plain functions; fixtures live in conftest.py files)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

MAX_AUTO_WORKERS = 4  # PostgreSQL's 100 connections and the served tests' own workers


def default_workers(environ: dict[str, str] | None = None) -> int:
    """Worker processes for a whole-suite run: IDP_TEST_WORKERS ("auto", a number, 0 = none),
    else under CI=true one per CPU (at most MAX_AUTO_WORKERS), else 0."""
    environ = dict(os.environ) if environ is None else environ
    value = environ.get("IDP_TEST_WORKERS", "").strip().lower()
    cpus = min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
    if value == "auto":
        return cpus
    if value:
        return max(0, int(value))
    return cpus if environ.get("CI", "").lower() == "true" else 0


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a tier's dependency is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this tier: {reason}")
    pytest.skip(reason)


def base_overrides(instance: Path, **extra: Any) -> dict[str, Any]:
    """The settings of a test app in ``instance``; in a test of the PostgreSQL + Redis tier
    (tests/pg_tier.py) also its own database and Redis prefix, unless ``extra`` names them.
    Settings changed by another app on the same database (a CLI run, a second "worker") are
    read before every request, as tests expect them at once; the poll window has its own test."""
    import pg_tier

    overrides: dict[str, Any] = {"instance_dir": str(instance), "logging": {"access_log": False}}
    overrides.update(extra)
    overrides["server"] = {"reload_poll_seconds": 0, **extra.get("server", {})}
    overrides.update(pg_tier.overrides_for(instance, extra))
    return overrides


def backend_env(instance: Path) -> dict[str, str]:
    """For a test that runs ``idp`` as a process on ``instance``: the IDP_* variables of the
    tier's database and Redis (none on SQLite)."""
    import pg_tier

    return pg_tier.env_for(instance)


def init_database(overrides: dict[str, Any]) -> None:
    """What `idp init` does to storage: migrate, then create signing keys and role templates."""
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.storage.migrate import upgrade
    from idp.storage.seed import seed_role_templates

    svc = build_services(load_settings(overrides))
    upgrade(svc.engine)
    svc.keys.ensure()
    with svc.sessions.begin() as db:
        seed_role_templates(db)
    svc.engine.dispose()


@contextmanager
def clock_swapped(svc: Any, clock: Any) -> Iterator[Any]:
    """Run with ``clock`` as the app's clock, also for its short-lived store: the SQL store
    reads the clock it was given; Redis expires keys on its own, so the keys under the app's
    prefix are aged by the time between the two clocks (and given it back after)."""
    import pg_tier

    real = svc.clock
    sql = hasattr(svc.store, "_clock")
    moved = clock.now() - real.now()
    svc.clock = clock
    if sql:
        svc.store._clock = clock
    else:
        pg_tier.age_store(svc.store, moved)
    try:
        yield clock
    finally:
        moved = clock.now() - real.now()
        svc.clock = real
        if sql:
            svc.store._clock = real
        else:
            pg_tier.age_store(svc.store, -moved)


def store_keys(svc: Any, prefix: str = "", live: bool = False) -> list[str]:
    """The keys starting with ``prefix`` in the app's short-lived store, whichever it is: the
    table in the database (``live``: only those not expired by the app's clock) or Redis,
    under the app's key prefix (Redis holds no expired key)."""
    store = svc.store
    if hasattr(store, "_redis"):
        own = store._prefix
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in own + prefix) + "*"
        found = store._redis.scan_iter(match=pattern, count=500)
        return sorted(k.decode()[len(own) :] for k in found)
    from sqlalchemy import select

    from idp.storage.models import KVEntry

    query = select(KVEntry.key).where(KVEntry.key.startswith(prefix, autoescape=True))
    if live:
        query = query.where(KVEntry.expires_at > svc.clock.now())
    with svc.sessions() as db:
        return sorted(db.scalars(query))


def store_items(svc: Any, *prefixes: str) -> dict[str, Any]:
    """``store_keys`` of each prefix with what the store answers for them."""
    return {k: svc.store.get(k) for p in prefixes for k in store_keys(svc, p)}


def database_dump(svc: Any) -> str:
    """Every value of every row of every table of the app's database (the embedded store's
    table included), as text; bytes decoded leniently."""
    from sqlalchemy import text

    from idp.storage.models import Base

    parts = []
    with svc.engine.connect() as conn:
        for name in Base.metadata.tables:
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):  # noqa: S608 (our names)
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        parts.append(bytes(value).decode("utf-8", "replace"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts)


def database_url(instance: Path) -> str:
    """The database of the apps and ``idp`` commands of ``instance``: the tier's PostgreSQL
    database, else the SQLite file in it."""
    return backend_env(instance).get("IDP_DATABASE_URL") or f"sqlite:///{instance / 'idp.db'}"


def set_instance_env(monkeypatch: Any, instance: Path) -> None:
    """IDP_INSTANCE_DIR for ``idp`` commands run in-process, with the tier's database and
    Redis (``backend_env``)."""
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance))
    for name, value in backend_env(instance).items():
        monkeypatch.setenv(name, value)


def boundary_step(svc: Any) -> int:
    """How close to a store TTL a boundary test on a frozen clock may step: one second on the
    SQL store (it reads the app's clock); 30 on Redis, whose TTLs also run on real time while
    the test works (tests/pg_tier.py ages them when the frozen clock moves, but the seconds a
    slow machine spends between two steps count too)."""
    return 1 if hasattr(svc.store, "_clock") else 30
