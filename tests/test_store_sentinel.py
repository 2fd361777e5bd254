"""Redis behind Sentinel (``IDP_REDIS_URL=redis+sentinel://host:port[,host:port]/service[/db]``):
real redis-server processes — a master, a replica and a Sentinel — started by the test. The
store finds the master through the Sentinel, and after a failover it writes to the promoted
replica and still reads what was written before, without a restart; the app's readiness probe
follows. Bad Sentinel URLs stop the start with one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from support import require

from idp.errors import ConfigError
from idp.settings import load_settings, redact_url
from idp.storage.store import RedisStore

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], workdir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", *args], cwd=workdir, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"redis-server on {port} did not start")


def _until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds}s (last: {last})")


@pytest.fixture
def sentinel_setup(tmp_path: Path):
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    master, replica, sentinel = free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = [
        _start(["--port", str(master), *common], tmp_path, master),
        _start(["--port", str(replica), *common, "--replicaof", "127.0.0.1", str(master)],
               tmp_path, replica),
    ]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\n"
        f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 10000\n"
    )
    procs.append(_start([str(conf), "--sentinel"], tmp_path, sentinel))
    try:
        yield {"master": master, "replica": replica, "sentinel": sentinel}
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the servers this test started
                proc.wait(10)


def test_the_store_follows_a_failover(sentinel_setup, make_app):
    ports = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{ports['sentinel']}/mymaster/0"
    store = RedisStore(url, "sentinel-test:", timeout=2)
    store.put("before", {"v": 1}, 60)
    master = redis.Redis(port=ports["master"])
    assert master.get("sentinel-test:before") is not None, "written to the master"
    assert master.wait(1, 5000) == 1  # and replicated

    app = make_app(redis_url=url)
    assert app.test_client().get("/readyz").status_code == 200

    sentinel = redis.Redis(port=ports["sentinel"], decode_responses=True)
    _until(lambda: sentinel.sentinel_slaves("mymaster"), 30, "the Sentinel knew the replica")
    sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
    _until(
        lambda: sentinel.sentinel_get_master_addr_by_name("mymaster")[1] == str(ports["replica"])
        or int(sentinel.sentinel_get_master_addr_by_name("mymaster")[1]) == ports["replica"],
        30,
        "the replica was promoted",
    )

    # The failover is over when the old master has become a replica (until then it still
    # takes writes, which Redis's asynchronous replication may lose: Sentinel's known window).
    _until(lambda: master.role()[0] == b"slave", 30, "the old master was demoted")

    def written() -> bool:
        store.put("after", {"v": 2}, 60)
        return True

    _until(written, 15, "the store wrote to the new master")
    assert redis.Redis(port=ports["replica"]).get("sentinel-test:after") is not None
    assert store.get("before") == {"v": 1}
    _until(lambda: app.test_client().get("/readyz").status_code == 200, 15, "ready again")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1/mymaster",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/mymaster/zero",
        "redis+sentinel://127.0.0.1:99999/mymaster",
    ],
)
def test_bad_sentinel_urls_are_one_line(url, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"instance_dir": str(tmp_path), "redis_url": url})
    assert "\n" not in str(err.value) and "redis_url" in str(err.value)


def test_sentinel_password_is_redacted():
    shown = redact_url("redis+sentinel://:hunter2@10.0.0.1:26379,10.0.0.2:26379/mymaster")
    assert "hunter2" not in shown and "10.0.0.2:26379/mymaster" in shown
