"""The PostgreSQL + Redis tier (tests/pg_tier.py) and the worker default (tests/conftest.py).

The tier is proved on a throw-away tier module run by a nested pytest with this suite's own
conftest.py, support.py and pg_tier.py: its apps are on SQLite in the first copy and on
PostgreSQL + Redis in the second, time moved on the frozen clock expires Redis keys, and what a
test took (a database, a key prefix) is gone after the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pg_tier
import pytest
from sqlalchemy import create_engine, text
from support import MAX_AUTO_WORKERS, default_workers

TESTS = Path(__file__).resolve().parent

TIER_MODULE = """
import json
import os

import pytest

OUT = os.environ["TIER_OUT"]


def _record(request, **facts):
    with open(OUT, "a") as fh:
        fh.write(json.dumps({"id": request.node.nodeid, **facts}) + "\\n")


@pytest.fixture(scope="module")
def module_app(tmp_path_factory):
    from support import base_overrides, init_database

    from idp.app import create_app

    instance = tmp_path_factory.mktemp("m") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides)
    yield app
    app.extensions["idp"].engine.dispose()


def test_apps_of_the_copy_are_on_postgresql_and_redis(request, make_app, clock, module_app):
    on_pg = request.node.get_closest_marker("pg_tier") is not None
    svc = make_app(clock=clock).extensions["idp"]
    again = make_app(clock=clock).extensions["idp"]  # the same instance folder
    mod = module_app.extensions["idp"]
    assert svc.engine.dialect.name == mod.engine.dialect.name == (
        "postgresql" if on_pg else "sqlite")
    assert type(svc.store).__name__ == ("RedisStore" if on_pg else "SqlStore")
    assert again.settings.database_url == svc.settings.database_url
    assert mod.settings.database_url != svc.settings.database_url
    # The frozen clock moves the Redis keys' time too.
    svc.store.put("code:x", {"n": 1}, 60)
    clock.advance(59)
    assert svc.store.get("code:x") == {"n": 1}
    clock.advance(2)
    assert svc.store.get("code:x") is None
    # Left behind for the next test, which must not see them.
    svc.store.put("left:behind", 1, 600)
    from idp.storage.directory import Directory, NewUser

    with svc.sessions.begin() as db:
        Directory(db).create_user(NewUser(username="left-behind", email="l@example.org"))
    _record(request, pg=on_pg, url=svc.settings.database_url,
            module_url=mod.settings.database_url,
            prefix=svc.settings.store.redis_prefix if on_pg else None)


def test_a_second_test_gets_an_empty_database(request, make_app, clock):
    from sqlalchemy import func, select

    from idp.storage.models import User

    from idp.storage.directory import Directory, NewUser

    svc = make_app(clock=clock).extensions["idp"]
    assert svc.store.get("left:behind") is None
    with svc.sessions.begin() as db:
        Directory(db).create_user(NewUser(username="only-here", email="o@example.org"))
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 1
    _record(request, pg=request.node.get_closest_marker("pg_tier") is not None,
            url=svc.settings.database_url)
"""


@pytest.fixture
def tier_suite(tmp_path: Path) -> Path:
    for helper in ("conftest.py", "support.py", "pg_tier.py", "secret_watch.py"):
        shutil.copy(TESTS / helper, tmp_path / helper)
    (tmp_path / "test_mfa_tier_probe.py").write_text(TIER_MODULE)
    return tmp_path


def _pytest(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    out = folder / "facts.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "IDP_TEST_PG_TIERS")}
    env["TIER_OUT"] = str(out)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--rootdir",
            str(folder),
            *args,
            str(folder / "test_mfa_tier_probe.py"),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    facts = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return run, facts


def _databases(admin_url: str) -> set[str]:
    engine = create_engine(admin_url)
    with engine.connect() as conn:
        names = set(conn.scalars(text("SELECT datname FROM pg_database")))
    engine.dispose()
    return names


@pytest.mark.slow
def test_also_runs_each_tier_module_again_on_postgresql_and_redis(
    tier_suite, pg_admin_url, redis_url
):
    import redis

    run, facts = _pytest(tier_suite, "--pg-tiers=also")
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.stdout.splitlines()[-1].startswith("4 passed")
    ids = sorted(f["id"] for f in facts)
    assert ids == [
        "test_mfa_tier_probe.py::pg_redis::test_a_second_test_gets_an_empty_database",
        "test_mfa_tier_probe.py::pg_redis::test_apps_of_the_copy_are_on_postgresql_and_redis",
        "test_mfa_tier_probe.py::test_a_second_test_gets_an_empty_database",
        "test_mfa_tier_probe.py::test_apps_of_the_copy_are_on_postgresql_and_redis",
    ]
    on_pg = [f for f in facts if f["pg"]]
    assert len(on_pg) == 2 and all(f["url"].startswith("postgresql+psycopg://") for f in on_pg)
    # The second test was given the first one's database back, emptied.
    assert on_pg[0]["url"] == on_pg[1]["url"] != on_pg[0]["module_url"]
    assert all(f["url"].startswith("sqlite:") for f in facts if not f["pg"])
    # The pool's databases and the test's keys are gone with the run.
    names = {f["url"].rsplit("/", 1)[1] for f in on_pg} | {on_pg[0]["module_url"].rsplit("/")[-1]}
    assert names and not names & _databases(pg_admin_url)
    prefix = next(f["prefix"] for f in on_pg if f.get("prefix"))
    r = redis.Redis.from_url(redis_url)
    assert list(r.scan_iter(match=f"{prefix}*")) == []
    r.close()


@pytest.mark.slow
def test_only_runs_the_tier_on_postgresql_alone_with_its_usual_ids(
    tier_suite, pg_admin_url, redis_url
):
    run, facts = _pytest(tier_suite, "--pg-tiers=only", "-m", pg_tier.MARK)
    assert run.returncode == 0, run.stdout[-3000:]
    assert sorted(f["id"] for f in facts) == [
        "test_mfa_tier_probe.py::test_a_second_test_gets_an_empty_database",
        "test_mfa_tier_probe.py::test_apps_of_the_copy_are_on_postgresql_and_redis",
    ]
    assert all(f["pg"] for f in facts)


def test_tier_files_are_the_oidc_saml_and_mfa_tests():
    tier = sorted(
        p.relative_to(TESTS).as_posix() for p in TESTS.rglob("test_*.py") if pg_tier.is_tier_file(p)
    )
    for expected in (
        "oidc/test_rfc6749_code_flow.py",
        "flows/test_oidc_rp_flow.py",
        "flows/test_saml_sso_pysaml2.py",
        "flows/test_mfa_saml.py",
        "test_saml_federation.py",
        "test_mfa_totp.py",
        "test_webauthn_login.py",
        "test_totp_steps.py",
    ):
        assert expected in tier
    assert not any(p.startswith(("admin/", "api/", "scim/", "browser/")) for p in tier)
    assert "test_login_flow.py" not in tier


def test_ci_defaults():
    assert pg_tier.mode_from(None, {"CI": "true"}) == "also"
    assert pg_tier.mode_from(None, {"CI": "true"}, whole_suite=False) == "off"
    assert pg_tier.mode_from(None, {}) == "off"
    assert pg_tier.mode_from(None, {"CI": "true", "IDP_TEST_PG_TIERS": "off"}) == "off"
    assert pg_tier.mode_from("only", {"IDP_TEST_PG_TIERS": "off"}) == "only"
    with pytest.raises(ValueError, match="must be one of"):
        pg_tier.mode_from("sometimes", {})
    cpus = min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
    assert default_workers({}) == 0
    assert default_workers({"CI": "true"}) == cpus
    assert default_workers({"CI": "true", "IDP_TEST_WORKERS": "0"}) == 0
    assert default_workers({"IDP_TEST_WORKERS": "2"}) == 2
    assert default_workers({"IDP_TEST_WORKERS": "auto"}) == cpus


WORKER_PROBE = """
import os


def test_where_it_runs():
    with open(os.environ["TIER_OUT"], "a") as fh:
        fh.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra,args,where",
    [
        ({"CI": "true"}, [], "gw"),  # the README's command in CI: workers
        ({"CI": "true", "IDP_TEST_WORKERS": "0"}, [], "main"),
        ({"CI": "true"}, ["test_probe.py"], "main"),  # a chosen file: as asked
        ({}, [], "main"),  # a developer's whole-suite run without CI
    ],
)
def test_the_whole_suite_run_spreads_over_workers_in_ci(tmp_path, extra, args, where):
    for helper in ("conftest.py", "support.py", "pg_tier.py", "secret_watch.py"):
        shutil.copy(TESTS / helper, tmp_path / helper)
    (tmp_path / "test_probe.py").write_text(WORKER_PROBE)
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["."]\n')
    out = tmp_path / "where.txt"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "IDP_TEST_WORKERS", "IDP_TEST_PG_TIERS", "PYTEST_XDIST_WORKER")
    }
    env.update(extra, TIER_OUT=str(out))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert out.read_text().startswith(where), run.stdout[-3000:]
