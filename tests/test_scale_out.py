"""Two nodes, one PostgreSQL and one Redis (issue 21, "scale-out proven in CI"): two real
``idp serve`` processes share nothing but the database, the store and the configuration the
deployment guide lists (docs/deployment.md, "Several nodes"), and any request may land on either:

- sign in on A, the code redeemed on B, the refresh on A, userinfo on B;
- RP-initiated logout on B ends the SSO session everywhere: A answers ``prompt=none`` with
  ``login_required`` and refuses the session's refresh token;
- a key rotated (``idp keys rotate``) is used by both nodes within ``keys.cache_seconds``, and
  each node's JWKS carries it;
- a lockout is counted on both: failures on A and on B add up to one lock that both enforce.

The relying party is authlib's OAuth 2 client; ID tokens are verified with PyJWT against the
JWKS of the node that did not sign them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
import secret_watch
from authlib.integrations.requests_client import OAuth2Session

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

IDP = str(Path(sys.executable).parent / "idp")
PASSWORD = "Two-Nodes-One-Truth-42"
REDIRECT = "http://127.0.0.1:9/cb"
CACHE_SECONDS = 2
MAX_FAILURES = 4
LOCKED = "Too many failed sign-in attempts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    a: str
    b: str
    issuer: str
    env: dict[str, str]
    workdir: Path
    client_id: str
    client_secret: str

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [IDP, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{base} did not become ready"
        time.sleep(0.25)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # our own server's process group, by its id
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    from support import require

    db_admin = os.environ.get("IDP_TEST_DATABASE_URL", "")
    redis_url = os.environ.get("IDP_TEST_REDIS_URL", "")
    require(db_admin.startswith("postgresql"), "IDP_TEST_DATABASE_URL (PostgreSQL) is not set")
    require(redis_url.startswith("redis"), "IDP_TEST_REDIS_URL is not set")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"idp_scale_{secrets.token_hex(6)}"
    admin = create_engine(db_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(db_admin).set(database=name).render_as_string(hide_password=False)

    workdir = tmp_path_factory.mktemp("scale-out")
    port_a, port_b = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port_a}"
    # What docs/deployment.md says every node shares; each node has its own instance dir.
    shared = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    shared.update(
        IDP_DATABASE_URL=database_url,
        IDP_REDIS_URL=redis_url,
        IDP_STORE_REDIS_PREFIX=f"scale-{secrets.token_hex(4)}:",
        IDP_SECRET_KEY=secrets.token_urlsafe(32),
        IDP_KEYS_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        IDP_ISSUER=issuer,
        IDP_KEYS_CACHE_SECONDS=str(CACHE_SECONDS),
        IDP_LOCKOUT_MAX_FAILURES=str(MAX_FAILURES),
        IDP_INSTANCE_DIR=str(workdir / "node-a"),
    )
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        first = Cluster(f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}", issuer,
                        shared, workdir, "", "")
        first.cli("init", "--admin-password", PASSWORD)
        first.cli("users", "create", "--username", "ann", "--email", "ann@example.org",
                  "--password", PASSWORD)
        first.cli("users", "create", "--username", "bob", "--email", "bob@example.org",
                  "--password", PASSWORD)
        made = json.loads(first.cli(
            "clients", "create", "--client-id", "two-node-rp", "--redirect-uri", REDIRECT,
            "--grant-type", "authorization_code", "--grant-type", "refresh_token",
            "--scope", "openid profile email", "--post-logout-redirect-uri", REDIRECT,
            "--first-party", "--json",
        ))
        for node, port in (("node-a", port_a), ("node-b", port_b)):
            env = dict(shared, IDP_INSTANCE_DIR=str(workdir / node))
            log = (workdir / f"{node}.log").open("w+")
            logs.append(log)
            secret_watch.watch_file(log.name)
            procs.append(subprocess.Popen(
                [IDP, "serve", "--workers", "1", "--port", str(port)],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
        _wait_ready(f"http://127.0.0.1:{port_a}")
        _wait_ready(f"http://127.0.0.1:{port_b}")
        secret_watch.register(PASSWORD, made["client_secret"])
        yield Cluster(first.a, first.b, issuer, shared, workdir, made["client_id"],
                      made["client_secret"])
    finally:
        for proc in procs:
            _stop(proc)
        for log in logs:
            log.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def sign_in(node: str, browser: requests.Session, username: str, r: str | None = None):
    url = f"{node}/login" + (f"?r={r}" if r else "")
    page = browser.get(url, timeout=30).text
    return browser.post(
        url,
        data={"csrf_token": _csrf(page), "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )


def authorize(c: Cluster, node: str, browser: requests.Session, rp: OAuth2Session,
              verifier: str, **extra: str) -> dict[str, list[str]]:
    """The authorization request on ``node`` (signing in there when asked); the redirect's
    query parameters."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    url, _ = rp.create_authorization_url(
        f"{node}/oauth2/authorize", code_challenge=challenge.decode().rstrip("="),
        code_challenge_method="S256", nonce=secrets.token_hex(8), **extra,
    )
    resp = browser.get(url, allow_redirects=False, timeout=30)
    location = resp.headers.get("Location", "")
    if location.startswith("/login"):
        r = parse_qs(urlsplit(location).query)["r"][0]
        resp = sign_in(node, browser, "ann", r)
        location = resp.headers.get("Location", "")
        while location.startswith("/"):
            resp = browser.get(node + location, allow_redirects=False, timeout=30)
            location = resp.headers.get("Location", "")
    assert location.startswith(REDIRECT), (resp.status_code, location, resp.text[:300])
    return parse_qs(urlsplit(location).query)


def rp_session(c: Cluster) -> OAuth2Session:
    return OAuth2Session(
        c.client_id, c.client_secret, scope="openid profile email", redirect_uri=REDIRECT,
        token_endpoint_auth_method="client_secret_basic",
    )


def verify_id_token(c: Cluster, node: str, token: str) -> dict:
    keys = jwt.PyJWKClient(f"{node}/jwks", cache_keys=False)
    key = keys.get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    return jwt.decode(token, key.key, algorithms=[header["alg"]], audience=c.client_id,
                      issuer=c.issuer)


def test_any_request_may_land_on_any_node(cluster: Cluster):
    c = cluster
    browser, rp = requests.Session(), rp_session(c)
    verifier = secrets.token_urlsafe(48)
    got = authorize(c, c.a, browser, rp, verifier)           # signed in on A
    tokens = rp.fetch_token(                                  # the code redeemed on B
        f"{c.b}/oauth2/token", code=got["code"][0], code_verifier=verifier,
        grant_type="authorization_code",
    )
    claims = verify_id_token(c, c.a, tokens["id_token"])      # B's token, A's JWKS
    refreshed = rp.refresh_token(f"{c.a}/oauth2/token", refresh_token=tokens["refresh_token"])
    assert refreshed["access_token"] != tokens["access_token"]
    info = requests.get(f"{c.b}/oauth2/userinfo", timeout=30,
                        headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"]
    assert info.json()["preferred_username"] == "ann"

    # RP-initiated logout on B ends the session that began on A, everywhere.
    out = browser.get(
        f"{c.b}/oauth2/logout",
        params={"id_token_hint": refreshed.get("id_token") or tokens["id_token"],
                "post_logout_redirect_uri": REDIRECT, "state": "bye"},
        allow_redirects=False, timeout=30,
    )
    assert out.status_code in (302, 303) and out.headers["Location"].startswith(REDIRECT)
    again = authorize(c, c.a, browser, rp_session(c), secrets.token_urlsafe(48), prompt="none")
    assert again["error"] == ["login_required"]
    refused = requests.post(
        f"{c.a}/oauth2/token", auth=(c.client_id, c.client_secret), timeout=30,
        data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]},
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def _kids(node: str) -> set[str]:
    return {k["kid"] for k in requests.get(f"{node}/jwks", timeout=30).json()["keys"]}


def _signing_kid(c: Cluster, node: str) -> str:
    browser, rp = requests.Session(), rp_session(c)
    verifier = secrets.token_urlsafe(48)
    got = authorize(c, node, browser, rp, verifier)
    tokens = rp.fetch_token(f"{node}/oauth2/token", code=got["code"][0],
                            code_verifier=verifier, grant_type="authorization_code")
    return jwt.get_unverified_header(tokens["id_token"])["kid"]


def test_a_rotated_key_is_used_by_both_nodes_within_the_cache_time(cluster: Cluster):
    c = cluster
    old = _signing_kid(c, c.b)
    c.cli("keys", "rotate")
    time.sleep(CACHE_SECONDS + 0.5)
    new_a, new_b = _signing_kid(c, c.a), _signing_kid(c, c.b)
    assert new_a == new_b != old
    assert new_a in _kids(c.a) and new_a in _kids(c.b)
    assert old in _kids(c.b), "the retired key stays published for tokens still in use"


def test_a_lockout_is_counted_on_both_nodes(cluster: Cluster):
    """Two failures on each node: neither alone reached the limit, together they did."""
    c = cluster
    for i in range(MAX_FAILURES):
        node = c.a if i % 2 == 0 else c.b
        browser = requests.Session()
        page = browser.get(f"{node}/login", timeout=30).text
        resp = browser.post(
            f"{node}/login",
            data={"csrf_token": _csrf(page), "username": "bob", "password": f"wrong-{i}"},
            allow_redirects=False, timeout=30,
        )
        assert resp.status_code == 401, resp.status_code  # the form again, with the error
    for node in (c.a, c.b):
        browser = requests.Session()
        resp = sign_in(node, browser, "bob")  # the right password, but locked on both
        assert resp.status_code != 302 and LOCKED in resp.text, f"{node} let a locked account in"
        assert browser.get(f"{node}/account/", allow_redirects=False, timeout=30).status_code == 302
