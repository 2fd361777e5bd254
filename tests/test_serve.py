"""The installed product, served for real (slow tier, one server for the module).

A wheel is built from the checkout and installed into a fresh venv; ``idp`` must import from that
wheel (templates, config and migrations bundled), run from a directory outside the repository.
Then ``idp init`` and ``idp serve --workers 2``: readiness, discovery, JWKS; a second server on
the same port fails in one line; ``/readyz`` follows a Redis outage and recovers without restart.
``gunicorn wsgi:app`` from the checkout still serves.
"""

from __future__ import annotations

import json
import os
import signal
import site
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(extra)
    return env


def wait_for(url: str, status: int = 200, timeout: float = 60.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url, timeout=3)
            if resp.status_code == status:
                return resp
            last = f"{resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s: {last}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process this test started, by its PID (and its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Redis:
    """A private redis-server on a free port, so the test may stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def wheel_venv(workdir: Path) -> Path:
    """A venv with only the built wheel installed; dependencies are seen through a .pth file
    pointing at the project venv's site-packages (saves the download, not the proof)."""
    dist = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("idp-*.whl")
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib,) = venv.glob("lib/python*/site-packages")
    # The .pth adds the project's site-packages as a plain path: its own .pth files (the
    # editable install of this checkout) are not processed, so `idp` can only come from here.
    (purelib / "_project_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index"]
        + ["--no-compile", "-q", str(wheel)],
        check=True,
        capture_output=True,
        cwd=workdir,
        timeout=300,
    )
    return venv


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[Redis]:
    r = Redis(workdir)
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(wheel_venv: Path, workdir: Path, redis_server: Redis) -> Iterator[dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        IDP_INSTANCE_DIR=str(workdir / "instance"),
        IDP_ISSUER=base,
        IDP_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        IDP_DATABASE_CONNECT_TIMEOUT="2",
    )
    idp = str(wheel_venv / "bin" / "idp")
    init = subprocess.run(
        [idp, "init", "--json"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0, init.stderr
    log = (workdir / "server.log").open("w+")
    proc = subprocess.Popen(
        [idp, "serve", "--workers", "2", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(f"{base}/readyz", 200, 60)
        yield {"base": base, "port": port, "env": env, "idp": idp, "proc": proc, "log": log}
    finally:
        stop(proc, signal.SIGINT)
        log.close()


def test_idp_imports_from_the_wheel_not_the_checkout(wheel_venv: Path, workdir: Path):
    code = (
        "import json, idp, idp.resources as r;"
        "print(json.dumps([idp.__file__, str(r.resource_dir('templates')),"
        " str(r.resource_dir('migrations')), str(r.resource_dir('config'))]))"
    )
    out = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", code],
        cwd=workdir,
        env=clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    paths = [Path(p) for p in json.loads(out)]
    for p in paths:
        assert p.is_relative_to(wheel_venv), p
        assert not p.is_relative_to(REPO), p
    assert paths[1].parts[-2:] == ("_bundled", "templates")
    assert (paths[1] / "error.html").is_file()
    assert list((paths[2] / "versions").glob("0001_*.py"))
    assert (paths[3] / "defaults.toml").is_file()


def test_served_readiness_discovery_and_jwks(server):
    base = server["base"]
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "store": "ok"}}
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    doc = requests.get(f"{base}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == base and doc["jwks_uri"] == f"{base}/jwks"
    jwks = requests.get(doc["jwks_uri"], timeout=5).json()
    assert {k["kty"] for k in jwks["keys"]} >= {"RSA", "EC"}


def _children(server) -> tuple[list[str], list[str]]:
    """(pids of the granian workers, command lines of the provisioning pushers) under the
    main process."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(server["proc"].pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    workers, pushers = [], []
    for line in out.strip().splitlines():
        pid, _, args = line.strip().partition(" ")
        if "provisioning run --parent-pid" in args:
            pushers.append(args)
        else:
            workers.append(pid)
    return workers, pushers


def test_two_worker_processes_serve(server):
    """--workers 2 really starts two worker processes under the granian main process, and no
    provisioning pusher process beside them: with [provisioning] serve_drain each worker runs
    a pusher thread (a process of its own held ~100 MB for a loop that mostly sleeps)."""
    workers, pushers = _children(server)
    assert len(workers) == 2 and pushers == [], (workers, pushers)


def _rss_kb(pid: int | str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))


def test_the_main_process_holds_no_app(server):
    """The app is built and checked once in a child that exits (``idp serve --check-only``),
    not in granian's main process, which lives as long as the server: the main process stays a
    fraction of a worker's memory (the app held there was a third of the server's PSS)."""
    workers, _ = _children(server)
    main = _rss_kb(server["proc"].pid)
    assert main < 0.5 * min(_rss_kb(pid) for pid in workers), (main, workers)


def _healthz_requests(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "idp_http_requests_total" and sample.labels["endpoint"] == "/healthz"
    )


def test_metrics_add_up_over_both_workers(server, workdir: Path):
    """Each worker counts into its own files under {instance}/metrics, and the worker that
    answers a scrape sums them all: every scrape shows every request, whichever worker
    answers it."""
    from concurrent.futures import ThreadPoolExecutor

    base = server["base"]
    before = _healthz_requests(requests.get(f"{base}/metrics", timeout=5).text)

    def hit(_):
        return requests.get(f"{base}/healthz", headers={"Connection": "close"}, timeout=5)

    with ThreadPoolExecutor(8) as pool:
        assert {r.status_code for r in pool.map(hit, range(120))} == {200}
    seen = {
        _healthz_requests(
            requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=5).text
        ) - before
        for _ in range(8)
    }
    assert seen == {120}
    workers, _pushers = _children(server)
    files = (workdir / "instance" / "metrics").glob("counter_*.db")
    writers = {p.stem.rpartition("_")[2] for p in files}
    assert writers == set(workers), (writers, workers)


def _h2_settings_frame_back(port: int) -> bool:
    """Whether the server answers an HTTP/2 prior-knowledge preface with a SETTINGS frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        try:
            data = sock.recv(64)
        except (TimeoutError, ConnectionResetError):
            data = b""
    return len(data) >= 9 and data[3] == 0x04


def test_http1_by_default(server):
    """server.http = "1": HTTP/1.1 only (less CPU per request than also sniffing for HTTP/2);
    an h2c preface gets no HTTP/2 answer, HTTP/1.1 keeps working."""
    assert not _h2_settings_frame_back(server["port"])
    assert requests.get(f"{server['base']}/healthz", timeout=5).status_code == 200


def test_http_auto_also_speaks_http2(server):
    """server.http = "auto": the same instance, served again, answers the h2c preface."""
    port = free_port()
    env = {**server["env"], "IDP_SERVER_HTTP": "auto", "IDP_ISSUER": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [server["idp"], "serve", "--workers", "1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200, 60)
        assert _h2_settings_frame_back(port)
    finally:
        stop(proc, signal.SIGINT)


def test_startup_output_names_the_urls(server):
    server["log"].flush()
    text = Path(server["log"].name).read_text()
    assert f"IdP listening on http://127.0.0.1:{server['port']} (2 workers, 1 thread each)" in text
    assert f"{server['base']}/.well-known/openid-configuration" in text
    for path in ("/login", "/account/", "/saml/metadata", "/jwks"):
        assert f"{server['base']}{path}" in text
    # The issuer here is an IP address: the banner (not stderr) says passkeys need a host name.
    assert "passkeys need an issuer with a host name" in text


def test_access_log_lines_from_the_workers(server):
    requests.get(f"{server['base']}/healthz?password=never-in-logs", timeout=5)
    time.sleep(0.3)
    server["log"].flush()
    text = Path(server["log"].name).read_text()
    assert any("idp.access GET /healthz 200" in line for line in text.splitlines())
    assert "never-in-logs" not in text


def test_port_in_use_is_one_line_and_exit_1(server):
    proc = subprocess.run(
        [server["idp"], "serve", "--port", str(server["port"])],
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"idp: port {server['port']} on 127.0.0.1 is already in use"
    ]
    assert requests.get(f"{server['base']}/healthz", timeout=5).status_code == 200


def test_readyz_follows_a_store_outage_without_restart(server, redis_server: Redis):
    base = server["base"]
    redis_server.stop()
    try:
        down = wait_for(f"{base}/readyz", 503, 30)
        body = down.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["store"] != "ok" and body["checks"]["store"]
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200  # alive, not ready
    finally:
        redis_server.start()
    up = wait_for(f"{base}/readyz", 200, 30)
    assert up.json()["checks"] == {"database": "ok", "store": "ok"}
    assert server["proc"].poll() is None  # the same server, never restarted


def test_serve_refuses_an_uninitialised_database(wheel_venv: Path, workdir: Path):
    env = clean_env(IDP_INSTANCE_DIR=str(workdir / "empty-instance"))
    proc = subprocess.run(
        [str(wheel_venv / "bin" / "idp"), "serve", "--port", str(free_port())],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1 and "run `idp init`" in proc.stderr


def test_gunicorn_serves_wsgi_app_from_the_checkout(workdir: Path):
    instance = workdir / "gunicorn-instance"
    env = clean_env(IDP_INSTANCE_DIR=str(instance))
    idp = Path(sys.executable).with_name("idp")
    subprocess.run([str(idp), "init"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--workers", "1"]
        + ["--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", 200, 60).json() == {"status": "ok"}
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        stop(proc)


def test_served_reset_mails_from_the_queue_and_logs_no_token(server, workdir: Path):
    """Through `idp serve`: a reset request answers at once, the worker's mail queue writes
    the mail (and deletes its outbox row), and the mailed link's token appears in no line of
    the server's log (the access line shows the route with [redacted])."""
    import email
    import email.policy
    import re
    import sqlite3

    made = subprocess.run(
        [server["idp"], "users", "create", "--username", "resetme"]
        + ["--email", "resetme@example.org", "--password", "Tr0ub4dor-Horse-Battery"],
        cwd=workdir,
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    browser = requests.Session()
    page = browser.get(f"{server['base']}/password/reset", timeout=5).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    resp = browser.post(
        f"{server['base']}/password/reset",
        data={"csrf_token": token, "email": "resetme@example.org"},
        timeout=5,
    )
    assert resp.status_code == 200 and "Check your e-mail" in resp.text
    outbox = workdir / "instance" / "outbox"
    link = None
    deadline = time.monotonic() + 15
    while link is None and time.monotonic() < deadline:
        for path in outbox.glob("*.eml") if outbox.is_dir() else []:
            mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            text = mail.get_body(preferencelist=("plain",)).get_content()
            found = re.search(r"/password/reset/([A-Za-z0-9_-]{40,})", text)
            if found:
                link = found.group(1)
        time.sleep(0.2)
    assert link, "no reset mail in the outbox"
    assert browser.get(f"{server['base']}/password/reset/{link}", timeout=5).status_code == 200
    # The queue's row went with the delivery: the mail_outbox table keeps nothing sent.
    with sqlite3.connect(workdir / "instance" / "idp.db") as db:
        assert db.execute("SELECT count(*) FROM mail_outbox").fetchone() == (0,)
    time.sleep(0.3)
    server["log"].flush()
    text = Path(server["log"].name).read_text()
    assert link not in text
    assert any(
        "idp.access GET /password/reset/[redacted] 200" in line for line in text.splitlines()
    )
