"""Session limits across worker processes (issue 19: "session limits across two workers"):
a real ``idp serve --workers 2`` server and eight browsers signing in as one user at the same
moment. The per-user lock in the shared store serializes the check, so exactly the limit's
number of sessions is left (end_oldest) or admitted (refuse), and the index table agrees.
Run on SQLite with the embedded store, and on PostgreSQL with Redis when those are set."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from threading import Barrier

import pytest
import requests
from sqlalchemy import create_engine, func, select

from idp.storage.models_auth import SsoSessionIndex

pytestmark = pytest.mark.slow

IDP = str(Path(sys.executable).parent / "idp")
PASSWORD = "Served-Horse-Battery-42"
BROWSERS = 8
LIMIT = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(
    workdir: Path, action: str, config_text: str = "", **env_extra: str
) -> Iterator[tuple[str, dict]]:
    """``idp serve --workers 2`` with user ann, the session limit's ``action`` and any more
    ``config_text`` (TOML) in its configuration file."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = workdir / "idp.toml"
    config.write_text(
        f'[session]\nmax_per_user = {LIMIT}\nlimit_action = "{action}"\n' + config_text
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_INSTANCE_DIR=str(workdir / "instance"),
        IDP_ISSUER=base,
        IDP_CONFIG=str(config),
        **env_extra,
    )
    for cmd in (
        [IDP, "init", "--admin-password", PASSWORD],
        [
            IDP,
            "users",
            "create",
            "--username",
            "ann",
            "--email",
            "ann@example.org",
            "--password",
            PASSWORD,
        ],
    ):
        done = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    log = (workdir / "server.log").open("w+")
    proc = subprocess.Popen(
        [IDP, "serve", "--workers", "2", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.25)
        yield base, env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # our own server's process group, by its id
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def parallel_logins(base: str) -> list[tuple[requests.Session, int]]:
    """Eight browsers fetch the login form, then post it at the same moment."""
    barrier = Barrier(BROWSERS)

    def one(_: int) -> tuple[requests.Session, int]:
        browser = requests.Session()
        page = browser.get(f"{base}/login", timeout=30).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        barrier.wait(30)
        resp = browser.post(
            f"{base}/login",
            data={"csrf_token": token, "username": "ann", "password": PASSWORD},
            allow_redirects=False,
            timeout=60,
        )
        return browser, resp.status_code

    with ThreadPoolExecutor(BROWSERS) as pool:
        return list(pool.map(one, range(BROWSERS)))


def signed_in(base: str, browser: requests.Session) -> bool:
    return browser.get(f"{base}/account/", allow_redirects=False, timeout=30).status_code == 200


def index_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(SsoSessionIndex))
    finally:
        engine.dispose()


def run(workdir: Path, action: str, database_url: str, **env_extra: str) -> None:
    with served(workdir, action, **env_extra) as (base, _):
        results = parallel_logins(base)
        codes = sorted(code for _, code in results)
        live = [b for b, code in results if code == 302 and signed_in(base, b)]
        if action == "refuse":
            assert codes == [302] * LIMIT + [403] * (BROWSERS - LIMIT), codes
        else:
            assert codes == [302] * BROWSERS, codes
        assert len(live) == LIMIT
        # The admin's console session is not among them: only ann signed in.
        assert index_rows(database_url) == LIMIT


@pytest.mark.parametrize("action", ["end_oldest", "refuse"])
def test_limit_holds_across_two_workers_on_sqlite(tmp_path, action):
    run(tmp_path, action, f"sqlite:///{tmp_path / 'instance' / 'idp.db'}")


@pytest.mark.postgres
@pytest.mark.redis
def test_limit_holds_across_two_workers_on_postgresql_and_redis(tmp_path, pg_url, redis_url):
    run(tmp_path, "end_oldest", pg_url, IDP_DATABASE_URL=pg_url, IDP_REDIS_URL=redis_url)
