"""Shared fixtures.

Tiers that need outside services read them from the environment:
  IDP_TEST_DATABASE_URL  a PostgreSQL URL (postgresql+psycopg://...) the tests may create
                         databases with; each test gets a fresh database that is dropped after.
  IDP_TEST_REDIS_URL     a Redis URL; each test uses its own key prefix.
Without them those tests skip with the reason printed; with CI=true a skip is a failure.

The OIDC, SAML and MFA tiers also run on PostgreSQL + Redis (tests/pg_tier.py, ``--pg-tiers``;
under CI=true every tier module runs twice), and the whole-suite run is spread over worker
processes with pytest-xdist under CI=true or IDP_TEST_WORKERS (pytest_cmdline_main below).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg_tier
import pytest
import secret_watch
from support import IN_CI, base_overrides, default_workers, init_database, require

# --- worker processes ----------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The README's test command (`.venv/bin/pytest`, no arguments) runs under xdist in CI:
    about 21 minutes on two CPUs instead of 46. Tests are handed out one module at a time
    (--dist loadscope: a module's app is built once per worker that runs it, and the
    PostgreSQL copy of a tier module is a scope of its own). Only when nothing chose otherwise:
    not with -n / -p no:xdist / --pdb / explicit test paths (a developer running one file, the
    nested pytest runs of the mutation tier and of test_ci_skips_fail.py), not in a worker."""
    if not config.pluginmanager.hasplugin("xdist") or "PYTEST_XDIST_WORKER" in os.environ:
        return
    if config.option.numprocesses is not None or config.getoption("usepdb", False):
        return
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    workers = default_workers()
    if workers > 1:
        config.option.numprocesses = workers
        if config.option.dist == "no":
            config.option.dist = "loadscope"


# --- the PostgreSQL + Redis tier -----------------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--pg-tiers",
        choices=pg_tier.MODES,
        default=None,
        help="run the OIDC, SAML and MFA tiers on PostgreSQL + Redis: 'also' (a second copy of "
        "each module, the default under CI=true), 'only' (instead of SQLite) or 'off'; "
        "default from IDP_TEST_PG_TIERS",
    )


def pytest_configure(config):
    # Every log line of the session is kept and checked for secrets at its end
    # (tests/secret_watch.py).
    config.pluginmanager.register(secret_watch.Plugin(config), "secret_watch")
    config.addinivalue_line("markers", f"{pg_tier.MARK}: a test of the PostgreSQL + Redis tier")
    whole_suite = config.args_source is pytest.Config.ArgsSource.TESTPATHS
    mode = pg_tier.mode_from(config.getoption("--pg-tiers", None), whole_suite=whole_suite)
    config.stash[_PG_MODE] = mode
    if mode != "off":
        from idp.clock import FrozenClock

        if not getattr(FrozenClock.advance, "_ages_redis", False):
            original = FrozenClock.advance

            def advance(self, seconds: float) -> None:
                original(self, seconds)
                pg_tier.age(seconds)

            advance._ages_redis = True
            FrozenClock.advance = advance


_PG_MODE = pytest.StashKey[str]()


def _pg_module(parent, path: Path, copy: bool) -> pytest.Module:
    kw: dict[str, Any] = {}
    if copy:
        try:
            rel = path.relative_to(parent.config.rootpath).as_posix()
        except ValueError:
            rel = path.as_posix()
        kw["nodeid"] = f"{rel}::{pg_tier.COPY_NAME}"
    module = pytest.Module.from_parent(parent, path=path, **kw)
    module.add_marker(pg_tier.MARK)
    module.stash[_ON_PG] = True
    return module


_ON_PG = pytest.StashKey[bool]()


def pytest_pycollect_makemodule(module_path, parent):
    if parent.config.stash[_PG_MODE] == "only" and pg_tier.is_tier_file(module_path):
        return _pg_module(parent, module_path, copy=False)
    return None


def pytest_collect_file(file_path, parent):
    if (
        parent.config.stash[_PG_MODE] == "also"
        and file_path.suffix == ".py"
        and pg_tier.is_tier_file(file_path)
    ):
        return _pg_module(parent, file_path, copy=True)
    return None


def _on_pg(item) -> bool:
    module = item.getparent(pytest.Module)
    return module is not None and module.stash.get(_ON_PG, False)


def pytest_collection_modifyitems(config, items):
    """The copy leaves out tests that choose their backend themselves (pg_url, redis_url):
    they run with it in the module's first copy already."""
    if config.stash[_PG_MODE] != "also":
        return
    keep, drop = [], []
    for item in items:
        chooses = pg_tier.OWN_BACKEND_FIXTURES & set(getattr(item, "fixturenames", ()))
        (drop if _on_pg(item) and chooses else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    pg_tier.STATE.active = _on_pg(item)
    try:
        return (yield)
    finally:
        pg_tier.STATE.active = False


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Which scope a database is taken in: the innermost fixture being set up."""
    pg_tier.STATE.scopes.append(fixturedef.scope)
    try:
        return (yield)
    finally:
        pg_tier.STATE.scopes.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the test's fixtures are torn down, its databases and Redis prefixes go back to
    the pool; the module's when the next test is in another module (or there is none)."""
    try:
        return (yield)
    finally:
        scopes = {"function"}
        here = item.getparent(pytest.Module)
        if nextitem is None or nextitem.getparent(pytest.Module) is not here:
            scopes |= {"class", "module"}
        if pg_tier.STATE.leases:
            pg_tier.release(scopes)


def pytest_sessionfinish(session):
    pg_tier.drop_pool()


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
