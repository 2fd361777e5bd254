"""Fixtures for the identity model tests: an initialised database on SQLite and PostgreSQL.

Import them into a test module: ``from identity_support import realm_fixture  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from support import base_overrides, init_database

from idp.clock import FrozenClock
from idp.services import Services, build_services
from idp.settings import load_settings

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Realm:
    svc: Services
    clock: FrozenClock
    overrides: dict[str, Any]

    def session(self):
        return self.svc.sessions.begin()

    def count(self, model) -> int:
        with self.svc.sessions() as db:
            return int(db.scalar(select(func.count()).select_from(model)))

    def another_process(self) -> Services:
        """Services built again from the same settings: another worker's engine and store."""
        return build_services(load_settings(self.overrides), clock=self.clock)


@pytest.fixture(name="realm", params=["sqlite", "postgresql"])
def realm_fixture(request, instance_dir) -> Iterator[Realm]:
    extra: dict[str, Any] = {}
    if request.param == "postgresql":
        extra["database_url"] = request.getfixturevalue("pg_url")
    overrides = base_overrides(instance_dir, **extra)
    init_database(overrides)
    clock = FrozenClock(T0.timestamp())
    svc = build_services(load_settings(overrides), clock=clock)
    yield Realm(svc, clock, overrides)
    svc.engine.dispose()


@pytest.fixture(name="sqlite_realm")
def sqlite_realm_fixture(instance_dir) -> Iterator[Realm]:
    overrides = base_overrides(instance_dir)
    init_database(overrides)
    clock = FrozenClock(T0.timestamp())
    svc = build_services(load_settings(overrides), clock=clock)
    yield Realm(svc, clock, overrides)
    svc.engine.dispose()
