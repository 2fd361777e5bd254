"""kill -9 of a worker mid-login and mid-token-request, in a real `idp serve --workers 2`.

A burst of sign-ins (each one spends a password hash's time inside the worker), authorization
codes redeemed for tokens and client-credentials token requests runs while a worker is killed
with SIGKILL, twice. The promise (docs/security.md, "Faults"): granian starts a new worker in
its place and the server keeps answering; the requests the dead worker held are dropped (the
client sees the connection close, with no answer or one cut short), and nothing is half made:
every session a browser was given has its index row and its ``login.success`` audit row, every
index row has its session, every token answered has its ``token.issued`` audit row (a refresh
token row is written with it), and `idp audit verify` passes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests
from fault_kit import Served
from sqlalchemy import create_engine, text
from test_serve import wait_for

from idp.sso.sessions import session_id_of

pytestmark = pytest.mark.slow

PASSWORD = "Tr0ub4dor-Horse-Battery"
RP = "http://127.0.0.1:9/cb"
# What a client sees of a request whose worker died: no answer, or an answer cut short.
DROPPED = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
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
    """The granian workers: the children of the `idp serve` process but its provisioning
    pusher."""
    pid = served.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children if b"provisioning" not in _cmdline(int(c))}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b"provisioning"


def _sign_in(base: str, username: str) -> str | None:
    """The session id a browser is given, or None when the request was dropped."""
    with requests.Session() as browser:
        page = browser.get(f"{base}/login", timeout=20).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        resp = browser.post(f"{base}/login", allow_redirects=False, timeout=20, data={
            "csrf_token": token, "username": username, "password": PASSWORD})
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
        return resp.cookies.get("idp_session")


def _code_exchange(base: str, browser: requests.Session, secret: str) -> str:
    """Authorization code for a signed-in browser, redeemed at the token endpoint (the refresh
    token row and its audit row are written here); the access token's jti."""
    resp = browser.get(f"{base}/oauth2/authorize", allow_redirects=False, timeout=20, params={
        "response_type": "code", "client_id": "rp", "redirect_uri": RP, "scope": "openid",
        "state": "s"})
    assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    resp = requests.post(f"{base}/oauth2/token", auth=("rp", secret), timeout=20, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": RP})
    assert resp.status_code == 200 and resp.json()["refresh_token"], resp.text[:300]
    return pyjwt.decode(resp.json()["access_token"], options={"verify_signature": False})["jti"]


def _token(base: str, auth: tuple[str, str]) -> str:
    resp = requests.post(f"{base}/oauth2/token", auth=auth, timeout=20,
                         data={"grant_type": "client_credentials", "scope": "api"})
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    return pyjwt.decode(resp.json()["access_token"], options={"verify_signature": False})["jti"]


def test_killed_workers_leave_nothing_half_made(served):
    made = served.idp_json("clients", "create", "--client-id", "burst", "--grant-type",
                           "client_credentials", "--scope", "api")
    auth = ("burst", made["client_secret"])
    rp_secret = served.idp_json(
        "clients", "create", "--client-id", "rp", "--redirect-uri", RP, "--grant-type",
        "authorization_code", "--grant-type", "refresh_token", "--scope", "openid",
        "--first-party")["client_secret"]
    sids: list[str] = []
    jtis: list[str] = []
    dropped: list[str] = []
    lock = threading.Lock()
    began = time.monotonic()

    def burst(n: int) -> None:
        browser = requests.Session()
        while time.monotonic() - began < BURST_SECONDS:
            try:
                if n % 3 == 0:
                    jti = _token(served.base, auth)
                elif n % 3 == 1:
                    sid = _sign_in(served.base, f"walker{n % 4}")
                    with lock:
                        sids.append(sid)
                    continue
                else:
                    if "idp_session" not in browser.cookies:
                        browser.cookies.set("idp_session", _sign_in(served.base, "walker3"))
                    jti = _code_exchange(served.base, browser, rp_secret)
                with lock:
                    jtis.append(jti)
            except DROPPED as exc:  # the worker died under this request
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
            stored = {key.removeprefix("ssoh:") for key in conn.execute(
                text("SELECT key FROM kv_store WHERE key LIKE 'ssoh:%'")).scalars()}
            logins = conn.execute(text(
                "SELECT count(*) FROM audit_events WHERE action = 'login.success'")).scalar()
            issued = [json.loads(d) for d in conn.execute(text(
                "SELECT details FROM audit_events WHERE action = 'token.issued'")).scalars()]
            grants = list(conn.execute(text("SELECT grant_id FROM oauth_refresh_tokens")).scalars())
    finally:
        engine.dispose()
    given = {session_id_of(cookie) for cookie in sids}  # what the server keeps of a cookie
    assert given <= indexed and given <= stored  # each session handed out is whole
    assert indexed <= stored  # no index row without its session
    assert logins >= len(indexed)  # each indexed session has its audit row
    assert set(jtis) <= {d["jti"] for d in issued}  # each token answered has its audit row
    # Each refresh token row was written with its audit row, in one transaction.
    assert grants and set(grants) <= {d.get("grant") for d in issued if d.get("refresh_token")}
    verify = served.idp("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
