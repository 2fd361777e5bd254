"""The PostgreSQL + Redis tier: the OIDC, SAML and MFA tests run a second time with every app
they build on PostgreSQL (a database of its own) and Redis (a key prefix of its own).

Which tests: the files matching TIER_FILES. How it is switched on: ``--pg-tiers`` or
``IDP_TEST_PG_TIERS`` ("off", "also", "only"; the default is "also" for the whole-suite run
under CI=true, i.e. the README's test command in CI):

- also: every tier module is collected twice, as itself (SQLite, embedded store) and as a copy
  whose node ids carry ``::pg_redis::`` and the mark ``pg_tier`` (PostgreSQL + Redis);
- only: the tier modules are collected once, on PostgreSQL + Redis (node ids unchanged): to run
  or re-run the tier locally, e.g. ``pytest -n 2 --pg-tiers=only -m pg_tier``.

The switch sits in ``support.base_overrides``, which every app of the test suite is built from:
in a PostgreSQL test it adds ``database_url`` (unless the test chose its own), ``redis_url`` and
``store.redis_prefix`` (unless the test chose its own Redis). ``backend_env`` gives the same as
IDP_* variables for tests that start ``idp`` as a process.

Databases come from a per-process pool, migrated once: a database is given to one instance
folder, and when the fixture scope that asked for it ends (the test, or the module for a
module-scoped app) its connections are closed, its rows deleted and its sequences reset, and it
goes back to the pool. CREATE / DROP DATABASE per test cost 0.2 s + 1.5-7 s (DROP waits for a
checkpoint); emptying 60 tables costs about 15 ms. A Redis prefix is deleted at the same time.

Redis expires keys on its own clock, the SQL store on the app's (a FrozenClock in most tests):
while a PostgreSQL test runs, ``FrozenClock.advance(s)`` also ages the keys under the test's
prefixes by ``s`` (PTTL - s, deleted at 0), so a code or a counter expires on Redis when the
test moves time past its TTL, as it does in the SQL store.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent

# Paths relative to tests/ (fnmatch; "*" crosses "/").
TIER_FILES = (
    # OIDC
    "oidc/test_*.py",
    "flows/test_oidc_*.py",
    "flows/test_claims_per_rp_flow.py",
    # SAML (federation included)
    "test_saml_*.py",
    "flows/test_saml_*.py",
    "flows/test_mfa_saml.py",
    # MFA (TOTP, codes, WebAuthn)
    "test_mfa_*.py",
    "test_totp_steps.py",
    "test_webauthn_*.py",
)
MODES = ("off", "also", "only")
MARK = "pg_tier"
COPY_NAME = "pg_redis"
# Fixtures of tests that already choose their backend: not run again in the copy.
OWN_BACKEND_FIXTURES = {"pg_url", "pg_admin_url", "redis_url"}


def is_tier_file(path: Path) -> bool:
    try:
        rel = path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return False
    return any(fnmatch.fnmatch(rel, pattern) for pattern in TIER_FILES)


def mode_from(
    option: str | None, environ: dict[str, str] | None = None, whole_suite: bool = True
) -> str:
    """The option, else IDP_TEST_PG_TIERS, else "also" for a whole-suite run (no test paths
    given: the README's test command) under CI=true, else "off". Runs of chosen files (the
    mutation tier's, a developer's) are not doubled unless asked."""
    environ = dict(os.environ) if environ is None else environ
    value = (option or environ.get("IDP_TEST_PG_TIERS") or "").strip().lower()
    if not value:
        ci = environ.get("CI", "").lower() == "true"
        value = "also" if ci and whole_suite else "off"
    if value not in MODES:
        raise ValueError(f"--pg-tiers / IDP_TEST_PG_TIERS must be one of {MODES}, not {value!r}")
    return value


@dataclass
class _Lease:
    database: str | None  # None: the test chose its own database
    url: str | None
    prefix: str | None
    scope: str


@dataclass
class _State:
    active: bool = False  # the running test is a PostgreSQL + Redis test
    scopes: list[str] = field(default_factory=list)  # the fixtures being set up, innermost last
    leases: dict[str, _Lease] = field(default_factory=dict)  # instance folder -> lease
    free: list[str] = field(default_factory=list)  # emptied pool databases
    pool: list[str] = field(default_factory=list)  # every pool database of this process
    template: str | None = None
    admin: Any = None
    redis: Any = None


STATE = _State()


def _require(condition: bool, reason: str) -> None:
    from support import require

    require(condition, reason)


def _admin_url() -> str:
    url = os.environ.get("IDP_TEST_DATABASE_URL", "")
    _require(url.startswith("postgresql"), "the PostgreSQL tier needs IDP_TEST_DATABASE_URL")
    return url


def _redis_url() -> str:
    url = os.environ.get("IDP_TEST_REDIS_URL", "")
    _require(url.startswith("redis"), "the PostgreSQL + Redis tier needs IDP_TEST_REDIS_URL")
    return url


def _url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(_admin_url()).set(database=database).render_as_string(hide_password=False)


def _admin():
    if STATE.admin is None:
        from sqlalchemy import create_engine

        STATE.admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT", pool_size=1)
    return STATE.admin


def _redis():
    if STATE.redis is None:
        import redis

        STATE.redis = redis.Redis.from_url(_redis_url(), socket_connect_timeout=5)
    return STATE.redis


def _create_database(template: str | None = None) -> str:
    from sqlalchemy import text

    name = f"idp_tier_{os.getpid()}_{secrets.token_hex(4)}"
    sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    try:
        with _admin().connect() as conn:
            conn.execute(text(sql))
    except Exception as exc:  # the server is down or refuses: a missing tier
        _require(False, f"PostgreSQL at IDP_TEST_DATABASE_URL is not usable: {exc}")
    return name


def _acquire_database() -> str:
    if STATE.free:
        return STATE.free.pop()
    if STATE.template is None:
        from idp.storage.db import make_engine
        from idp.storage.migrate import upgrade

        template = _create_database()
        STATE.pool.append(template)  # dropped with the pool
        engine = make_engine(_url(template))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        STATE.template = template
    name = _create_database(STATE.template)
    STATE.pool.append(name)
    return name


def _empty_database(name: str) -> None:
    """Close every other connection to it, delete every row but the schema version, restart
    the sequences: as the template left it."""
    from sqlalchemy import text

    with _admin().connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": name},
        )
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(_url(name), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            tables = conn.scalars(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ).all()
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))  # noqa: S608 - our tables
            conn.execute(text("SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'"))
    finally:
        engine.dispose()


def _delete_prefix(prefix: str) -> None:
    r = _redis()
    batch = list(r.scan_iter(match=f"{prefix}*", count=500))
    if batch:
        r.delete(*batch)


# --- what support.base_overrides asks ------------------------------------------------------------


def overrides_for(instance: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The settings that put an app of ``instance`` on PostgreSQL + Redis (in a PostgreSQL
    test; ``{}`` otherwise). The same instance folder gets the same database and prefix."""
    if not STATE.active:
        return {}
    key = str(Path(instance).resolve())
    lease = STATE.leases.get(key)
    if lease is None:
        scope = STATE.scopes[-1] if STATE.scopes else "function"
        own_db = "database_url" in extra
        own_redis = "redis_url" in extra
        database = None if own_db else _acquire_database()
        prefix = None if own_redis else f"idpt-{secrets.token_hex(5)}:"
        if prefix is not None:
            _redis_url()
        lease = _Lease(database, _url(database) if database else None, prefix, scope)
        STATE.leases[key] = lease
    out: dict[str, Any] = {}
    if lease.url:
        out["database_url"] = lease.url
    if lease.prefix:
        out["redis_url"] = _redis_url()
        out["store"] = {**extra.get("store", {}), "redis_prefix": lease.prefix}
    return out


def env_for(instance: Path) -> dict[str, str]:
    """``overrides_for`` as the IDP_* variables of an ``idp`` process."""
    got = overrides_for(instance, {})
    env = {}
    if "database_url" in got:
        env["IDP_DATABASE_URL"] = got["database_url"]
    if "redis_url" in got:
        env["IDP_REDIS_URL"] = got["redis_url"]
        env["IDP_STORE_REDIS_PREFIX"] = got["store"]["redis_prefix"]
    return env


# --- what the conftest hooks call ---------------------------------------------------------------


def _age_prefix(r: Any, prefix: str, seconds: float) -> None:
    """Let ``seconds`` pass for the keys under ``prefix`` (back in time when negative)."""
    delta = int(seconds * 1000)
    keys = list(r.scan_iter(match=f"{prefix}*", count=500))
    if not keys or not delta:
        return
    with r.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.pttl(k)
        ttls = pipe.execute()
    with r.pipeline(transaction=False) as pipe:
        for k, ttl in zip(keys, ttls, strict=True):
            if ttl < 0:  # no expiry (-1) or gone (-2)
                continue
            left = ttl - delta
            if left <= 0:
                pipe.delete(k)
            else:
                pipe.pexpire(k, left)
        pipe.execute()


def age(seconds: float) -> None:
    """Time moved by ``seconds`` on a FrozenClock: age the Redis keys of the running test."""
    if not STATE.active or not seconds:
        return
    for lease in STATE.leases.values():
        if lease.prefix is not None:
            _age_prefix(_redis(), lease.prefix, seconds)


def age_store(store: Any, seconds: float) -> None:
    """Age the keys of one RedisStore (``support.clock_swapped``)."""
    _age_prefix(store._redis, store._prefix, seconds)


def release(scopes: set[str]) -> None:
    """Give back the databases and prefixes taken while a fixture of ``scopes`` (or the test
    itself: "function") was being set up."""
    for key, lease in list(STATE.leases.items()):
        if lease.scope not in scopes:
            continue
        del STATE.leases[key]
        if lease.prefix is not None:
            _delete_prefix(lease.prefix)
        if lease.database is not None:
            _empty_database(lease.database)
            STATE.free.append(lease.database)


def drop_pool() -> None:
    release({"function", "class", "module", "package", "session"})
    if STATE.admin is not None:
        from sqlalchemy import text

        with STATE.admin.connect() as conn:
            for name in STATE.pool:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        STATE.admin.dispose()
        STATE.admin = None
    STATE.pool.clear()
    STATE.free.clear()
    STATE.template = None
    if STATE.redis is not None:
        STATE.redis.close()
        STATE.redis = None
