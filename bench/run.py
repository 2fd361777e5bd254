"""The benchmark suite, one command: every case of issue 21 against `idp serve --workers 2` with
production settings, beside the peers and the bare-framework ceilings, in one run.

    .venv/bin/python bench/run.py [--rounds 3] [--duration 8] [--backend sqlite|postgres|both]
                                  [--only CASE ...] [--no-peers] [--skip-flows] [--scale]

What runs, each window bounded by --duration and driven by Debian's wrk (Lua under bench/wrk/):

- here: the authorization-code flow for a user with an SSO session (authorize -> code -> token,
  PKCE), refresh grants, introspection, userinfo, the admin API's user list (10,000 users, pages
  of 50) and SCIM filter queries; peak PSS of the server's processes (idle and under this load);
  cold start of `idp serve` to /readyz (median of 3); and the ceilings — static bytes and a
  sign-only RS256 token endpoint from ../shared/bench/limits/app.py on the same granian server
  with 2 workers;
- bench/bench_oidc.py: discovery, JWKS, client_credentials RS256 and ES256 beside panva's
  node-oidc-provider (../shared/bench/peers/oidc-node, set up with its setup.sh), interleaved;
- bench/bench_login.py: full password-login flows beside the argon2id rate measured in the
  same run;
- bench/bench_saml.py: SAML SSO responses for a user with a session beside SimpleSAMLphp
  (../shared/bench/peers/saml-simplesamlphp, started with its setup.sh), interleaved.

Rounds run the cases in turn (round 1: every case, round 2: every case ...) so a burst of other
load on the machine touches every case alike; each row is the median of the rounds with p50 and
p99. Results: bench/results/<UTC time>.json and a Markdown table on stdout (paste it into
docs/performance.md with the date and the machine). --backend postgres needs
IDP_BENCH_DATABASE_URL (an empty PostgreSQL database it may fill) and IDP_BENCH_REDIS_URL.
Everything started here is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WRK = BENCH / "wrk"
LIMITS = ROOT.parent / "shared" / "bench" / "limits"
IDP = Path(sys.executable).with_name("idp")
GRANIAN = Path(sys.executable).with_name("granian")
PASSWORD = "Bench-Horse-Battery-77"  # noqa: S105 - the benchmark users' password
REDIRECT = "http://127.0.0.1:9/cb"
USERS = 10_000
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # a server this script started, by its PID
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the server for {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise SystemExit(f"bench: {url} did not become ready in {timeout}s")


def tree_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout.split()
    return [pid] + [p for child in out for p in tree_pids(int(child))]


def pss_mb(pid: int) -> float:
    """Proportional set size of a process tree (each shared page split among its users)."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def wrk(url: str, duration: float, script: Path, *, threads: int = 2, conns: int = 32,
        env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--timeout", "5s",
           "-s", str(script), url]
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True,
                         text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise SystemExit(f"bench: wrk printed no result for {url}: {out.stderr[-400:]}")
    return json.loads(line[len("WRK_RESULT "):])


# --- our server -----------------------------------------------------------------------------


class Ours:
    """`idp serve --workers 2` on a fresh instance with the clients, users and sessions the
    cases need."""

    def __init__(self, workdir: Path, database_url: str = "", redis_url: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        self.env.update(IDP_INSTANCE_DIR=str(workdir / "instance"), IDP_ISSUER=self.base,
                        IDP_LOGGING_ACCESS_LOG="false", IDP_LOGGING_LEVEL="WARNING")
        if database_url:
            self.env["IDP_DATABASE_URL"] = database_url
        if redis_url:
            self.env["IDP_REDIS_URL"] = redis_url
            self.env["IDP_STORE_REDIS_PREFIX"] = f"bench-{secrets.token_hex(3)}:"
        self.proc: subprocess.Popen | None = None

    def idp(self, *argv: str) -> str:
        done = subprocess.run([str(IDP), *argv], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"bench: idp {argv[0]} failed: {done.stderr.strip()[-400:]}")
        return done.stdout

    def prepare(self) -> dict:
        self.idp("init", "--admin-password", PASSWORD, "--json")
        sheet = self.workdir / "users.csv"
        with sheet.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["username", "email", "given_name", "family_name"])
            for i in range(USERS):
                out.writerow([f"bench-user-{i:05d}", f"bench-user-{i:05d}@example.org",
                              f"Given{i}", f"Family{i}"])
        self.idp("users", "import", str(sheet), "--json")
        self.idp("users", "create", "--username", "bench", "--email", "bench@example.org",
                 "--password", PASSWORD, "--json")
        script = (
            "import json\n"
            "from idp.manage import Actor, transaction\n"
            "from idp.manage import clients as manage\n"
            "from idp.services import build_services\n"
            "from idp.settings import load_settings\n"
            "svc = build_services(load_settings())\n"
            "out = {}\n"
            "with transaction(svc, Actor.operator('bench')) as ctx:\n"
            f"    _, out['code'] = manage.create(ctx, 'bench-code', name='Bench RP',\n"
            f"        redirect_uris=['{REDIRECT}'], grant_types=['authorization_code',\n"
            "        'refresh_token'], scope='openid profile email offline_access',\n"
            "        first_party=True, extra={'refresh_token_rotation': False,\n"
            "        'access_token_lifetime': 86400})\n"
            "    _, out['admin'] = manage.create(ctx, 'bench-admin', name='Bench admin',\n"
            "        grant_types=['client_credentials'], scope='admin scim',\n"
            "        roles=['Administrator'], extra={'access_token_lifetime': 86400})\n"
            "print(json.dumps(out))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"bench: client setup failed: {done.stderr.strip()[-600:]}")
        return json.loads(done.stdout)

    def start(self) -> float:
        """Start the server; the seconds from the process start to /readyz answering 200."""
        self.proc = subprocess.Popen(
            [str(IDP), "serve", "--port", str(self.port), "--workers", "2"],
            env=self.env, cwd=self.workdir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        return wait_ready(f"{self.base}/readyz", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def basic(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def sign_in(base: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=30).text
    resp = browser.post(f"{base}/login", data={
        "csrf_token": CSRF.search(page).group(1), "username": "bench", "password": PASSWORD,
    }, allow_redirects=False, timeout=30)
    if resp.status_code != 302:
        raise SystemExit(f"bench: the benchmark user could not sign in ({resp.status_code})")
    return browser


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_path(challenge: str) -> str:
    return "/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": "bench-code", "redirect_uri": REDIRECT,
        "scope": "openid profile email offline_access", "state": "s", "nonce": "n",
        "code_challenge": challenge, "code_challenge_method": "S256",
    })


def user_tokens(base: str, secret: str) -> dict:
    """One real code flow: the tokens the refresh / introspection / userinfo cases reuse."""
    browser = sign_in(base)
    verifier, challenge = pkce()
    resp = browser.get(base + authorize_path(challenge), allow_redirects=False, timeout=30)
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    got = requests.post(f"{base}/oauth2/token", timeout=30, auth=("bench-code", secret), data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": REDIRECT})
    got.raise_for_status()
    return got.json()


def service_token(base: str, secret: str) -> str:
    got = requests.post(f"{base}/oauth2/token", auth=("bench-admin", secret), timeout=30,
                        data={"grant_type": "client_credentials", "scope": "admin scim"})
    got.raise_for_status()
    return got.json()["access_token"]


# --- the cases ------------------------------------------------------------------------------


def our_cases(ours: Ours, secrets_: dict, folder: Path, conns: int) -> dict[str, Callable]:
    base = ours.base
    tokens = user_tokens(base, secrets_["code"])
    admin = service_token(base, secrets_["admin"])
    code_basic = basic("bench-code", secrets_["code"])
    # One SSO session per wrk thread/connection for the code flow.
    flow_threads = 8
    for i in range(1, flow_threads + 1):
        cookies = sign_in(base).cookies
        (folder / f"cookie.{i}").write_text(
            "; ".join(f"{c.name}={c.value}" for c in cookies) + "\n")
    verifier, challenge = pkce()
    req = WRK / "req.lua"
    pages = "|".join(f"/api/v1/users?per_page=50&page={p}" for p in (1, 40, 100, 160, 200))
    names = "|".join(
        "/scim/v2/Users?" + urlencode({"filter": f'userName eq "bench-user-{i:05d}"'})
        for i in (7, 2500, 5000, 7500, 9999))
    return {
        "authorization-code flow, SSO session": lambda d: wrk(
            base, d, WRK / "code_flow.lua", threads=flow_threads, conns=flow_threads,
            args=(str(folder), authorize_path(challenge), code_basic, verifier, REDIRECT)),
        "refresh grant": lambda d: wrk(f"{base}/oauth2/token", d, req, conns=conns, env={
            "WRK_METHOD": "POST", "WRK_BASIC": code_basic,
            "WRK_BODY": urlencode({"grant_type": "refresh_token",
                                   "refresh_token": tokens["refresh_token"]})}),
        "introspection": lambda d: wrk(f"{base}/oauth2/introspect", d, req, conns=conns, env={
            "WRK_METHOD": "POST", "WRK_BASIC": code_basic,
            "WRK_BODY": urlencode({"token": tokens["access_token"]})}),
        "userinfo": lambda d: wrk(f"{base}/oauth2/userinfo", d, req, conns=conns, env={
            "WRK_BEARER": tokens["access_token"]}),
        "admin API: users, page of 50 of 10,000": lambda d: wrk(
            base, d, req, conns=conns, env={"WRK_BEARER": admin, "WRK_PATHS": pages}),
        "SCIM: filter userName eq": lambda d: wrk(
            base, d, req, conns=conns, env={"WRK_BEARER": admin, "WRK_PATHS": names}),
    }


class Ceiling:
    """../shared/bench/limits/app.py (bare Flask: static bytes, and a token endpoint that only
    signs an RS256 JWT) on granian with 2 workers: what the stack can do at best here."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(GRANIAN), "--interface", "wsgi", "--workers", "2", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-ws", "app:app"],
            cwd=LIMITS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait_ready(f"{self.base}/hello", self.proc)

    def cases(self, conns: int) -> dict[str, Callable]:
        req = WRK / "req.lua"
        return {
            "ceiling: static bytes": lambda d: wrk(f"{self.base}/hello", d, req, conns=conns),
            "ceiling: sign-only RS256 token": lambda d: wrk(
                f"{self.base}/token", d, req, conns=conns, env={
                    "WRK_METHOD": "POST", "WRK_BODY": "grant_type=client_credentials",
                    "WRK_BASIC": basic("bench-client", "bench-secret-0123456789abcdef")}),
        }


def summarize(runs: list[dict]) -> dict:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r.get("bad", 0) + r.get("socket_errors", 0) for r in runs),
        "runs": [r["rps"] for r in runs],
    }


def external(script: str, argv: list[str], folder: Path, env: dict[str, str]) -> dict | list:
    """One of the specialised benchmarks, its medians read back from its --json file."""
    out = folder / f"{Path(script).stem}.json"
    print(f"\n== {script} {' '.join(argv)}", flush=True)
    done = subprocess.run([sys.executable, str(BENCH / script), *argv, "--json", str(out)],
                          env=env, timeout=3600, check=False)
    if done.returncode != 0 or not out.exists():
        return {"error": f"{script} exited with {done.returncode}"}
    return json.loads(out.read_text())


def run_backend(backend: str, args, folder: Path) -> dict:
    database_url = redis_url = ""
    if backend == "postgres":
        database_url = os.environ.get("IDP_BENCH_DATABASE_URL", "")
        redis_url = os.environ.get("IDP_BENCH_REDIS_URL", "")
        if not database_url or not redis_url:
            raise SystemExit("bench: --backend postgres needs IDP_BENCH_DATABASE_URL and "
                             "IDP_BENCH_REDIS_URL")
    work = folder / backend
    work.mkdir()
    ours = Ours(work, database_url, redis_url)
    made = ours.prepare()
    result: dict = {"cases": {}}
    starts = []
    for _ in range(3):
        starts.append(ours.start())
        ours.stop()
    result["cold_start_s"] = statistics.median(starts)
    ours.start()
    ceiling = None
    try:
        time.sleep(1)
        result["pss_idle_mb"] = pss_mb(ours.proc.pid)
        cases = our_cases(ours, made, work, args.conns)
        if LIMITS.joinpath("app.py").exists() and GRANIAN.exists():
            ceiling = Ceiling()
            cases.update(ceiling.cases(args.conns))
        if args.only:
            cases = {k: v for k, v in cases.items() if any(o in k for o in args.only)}
        runs: dict[str, list[dict]] = {}
        peak = 0.0
        for case in cases.values():  # warm-up, bounded
            case(2)
        for _ in range(args.rounds):
            for name, case in cases.items():
                print(f"  {backend}: {name}", flush=True)
                runs.setdefault(name, []).append(case(args.duration))
                if not name.startswith("ceiling"):
                    peak = max(peak, pss_mb(ours.proc.pid))
        result["pss_peak_mb"] = peak
        result["cases"] = {name: summarize(r) for name, r in runs.items()}
    finally:
        ours.stop()
        if ceiling is not None:
            stop(ceiling.proc)
    if not args.skip_flows and not args.only:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        d, r = str(args.duration), str(args.rounds)
        oidc = ["--rounds", r, "--duration", str(int(args.duration))]
        if args.no_peers:
            oidc.append("--no-peer")
        result["oidc_vs_node"] = external("bench_oidc.py", oidc, work, env)
        result["password_login"] = external(
            "bench_login.py", ["--mode", "server", "--rounds", r, "--duration", d], work, env)
        saml = ["--rounds", r, "--duration", d]
        if args.no_peers:
            saml.append("--skip-ssp")
        if redis_url:
            saml += ["--redis-url", redis_url]
        result["saml_sso"] = external("bench_saml.py", saml, work, env)
    return result


def table(results: dict) -> str:
    lines = ["| backend | case | req/s (median) | p50 ms | p99 ms | errors |",
             "| --- | --- | --- | --- | --- | --- |"]
    for backend, res in results["backends"].items():
        for name, row in res.get("cases", {}).items():
            lines.append(f"| {backend} | {name} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
                         f"{row['p99_ms']:.2f} | {row['errors']} |")
        for name, peers in (res.get("oidc_vs_node") or {}).items():
            if not isinstance(peers, dict) or "idp" not in peers:
                continue
            peer = peers.get("node-oidc-provider")
            ratio = ""
            if peer:
                ratio = f" ({peers['idp']['rps'] / peer['rps']:.2f}× node-oidc-provider)"
            lines.append(f"| {backend} | {name}{ratio} | {peers['idp']['rps']:,.0f} | "
                         f"{peers['idp']['p50_ms']:.2f} | {peers['idp']['p99_ms']:.2f} | "
                         f"{peers['idp']['errors']} |")
        lines.append(f"| {backend} | cold start to /readyz | {res['cold_start_s']:.2f} s | | | |")
        lines.append(f"| {backend} | PSS, 2 workers idle / peak under load | "
                     f"{res['pss_idle_mb']:.0f} / {res['pss_peak_mb']:.0f} MB | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk window")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--only", nargs="*", default=None, help="run the cases whose name has this")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--skip-flows", action="store_true",
                    help="leave out bench_oidc / bench_login / bench_saml")
    ap.add_argument("--scale", action="store_true",
                    help="also run bench/bench_scale.py (lookups at 1,000 / 100,000 users, plans)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is missing (apt-get install -y wrk)")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "conns": args.conns},
        "backends": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    try:
        for backend in backends:
            results["backends"][backend] = run_backend(backend, args, folder)
        if args.scale:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")
                   or k == "IDP_BENCH_DATABASE_URL"}
            results["scale"] = external("bench_scale.py", ["--backend", args.backend], folder,
                                        env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=1))
    print()
    print(table(results))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
