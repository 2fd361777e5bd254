"""kill -9 of a worker mid-login and mid-token-request, in a real `idp serve --workers 2`.

A burst of sign-ins (each one spends a password hash's time inside the worker) and token
requests runs while a worker is killed with SIGKILL, twice. The promise (docs/security.md,
"Faults"): granian starts a new worker in its place and the server keeps answering; the
requests the dead worker held are dropped (the client sees a closed connection, nothing is
answered half), and nothing is half made: every session a browser was given has its index row
and its ``login.success`` audit row, every index row has its session, every token answered has
its ``token.issued`` audit row, and `idp audit verify` passes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import jwt as pyjwt
import pytest
import requests
from fault_kit import Served
from sqlalchemy import create_engine, text
from test_serve import wait_for

pytestmark = pytest.mark.slow

PASSWORD = "Tr0ub4dor-Horse-Battery"
BURST_SECONDS = 8.0
KILLS_AT = (2.0, 5.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("kill"), IDP_SERVER_THREADS="2")
    served.idp("init")
    for n in range(4):
        served.idp("users", "create", "--username", f"walker{n}", "--email",
                   f"walker{n}@example.org", "--password", PASSWORD)
    served.start()
    yield served
    served.stop()


def _workers(served: Served) -> set[int]:
    """The worker processes: the children of the `idp serve` process (granian's main)."""
    pid = served.proc.pid
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _sign_in(base: str, username: str) -> str | None:
    """The session id a browser is given, or None when the request was dropped."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/login", timeout=20).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        resp = browser.post(f"{base}/login", allow_redirects=False, timeout=20, data={
            "csrf_token": token, "username": username, "password": PASSWORD})
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
        return resp.cookies.get("idp_session")


def _token(base: str, auth: tuple[str, str]) -> str:
    resp = requests.post(f"{base}/oauth2/token", auth=auth, timeout=20,
                         data={"grant_type": "client_credentials", "scope": "api"})
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    return pyjwt.decode(resp.json()["access_token"], options={"verify_signature": False})["jti"]


def test_killed_workers_leave_nothing_half_made(served):
    made = served.idp_json("clients", "create", "--client-id", "burst", "--grant-type",
                           "client_credentials", "--scope", "api")
    auth = ("burst", made["client_secret"])
    sids: list[str] = []
    jtis: list[str] = []
    dropped: list[str] = []
    lock = threading.Lock()
    began = time.monotonic()

    def burst(n: int) -> None:
        while time.monotonic() - began < BURST_SECONDS:
            try:
                if n % 3:
                    sid = _sign_in(served.base, f"walker{n % 4}")
                    with lock:
                        sids.append(sid)
                else:
                    jti = _token(served.base, auth)
                    with lock:
                        jtis.append(jti)
            except requests.ConnectionError as exc:  # the worker died under this request
                with lock:
                    dropped.append(type(exc).__name__)

    first = _workers(served)
    assert len(first) == 2, first
    threads = [threading.Thread(target=burst, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    killed = []
    for at in KILLS_AT:
        time.sleep(max(0.0, at - (time.monotonic() - began)))
        victim = sorted(_workers(served))[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
    for thread in threads:
        thread.join()

    # Respawned: two workers again, new ones in place of the killed, and the server answers.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        len(_workers(served)) != 2 or set(killed) & _workers(served)
    ):
        time.sleep(0.2)
    now = _workers(served)
    assert len(now) == 2 and not set(killed) & now, (killed, now)
    wait_for(f"{served.base}/readyz", 200, 30)
    assert _sign_in(served.base, "walker0")
    assert served.proc.poll() is None
    assert sids and jtis, (len(sids), len(jtis), dropped)
    print(f"{len(sids)} sign-ins, {len(jtis)} tokens, {len(dropped)} dropped by the kills")

    engine = create_engine(f"sqlite:///{served.workdir / 'instance' / 'idp.db'}")
    try:
        with engine.connect() as conn:
            indexed = set(conn.execute(text("SELECT sid FROM sso_session_index")).scalars())
            stored = {key.removeprefix("sso:") for key in conn.execute(
                text("SELECT key FROM kv_store WHERE key LIKE 'sso:%'")).scalars()}
            logins = conn.execute(text(
                "SELECT count(*) FROM audit_events WHERE action = 'login.success'")).scalar()
            issued = {json.loads(d)["jti"] for d in conn.execute(text(
                "SELECT details FROM audit_events WHERE action = 'token.issued'")).scalars()}
    finally:
        engine.dispose()
    given = set(sids)
    assert given <= indexed and given <= stored  # each session handed out is whole
    assert indexed <= stored  # no index row without its session
    assert logins >= len(indexed)  # each indexed session has its audit row
    assert set(jtis) <= issued  # each token answered has its audit row
    verify = served.idp("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
