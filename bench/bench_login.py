"""Full login flows per second beside raw argon2id verifications per second, in one run.

A login (GET /login, POST /login with CSRF, password check, SSO session, redirect) is bound by
one argon2id verification; this shows how much the rest of the flow costs. Both are run with the
same number of threads (default 2 = the cores here) against one app on SQLite, repeated, medians
reported side by side.

    .venv/bin/python bench/bench_login.py [--n 60] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PASSWORD = "Tr0ub4dor-Horse-Battery"  # noqa: S105 - the benchmark user's password


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
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

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
        h, lg = statistics.median(hashes), statistics.median(logins)
        print(f"threads={args.threads} n={args.n} rounds={args.rounds}")
        print(f"raw argon2id verify : {h:7.1f} /s (median)")
        print(f"full login flow     : {lg:7.1f} /s (median)")
        print(f"login / hash ratio  : {lg / h:7.1%}")
        app.extensions["idp"].engine.dispose()


if __name__ == "__main__":
    main()
