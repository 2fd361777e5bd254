"""Full login flows per second beside raw argon2id verifications per second, in one run.

A login (GET /login, POST /login with CSRF, password check, SSO session, redirect) is bound by
one argon2id verification; this shows how much the rest of the flow costs. Two modes, each
repeated, medians reported side by side:

- ``inproc``: one app on SQLite driven through Flask's test client by ``--threads`` threads,
  beside the same number of threads verifying hashes. Threads share one interpreter (the GIL):
  argon2 releases it, the rest of the flow does not.
- ``server``: the real thing. ``idp init``, users made with ``idp users create``, ``idp serve
  --workers 2`` on a free loopback port, and clients doing GET + POST /login (a fresh browser
  per login: no cookie carried over), beside raw verifications in two processes (one per
  worker). The clients run on the same cores as the server, which the hash rate does not pay;
  the server's own CPU per login (its processes, from /proc) is reported too. Two clients
  (``--client wrk|python|both``; the default is wrk when it is installed, else python):
  ``python``: ``--clients`` threads with ``requests.Session`` (a new connection per login),
  ``--server-n`` logins per round; ``wrk``: bench/wrk/login.lua, one connection per wrk thread
  (``-t N -c N``, N = ``--clients``), each alternating GET and POST as user ``bench<i>`` on a
  kept-alive connection for ``--duration`` seconds (measured ~0.3 ms of client CPU per login,
  against ~3 ms for python). With wrk a second window has returning browsers: each user's
  device cookie (taken by one Python sign-in before the rounds) goes with every login, so the
  device is known and no new-device mail is sent, as for most sign-ins of a real user. Rounds
  alternate the order of the hash window and the login windows. Bounded in count and time;
  the server is stopped by its PID.

    .venv/bin/python bench/bench_login.py [--mode both|inproc|server] [--n 60] [--threads 2]
        [--rounds 3] [--server-n 200] [--clients 4] [--time-limit 60]
        [--client wrk|python|both] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wrkbench import client_modes, run_wrk, tree_cpu

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

PASSWORD = "Tr0ub4dor-Horse-Battery"  # noqa: S105 - the benchmark users' password
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


# --- in process ---------------------------------------------------------------------------------


def build_app(instance: Path):
    from conftest import base_overrides, init_database
    from login_kit import make_user

    from idp.app import create_app

    overrides = base_overrides(instance, lockout={"max_failures": 0, "ip_delay_after": 0})
    init_database(overrides)
    app = create_app(overrides)
    make_user(app.extensions["idp"], "bench")
    return app


def one_login(app) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    resp = client.post(
        "/login", data={"csrf_token": token, "username": "bench", "password": PASSWORD}
    )
    if resp.status_code != 302 or resp.headers["Location"] != "/account/":
        raise SystemExit(f"login failed: {resp.status_code}")


def rate(fn, n: int, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _i: fn(), range(n)))
    return n / (time.perf_counter() - started)


def run_inproc(args) -> tuple[list[float], list[float]]:
    from idp.backends.chain import password_hasher

    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp) / "instance"
        instance.mkdir()
        app = build_app(instance)
        hasher = password_hasher(app.extensions["idp"])
        stored = hasher.hash(PASSWORD)
        one_login(app)  # warm up templates, connections, key caches
        hashes, logins = [], []
        for _ in range(args.rounds):
            hashes.append(rate(lambda: hasher.verify(PASSWORD, stored), args.n, args.threads))
            logins.append(rate(lambda: one_login(app), args.n, args.threads))
        app.extensions["idp"].engine.dispose()
    return hashes, logins


# --- against the real server --------------------------------------------------------------------


def _verify_many(count: int) -> None:
    from idp.backends.passwords import PasswordHasher

    hasher = PasswordHasher(1)
    stored = hasher.hash(PASSWORD)
    for _ in range(count):
        hasher.verify(PASSWORD, stored)


def process_hash_rate(pool: ProcessPoolExecutor, n: int, procs: int) -> float:
    """Verifications per second by ``procs`` processes (one per server worker), no GIL shared."""
    share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    started = time.perf_counter()
    list(pool.map(_verify_many, share))
    return n / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _idp(env: dict[str, str], cwd: Path, *argv: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("idp")), *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"idp {' '.join(argv[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("idp serve exited before it was ready")
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit(f"idp serve not ready within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server this script started, by its PID (its own process group: the workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def sign_in(browser: Any, base: str, name: str) -> None:
    """GET + POST /login as ``name`` in ``browser`` (a ``requests.Session``); stops the bench
    unless it ends in the redirect to /account/."""
    page = browser.get(f"{base}/login", timeout=30).text
    resp = browser.post(
        f"{base}/login",
        data={"csrf_token": CSRF.search(page).group(1), "username": name, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    if resp.status_code != 302 or not resp.headers["Location"].endswith("/account/"):
        raise SystemExit(f"login failed: {resp.status_code}")


def server_login_rate(
    base: str, users: list[str], n: int, clients: int, limit: float
) -> tuple[int, float]:
    """GET + POST /login ``n`` times by ``clients`` threads, each login a fresh browser.
    Returns (logins done, seconds)."""
    import requests

    deadline = time.monotonic() + limit

    def one(i: int) -> bool:
        if time.monotonic() > deadline:
            return False
        with requests.Session() as s:
            sign_in(s, base, users[i % len(users)])
        return True

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(one, range(n)))
    elapsed = time.perf_counter() - started
    if done < n:
        print(f"  (time limit: {done} of {n} logins)")
    return done, elapsed


def check_one_cookie(base: str) -> None:
    """wrk's Lua sees only the last of repeated same-name headers: refuse the wrk client if
    GET /login sets more than one cookie (the POST would miss some)."""
    import requests

    r = requests.get(f"{base}/login", timeout=30)
    got = r.raw.headers.getlist("Set-Cookie")
    if len(got) != 1:
        raise SystemExit(
            f"GET /login set {len(got)} cookies; wrk's Lua would see only the last: "
            "use --client python"
        )


def python_window(args, base: str, users: list[str], pid: int) -> dict:
    cpu0, server0 = time.process_time(), tree_cpu([pid])
    done, elapsed = server_login_rate(base, users, args.server_n, args.clients, args.time_limit)
    server_s, client_s = tree_cpu([pid]) - server0, time.process_time() - cpu0
    return {
        "rate": done / elapsed,
        "server_ms": server_s * 1000 / max(done, 1),
        "client_ms": client_s * 1000 / max(done, 1),
        "errors": 0,  # any failure stops the run (SystemExit)
    }


def device_cookies(base: str, users: list[str]) -> list[str]:
    """One sign-in per user with a Python client: the device cookie each user's browser keeps
    (``idp_device``, the same value at every later sign-in of that browser)."""
    import requests

    cookies = []
    for name in users:
        with requests.Session() as s:
            sign_in(s, base, name)
            value = s.cookies.get("idp_device")
        if not value:
            raise SystemExit(f"no device cookie after signing in as {name}")
        cookies.append(value)
    return cookies


def wrk_window(args, base: str, pid: int, devices: list[str] | None = None) -> dict:
    """Logins by wrk; with ``devices`` every login is a returning browser (its device cookie
    sent along: a known device, no new-device mail), else each one is a new browser."""
    server0 = tree_cpu([pid])
    res = run_wrk(
        "login.lua",
        base,
        threads=args.clients,
        connections=args.clients,
        duration=min(args.duration, args.time_limit),
        timeout=10,
        script_args=["bench", PASSWORD, ",".join(devices or [])],
        limit=args.time_limit + 30,
    )
    server_s = tree_cpu([pid]) - server0
    done = res["logins"]
    errors = res["errors"] + res["socket_errors"] + res["timeouts"]
    if errors:
        print(f"  (wrk: {errors} errors, first: {res['first_error'] or 'socket/timeout'})")
    return {
        "rate": done / res["duration_s"],
        "server_ms": server_s * 1000 / max(done, 1),
        "client_ms": res["client_cpu_s"] * 1000 / max(done, 1),
        "errors": errors,
    }


def run_server(args, modes: list[str]) -> tuple[list[float], dict[str, list[dict]]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-login-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp / "instance"), IDP_ISSUER=base)
    if args.server_threads:
        env["IDP_SERVER_THREADS"] = str(args.server_threads)
    users = [f"bench{i}" for i in range(args.clients)]
    proc = None
    try:
        _idp(env, tmp, "init")
        for name in users:
            _idp(
                env,
                tmp,
                "users",
                "create",
                "--username",
                name,
                "--email",
                f"{name}@example.org",
                "--password",
                PASSWORD,
            )
        log = (tmp / "server.log").open("w")
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("idp")),
                "serve",
                "--workers",
                str(args.workers),
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_ready(base, proc)
        if "wrk" in modes:
            check_one_cookie(base)
        server_login_rate(base, users, 2 * args.clients, args.clients, args.time_limit)  # warm
        devices = device_cookies(base, users) if "wrk" in modes else []
        hashes: list[float] = []
        windows_of = [*modes, *(["wrk-returning"] if "wrk" in modes else [])]
        logins: dict[str, list[dict]] = {mode: [] for mode in windows_of}
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_verify_many, [1, 1]))  # start both processes before timing
            for rnd in range(args.rounds):
                windows = ["hash", *windows_of]
                if rnd % 2:
                    windows.reverse()
                for window in windows:
                    if window == "hash":
                        hashes.append(process_hash_rate(pool, args.server_n, 2))
                    elif window == "python":
                        logins["python"].append(python_window(args, base, users, proc.pid))
                    else:
                        known = devices if window == "wrk-returning" else None
                        logins[window].append(wrk_window(args, base, proc.pid, known))
        return hashes, logins
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


# --- report -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["both", "inproc", "server"], default="both")
    parser.add_argument("--n", type=int, default=60, help="logins per in-process round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-n", type=int, default=200, help="logins per server round")
    # Eight, not four: each wrk connection is kept alive and served by one worker for the whole
    # window, and with four the kernel hands all of them to one of the two workers in about one
    # window in eight (the other worker idles: half the rate). Browsers are many; so are these.
    parser.add_argument("--clients", type=int, default=8, help="concurrent server clients")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per round")
    parser.add_argument(
        "--client",
        choices=["wrk", "python", "both"],
        default=None,
        help="server mode's load generator (default: wrk when installed, else python)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk login window")
    parser.add_argument("--workers", type=int, default=2, help="idp serve --workers")
    parser.add_argument(
        "--server-threads", type=int, default=0, help="server.threads (default: the IdP's own)"
    )
    parser.add_argument("--json", dest="json_out", default=None,
                        help="also write the medians to this file (bench/run.py reads it)")
    args = parser.parse_args()

    modes = client_modes(args.client) if args.mode in ("both", "server") else []
    rows = []
    if args.mode in ("both", "inproc"):
        hashes, logins = run_inproc(args)
        rows.append((f"in process, {args.threads} threads, n={args.n}", hashes, logins, None))
    if args.mode in ("both", "server"):
        hashes, by_mode = run_server(args, modes)
        for mode in by_mode:
            secs = min(args.duration, args.time_limit)
            if mode == "python":
                label = f"idp serve --workers 2, python: {args.clients} clients, n={args.server_n}"
            elif mode == "wrk":
                label = f"idp serve --workers 2, wrk: {args.clients} connections, {secs:g} s"
            else:
                label = (f"idp serve --workers 2, wrk: {args.clients} connections, {secs:g} s, "
                         "returning browsers (known device, no new-device mail)")
            rows.append((label, hashes, [w["rate"] for w in by_mode[mode]], by_mode[mode]))

    print(f"rounds={args.rounds}, medians")
    print(f"{'mode':52s} {'argon2id/s':>10s} {'logins/s':>9s} {'ratio':>7s}")
    summary = []
    for label, hashes, logins, windows in rows:
        h, lg = statistics.median(hashes), statistics.median(logins)
        summary.append({"mode": label, "argon2id_per_s": h, "logins_per_s": lg,
                        "ratio": lg / h, "runs": logins})
        print(f"{label:52s} {h:10.1f} {lg:9.1f} {lg / h:7.1%}")
        if windows is not None:
            client = statistics.median(w["client_ms"] for w in windows)
            server = statistics.median(w["server_ms"] for w in windows)
            errors = sum(w["errors"] for w in windows)
            print(
                f"{'':52s} (per login: server CPU {server:.1f} ms, client CPU on the same cores "
                f"{client:.2f} ms; errors {errors}; logins/s by round "
                f"{', '.join(f'{x:.1f}' for x in logins)})"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
