"""The authorization code flow with PKCE through the real pages, for tests that need a user's
access token (admin API, SCIM): sign in on /login, follow /oauth2/authorize, redeem the code."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import secret_watch
from login_kit import login

CONSOLE_REDIRECT = "http://127.0.0.1:8765/cb"


def _console_client(app) -> tuple[str, str]:
    """A first-party confidential client allowed the admin and scim scopes (made once per app)."""
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    cached = app.config.get("_test_console_client")
    if cached:
        return cached
    svc = app.extensions["idp"]
    with transaction(svc, Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx,
            "test-console",
            name="Test console",
            redirect_uris=[CONSOLE_REDIRECT],
            grant_types=["authorization_code"],
            scope="openid profile email admin scim",
            first_party=True,
        )
    secret_watch.register(secret)
    app.config["_test_console_client"] = ("test-console", secret)
    return "test-console", secret


def code_flow_token(app, username: str, password: str, scope: str = "openid admin") -> str:
    client_id, secret = _console_client(app)
    c = app.test_client()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CONSOLE_REDIRECT,
        "scope": scope,
        "state": secrets.token_hex(4),
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
    }
    resp = c.get("/oauth2/authorize", query_string=params)
    location = resp.headers.get("Location", "")
    if location.startswith("/login"):
        rid = parse_qs(urlsplit(location).query)["r"][0]
        resp = login(c, username, password, r=rid)
        while resp.status_code in (302, 303) and resp.headers["Location"].startswith("/"):
            resp = c.get(resp.headers["Location"])
        location = resp.headers.get("Location", "")
    code = parse_qs(urlsplit(location).query).get("code", [None])[0]
    assert code, (resp.status_code, location, resp.get_data(as_text=True)[:300])
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    got = c.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CONSOLE_REDIRECT,
            "code_verifier": verifier,
        },
        headers={"Authorization": f"Basic {raw}"},
    )
    assert got.status_code == 200, got.get_data(as_text=True)
    secret_watch.register(code, got.json)
    return got.json["access_token"]
