"""Rate limits across worker processes: a real ``idp serve --workers 2`` (the server of
test_session_limits_served.py). Eight browsers ask for a reset link for one address at the same
moment: exactly the limit's number get it, the rest 429 with Retry-After, whichever worker
answered each. Then refused Bearer tokens at SCIM, one connection each: the limit-th plus one
is refused. Both workers answered (each wrote its own metrics file), so the count is the
store's, not a process's. tests/test_rate_limits.py has the rest (and Redis)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
import requests
from test_session_limits_served import served

pytestmark = pytest.mark.slow

BROWSERS = 8
PER_ACCOUNT = 3
BEARER = 4
CONFIG = f"""
[rate_limits]
reset_per_account = {PER_ACCOUNT}
reset_per_address = 1000
bearer_per_address = {BEARER}
"""


def parallel_resets(base: str) -> list[requests.Response]:
    barrier = Barrier(BROWSERS)

    def one(_: int) -> requests.Response:
        browser = requests.Session()
        page = browser.get(f"{base}/password/reset", timeout=30).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        barrier.wait(30)
        return browser.post(
            f"{base}/password/reset",
            data={"csrf_token": token, "email": "ann@example.org"},
            timeout=60,
        )

    with ThreadPoolExecutor(BROWSERS) as pool:
        return list(pool.map(one, range(BROWSERS)))


def worker_pids(instance: Path) -> set[str]:
    """The server's processes that counted a request (prometheus-client's per-process files),
    but for the provisioning pusher beside the workers."""
    pids = {p.stem.rpartition("_")[2] for p in (instance / "metrics").glob("counter_*.db")}
    return {
        pid for pid in pids
        if b"provisioning" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def test_counts_are_shared_by_two_workers(tmp_path):
    with served(tmp_path, "end_oldest", CONFIG) as (base, _):
        answers = parallel_resets(base)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * PER_ACCOUNT + [429] * (BROWSERS - PER_ACCOUNT), codes
        for r in answers:
            if r.status_code == 429:
                assert 0 < int(r.headers["Retry-After"]) <= 3600
        scim = []
        for n in range(BEARER + 1):  # a new connection each: any worker may answer
            scim.append(requests.get(
                f"{base}/scim/v2/Users", headers={"Authorization": f"Bearer forged-{n}",
                                                  "Connection": "close"}, timeout=30,
            ))
        assert [r.status_code for r in scim] == [401] * BEARER + [429]
        assert scim[-1].json()["status"] == "429" and scim[-1].headers["Retry-After"]
        assert len(worker_pids(tmp_path / "instance")) >= 2
