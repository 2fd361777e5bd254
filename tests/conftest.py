"""Shared fixtures.

Tiers that need outside services read them from the environment:
  IDP_TEST_DATABASE_URL  a PostgreSQL URL (postgresql+psycopg://...) the tests may create
                         databases with; each test gets a fresh database that is dropped after.
  IDP_TEST_REDIS_URL     a Redis URL; each test uses its own key prefix.
Without them those tests skip with the reason printed; with CI=true a skip is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import secret_watch
from support import IN_CI, base_overrides, init_database, require


def pytest_configure(config):
    """Every log line of the session is kept and checked for secrets at its end
    (tests/secret_watch.py)."""
    config.pluginmanager.register(secret_watch.Plugin(config), "secret_watch")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI=true a skip is a failure, whoever skips (require(), pytest.skip, a skip mark,
    importorskip): CI must run every tier, so a missing one cannot pass unnoticed."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which fails the run: {reason}"


@pytest.fixture(autouse=True, scope="session")
def _clean_environment() -> Iterator[None]:
    """The developer's own IDP_* settings must not leak into tests."""
    saved = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("IDP_") and not k.startswith("IDP_TEST_")
    }
    for k in saved:
        del os.environ[k]
    yield
    os.environ.update(saved)


@pytest.fixture
def instance_dir(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    return path


@pytest.fixture
def make_app(instance_dir: Path) -> Callable[..., Any]:
    """Build an initialised app: make_app(**overrides) -> Flask app."""
    from idp.app import create_app

    apps = []

    def factory(clock=None, **extra: Any):
        overrides = base_overrides(instance_dir, **extra)
        init_database(overrides)
        app = create_app(overrides, clock=clock)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        # Mails still queued are sent (and logged) within the test that queued them.
        queue = app.extensions["idp"].mail_queue
        if queue is not None:
            queue.wait_idle(15)
            queue.stop()  # its thread must not outlive the test's database
        app.extensions["idp"].engine.dispose()


@pytest.fixture
def clock():
    """A frozen clock for tests that move time (a module may define its own)."""
    from idp.clock import FrozenClock

    return FrozenClock(1_800_000_000.0)


@pytest.fixture
def app(make_app, clock):
    """An initialised app on the frozen ``clock`` (a module may define its own)."""
    return make_app(clock=clock)


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


@pytest.fixture
def pg_admin_url() -> str:
    url = os.environ.get("IDP_TEST_DATABASE_URL", "")
    require(url.startswith("postgresql"), "IDP_TEST_DATABASE_URL (PostgreSQL) is not set")
    return url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"idp_test_{secrets.token_hex(6)}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is down or refuses: a missing tier
        admin.dispose()
        require(False, f"PostgreSQL at IDP_TEST_DATABASE_URL is not usable: {exc}")
    yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("IDP_TEST_REDIS_URL", "")
    require(url.startswith("redis"), "IDP_TEST_REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require(False, f"Redis at IDP_TEST_REDIS_URL is not reachable: {exc}")
    return url


@pytest.fixture
def fed_env(tmp_path, make_app):
    """An app with the SAML federation "testfed" (tests/federation_kit.py): (svc, key, cert)."""
    from federation_kit import add_federation

    svc = make_app().extensions["idp"]
    key, cert = add_federation(svc, tmp_path)
    return svc, key, cert
