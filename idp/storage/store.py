"""The short-lived store: a table in the SQL database (embedded default) or Redis.

Both are correct across worker processes and nodes: every operation is one atomic statement
(SQL: upsert / ``DELETE ... RETURNING``; Redis: native commands and one Lua script).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import Clock
from .models import KVEntry

_TABLE = KVEntry.__table__


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class SqlStore:
    """Embedded store on the application's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, clock: Clock, purge_interval: float = 60.0) -> None:
        self._engine = engine
        self._clock = clock
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    def _maybe_purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        with self._engine.begin() as conn:
            conn.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now))

    def _upsert(self, key: str, value: Any, ttl: float, now: float, **conflict):
        """INSERT, or overwrite on a key clash (``conflict``: e.g. a ``where`` limiting which
        existing rows may be overwritten)."""
        self._maybe_purge(now)
        stmt = self._insert(_TABLE).values(key=key, value=_dumps(value), counter=0,
                                           expires_at=now + ttl)
        return stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "counter": 0,
                  "expires_at": stmt.excluded.expires_at},
            **conflict,
        )

    def put(self, key: str, value: Any, ttl: float) -> None:
        stmt = self._upsert(key, value, ttl, self._clock.now())
        with self._engine.begin() as conn:
            conn.execute(stmt)

    def add(self, key: str, value: Any, ttl: float) -> bool:
        now = self._clock.now()
        # Replace only an expired entry; a live one makes the statement update nothing.
        stmt = self._upsert(key, value, ttl, now,
                            where=_TABLE.c.expires_at <= now).returning(_TABLE.c.key)
        with self._engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    def get(self, key: str) -> Any | None:
        now = self._clock.now()
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_TABLE.c.value, _TABLE.c.counter).where(
                    _TABLE.c.key == key, _TABLE.c.expires_at > now
                )
            ).first()
        if row is None:
            return None
        # A counter made by incr() has no value: read it as its number, as Redis does.
        return row.counter if row.value is None else json.loads(row.value)

    def take(self, key: str) -> Any | None:
        now = self._clock.now()
        stmt = (
            delete(_TABLE).where(_TABLE.c.key == key).returning(_TABLE.c.value, _TABLE.c.expires_at)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.expires_at <= now or row.value is None:
            return None
        return json.loads(row.value)

    def delete(self, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(_TABLE).where(_TABLE.c.key == key))

    def incr(self, key: str, ttl: float) -> int:
        now = self._clock.now()
        self._maybe_purge(now)
        stmt = self._insert(_TABLE).values(key=key, value=None, counter=1, expires_at=now + ttl)
        expired = _TABLE.c.expires_at <= now
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "counter": case((expired, 1), else_=_TABLE.c.counter + 1),
                "expires_at": case((expired, stmt.excluded.expires_at), else_=_TABLE.c.expires_at),
            },
        ).returning(_TABLE.c.counter)
        with self._engine.begin() as conn:
            return int(conn.execute(stmt).scalar_one())

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))


_INCR_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RedisStore:
    """Store on Redis (``IDP_REDIS_URL``); keys are prefixed so deployments can share a server."""

    def __init__(self, url: str, prefix: str = "idp:", timeout: float = 5.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._prefix = prefix
        self._incr = self._redis.register_script(_INCR_LUA)

    def _k(self, key: str) -> str:
        return self._prefix + key

    @staticmethod
    def _ms(ttl: float) -> int:
        return max(1, int(ttl * 1000))

    def put(self, key: str, value: Any, ttl: float) -> None:
        self._redis.set(self._k(key), _dumps(value), px=self._ms(ttl))

    def add(self, key: str, value: Any, ttl: float) -> bool:
        return bool(self._redis.set(self._k(key), _dumps(value), px=self._ms(ttl), nx=True))

    def get(self, key: str) -> Any | None:
        raw = self._redis.get(self._k(key))
        return None if raw is None else json.loads(raw)

    def take(self, key: str) -> Any | None:
        raw = self._redis.getdel(self._k(key))
        return None if raw is None else json.loads(raw)

    def delete(self, key: str) -> None:
        self._redis.delete(self._k(key))

    def incr(self, key: str, ttl: float) -> int:
        return int(self._incr(keys=[self._k(key)], args=[self._ms(ttl)]))

    def ping(self) -> None:
        self._redis.ping()


def make_store(settings, engine: Engine, clock: Clock):
    if settings.redis_url:
        return RedisStore(
            settings.redis_url,
            settings.store.redis_prefix,
            timeout=settings.database.connect_timeout,
        )
    return SqlStore(engine, clock, settings.store.purge_interval)
