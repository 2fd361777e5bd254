"""The real server (`idp serve --workers 2`) driven by an independent relying party: authlib's
OAuth 2.0 client does the protocol (PKCE S256, code exchange, refresh, userinfo, revocation)
and PyJWT validates every ID token against the published JWKS (OIDC Core §3.1.3.7)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt as pyjwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from support import backend_env

pytestmark = pytest.mark.slow

IDP = Path(sys.executable).with_name("idp")
REDIRECT = "http://127.0.0.1:8765/callback"
PASSWORD = "Flow-Test-Password-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(instance: Path, issuer: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(instance), IDP_ISSUER=issuer,
               IDP_LOGGING_ACCESS_LOG="false", **backend_env(instance))
    return env


def _idp(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([str(IDP), *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if "--json" in args else {}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    instance = tmp_path_factory.mktemp("oidc-flow") / "instance"
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = _env(instance, issuer)
    _idp(env, "init", "--admin-password", "Admin-Password-123", "--json")
    _idp(env, "users", "create", "--username", "carol", "--email", "carol@example.org",
         "--password", PASSWORD, "--given-name", "Carol", "--family-name", "Clark",
         "--role", "Auditor", "--json")
    client = _idp(env, "clients", "create", "--client-id", "rp", "--name", "Flow RP",
                  "--redirect-uri", REDIRECT, "--grant-type", "authorization_code",
                  "--grant-type", "refresh_token", "--scope",
                  "openid profile email roles offline_access", "--first-party", "--json")
    proc = subprocess.Popen([str(IDP), "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"{issuer}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready")
        yield {"issuer": issuer, "client_secret": client["client_secret"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _browser_login(authorization_url: str, username: str = "carol") -> str:
    """A person at a browser: follow redirects, fill in the hosted login form, and stop at
    the redirect back to the relying party. Returns that callback URL."""
    browser = requests.Session()
    url = authorization_url
    for _ in range(10):
        resp = browser.get(url, allow_redirects=False, timeout=10)
        if resp.status_code == 200 and 'name="password"' in resp.text:
            csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', resp.text).group(1)
            rid = re.search(r'name="r"[^>]*value="([^"]*)"', resp.text)
            resp = browser.post(urljoin(url, "/login"), allow_redirects=False, timeout=10,
                                data={"csrf_token": csrf, "username": username,
                                      "password": PASSWORD, "r": rid.group(1) if rid else ""})
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
        url = urljoin(url, resp.headers["Location"])
        if url.startswith(REDIRECT):
            return url
    pytest.fail("never came back to the relying party")


def _validate_id_token(server: dict, id_token: str, nonce: str, access_token: str) -> dict:
    jwks = requests.get(f"{server['issuer']}/jwks", timeout=10).json()
    header = pyjwt.get_unverified_header(id_token)
    key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    claims = pyjwt.decode(id_token, key, algorithms=[header["alg"]], audience="rp",
                          issuer=server["issuer"], options={"require": ["exp", "iat", "sub"]})
    assert claims["nonce"] == nonce
    digest = hashlib.sha256(access_token.encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    return claims


def test_code_flow_with_pkce_refresh_userinfo_and_revocation(server):
    issuer = server["issuer"]
    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    rp = OAuth2Session("rp", server["client_secret"], scope="openid profile email roles",
                       redirect_uri=REDIRECT, code_challenge_method="S256")
    verifier = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
    nonce = base64.urlsafe_b64encode(os.urandom(12)).decode()
    url, state = rp.create_authorization_url(meta["authorization_endpoint"],
                                             code_verifier=verifier, nonce=nonce)
    callback = _browser_login(url)
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert params["state"] == state and params["iss"] == issuer  # RFC 9207 mix-up defence
    tokens = rp.fetch_token(meta["token_endpoint"], authorization_response=callback,
                            code_verifier=verifier)
    claims = _validate_id_token(server, tokens["id_token"], nonce, tokens["access_token"])
    assert claims["given_name"] == "Carol" and "Auditor" in claims["roles"]
    info = rp.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["email"] == "carol@example.org"
    refreshed = rp.refresh_token(meta["token_endpoint"], refresh_token=tokens["refresh_token"])
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    again = pyjwt.decode(refreshed["id_token"], options={"verify_signature": False})
    assert again["sub"] == claims["sub"] and again["auth_time"] == claims["auth_time"]
    rp.revoke_token(meta["revocation_endpoint"], refreshed["access_token"],
                    token_type_hint="access_token")
    introspected = requests.post(meta["introspection_endpoint"],
                                 data={"token": refreshed["access_token"]},
                                 auth=("rp", server["client_secret"]), timeout=10).json()
    assert introspected == {"active": False}


def test_both_workers_share_codes_and_sessions(server):
    """Codes and sessions live in the shared store: redeeming many codes spreads the
    requests over both worker processes, and every one succeeds exactly once."""
    issuer = server["issuer"]
    for _ in range(4):
        rp = OAuth2Session("rp", server["client_secret"], scope="openid",
                           redirect_uri=REDIRECT, code_challenge_method="S256")
        verifier = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
        url, _ = rp.create_authorization_url(f"{issuer}/oauth2/authorize",
                                             code_verifier=verifier, nonce="n")
        callback = _browser_login(url)
        tokens = rp.fetch_token(f"{issuer}/oauth2/token", authorization_response=callback,
                                code_verifier=verifier)
        assert tokens["id_token"]
        code = parse_qs(urlsplit(callback).query)["code"][0]
        replay = requests.post(f"{issuer}/oauth2/token", timeout=10,
                               auth=("rp", server["client_secret"]),
                               data={"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": REDIRECT, "code_verifier": verifier})
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
