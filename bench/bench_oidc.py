"""Token endpoint (client_credentials, RS256 and ES256 JWT access tokens), discovery and JWKS
under wrk: `idp serve --workers 2` side by side with panva's node-oidc-provider (2 workers)
from ../shared/bench/peers/oidc-node, alternating per round so both see the same machine.

    .venv/bin/python bench/bench_oidc.py [--rounds 3] [--duration 5] [--no-peer]

Needs Debian's wrk; the peer needs `../shared/bench/peers/oidc-node/setup.sh` run once (npm).
Every wrk run is bounded by --duration; servers started here are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "bench" / "peers" / "oidc-node"
LUA = ROOT.parent / "shared" / "bench" / "common" / "wrk_req.lua"
IDP = Path(sys.executable).with_name("idp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"bench: {url} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_ours(workdir: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(workdir / "instance"), IDP_ISSUER=base,
               IDP_LOGGING_ACCESS_LOG="false", IDP_LOGGING_LEVEL="WARNING")
    subprocess.run([str(IDP), "init", "--admin-password", "Bench-Admin-123", "--json"],
                   env=env, check=True, capture_output=True)
    # Two clients whose access tokens are signed RS256 / ES256 (per-client setting).
    script = (
        "from idp.services import build_services\n"
        "from idp.settings import load_settings\n"
        "from idp.storage.clients import ClientRegistry\n"
        "import json\n"
        "svc = build_services(load_settings())\n"
        "out = {}\n"
        "with svc.sessions.begin() as db:\n"
        "    reg = ClientRegistry(db, svc.hasher, svc.sealer)\n"
        "    for cid, alg in (('bench-rs', 'RS256'), ('bench-es', 'ES256')):\n"
        "        _, out[cid] = reg.create(cid, grant_types=['client_credentials'], scope='api',\n"
        "            extra={'access_token_signed_response_alg': alg})\n"
        "print(json.dumps(out))\n")
    made = json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    proc = subprocess.Popen([str(IDP), "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_ready(f"{base}/readyz")
    return proc, base, made


def start_peer() -> tuple[subprocess.Popen, str] | None:
    if not (PEER / "node_modules" / "oidc-provider").is_dir() or not shutil.which("node"):
        return None
    port = free_port()
    env = dict(os.environ, PORT=str(port), WORKERS="2")
    proc = subprocess.Popen(["node", "provider.mjs"], cwd=PEER, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
    return proc, f"http://127.0.0.1:{port}"


def wrk(url: str, duration: int, method: str = "GET", body: str = "",
        basic: str = "") -> dict:
    env = dict(os.environ, WRK_METHOD=method, WRK_BODY=body, WRK_BASIC=basic)
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "--timeout", "5s",
                          "-s", str(LUA), url], env=env, capture_output=True, text=True,
                         timeout=duration + 30)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def b64(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", dest="json_out", default=None,
                        help="also write the medians to this file (bench/run.py reads it)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is missing (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-oidc-"))
    ours, base, made = start_ours(workdir)
    peer = None if args.no_peer else start_peer()
    if peer is None and not args.no_peer:
        print("peer not set up (run ../shared/bench/peers/oidc-node/setup.sh); ours only",
              file=sys.stderr)
    peer_basic = b64("bench-client", "bench-secret-0123456789abcdef")
    cases = {
        "discovery GET": (("/.well-known/openid-configuration", "GET", "", ""),
                          ("/.well-known/openid-configuration", "GET", "", "")),
        "jwks GET": (("/jwks", "GET", "", ""), ("/jwks", "GET", "", "")),
        "token cc RS256": (
            ("/oauth2/token", "POST", "grant_type=client_credentials&scope=api",
             b64("bench-rs", made["bench-rs"])),
            ("/token", "POST", "grant_type=client_credentials&scope=api%3Aread"
             "&resource=urn%3Abench%3Ars256", peer_basic)),
        "token cc ES256": (
            ("/oauth2/token", "POST", "grant_type=client_credentials&scope=api",
             b64("bench-es", made["bench-es"])),
            ("/token", "POST", "grant_type=client_credentials&scope=api%3Aread"
             "&resource=urn%3Abench%3Aes256", peer_basic)),
    }
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for name, (mine, theirs) in cases.items():
            wrk(base + mine[0], 2, *mine[1:])  # warm-up
            if peer:
                wrk(peer[1] + theirs[0], 2, *theirs[1:])
            for _ in range(args.rounds):
                results.setdefault((name, "idp"), []).append(
                    wrk(base + mine[0], args.duration, *mine[1:]))
                if peer:
                    results.setdefault((name, "node-oidc-provider"), []).append(
                        wrk(peer[1] + theirs[0], args.duration, *theirs[1:]))
    finally:
        stop(ours)
        if peer:
            stop(peer[0])
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'case':18} {'server':20} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'errors':>7}")
    summary = {}
    for name in cases:
        row = {}
        for server in ("idp", "node-oidc-provider"):
            runs = results.get((name, server))
            if not runs:
                continue
            rps = statistics.median(r["rps"] for r in runs)
            row[server] = rps
            errors = sum(r["non2xx_or_3xx"] + r["socket_errors"] for r in runs)
            summary.setdefault(name, {})[server] = {
                "rps": rps,
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "errors": errors,
                "runs": [r["rps"] for r in runs],
            }
            print(f"{name:18} {server:20} {rps:15.0f} "
                  f"{statistics.median(r['p50_ms'] for r in runs):8.2f} "
                  f"{statistics.median(r['p99_ms'] for r in runs):8.2f} {errors:7d}")
        if len(row) == 2:
            print(f"{'':18} {'ratio idp/peer':20} {row['idp'] / row['node-oidc-provider']:15.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
