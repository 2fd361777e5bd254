"""Shared set-up for the OIDC engine tests: one app per module with users and clients, and
helpers that sign in through the real /login page and drive /oauth2/authorize."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc.jwk import RSAKey
from support import base_overrides, init_database

PASSWORD = "Correct-Horse-Battery-9"
RP = "https://rp.example.org/cb"


@dataclass
class Env:
    app: Any
    svc: Any
    secrets: dict[str, str]
    rp_key: RSAKey

    def client(self):
        return self.app.test_client()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, username: str = "alice", password: str = PASSWORD, rid: str | None = None):
    """Sign in through the hosted login page; returns the final response (not followed)."""
    url = f"/login?r={rid}" if rid else "/login"
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    data = {"csrf_token": _csrf(page.get_data(as_text=True)), "username": username,
            "password": password}
    if rid:
        data["r"] = rid
    return client.post("/login", data=data)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    return verifier, challenge.rstrip("=")


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize(client, *, client_id: str = "web", redirect_uri: str = RP,
              scope: str = "openid profile email", login_first: bool = True,
              **extra: str) -> dict[str, str]:
    """Run an authorization request for alice (signing in when asked); return the redirect's
    query parameters (code or error, state, iss)."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": scope, "state": "st-" + secrets.token_hex(4)}
    params.update(extra)
    return follow(client, client.get("/oauth2/authorize", query_string=params), login_first)


def follow(client, resp, login_first: bool = True) -> dict[str, str]:
    """Follow an answer of /oauth2/authorize through the login (as alice) and consent pages
    to the redirect back to the client; return that redirect's query parameters."""
    for _ in range(6):
        location = resp.headers.get("Location", "")
        if resp.status_code not in (302, 303):
            break
        if location.startswith("/login"):
            assert login_first, "unexpected login"
            rid = query(location)["r"]
            resp = login(client, rid=rid)
            continue
        if location.startswith("/oauth2/consent"):
            page = client.get(location)
            resp = client.post(location, data={"csrf_token": _csrf(page.get_data(as_text=True)),
                                               "approve": "Allow"})
            continue
        if location.startswith("/"):
            resp = client.get(location)
            continue
        break
    assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:300])
    out = query(resp.headers["Location"])
    out["_location"] = resp.headers["Location"]
    return out


def token(client, data: dict[str, str], auth: tuple[str, str] | None = None):
    headers = {}
    if auth:
        raw = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {raw}"
    return client.post("/oauth2/token", data=data, headers=headers)


def initial_access_token(env) -> str:
    """A one-use RFC 7591 initial access token, as `idp clients initial-access-token` makes."""
    from idp.storage.clients import ClientRegistry

    with env.svc.sessions.begin() as db:
        return ClientRegistry(db, env.svc.hasher, env.svc.sealer).new_initial_access_token(
            env.svc.clock.utcnow(), 600)


@contextmanager
def serve_json(document: object) -> Iterator[str]:
    """A real HTTP server on loopback answering GETs with ``document``; yields its base URL."""
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextmanager
def build_env(tmp_path_factory, outbound: dict[str, bool], *, clock: Any = None,
              **settings: Any) -> Iterator[Env]:
    """The module's app with its users and clients; ``outbound`` is the [outbound] section,
    ``settings`` more sections; ``clock`` a clock to inject (a FrozenClock)."""
    from idp.app import create_app
    from idp.backends.chain import password_hasher
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    instance = tmp_path_factory.mktemp("oidc") / "instance"
    instance.mkdir()
    if os.environ.get("IDP_TEST_INSTANCE_TEMPLATE") and "database_url" not in settings:
        # A mutation run (tests/mutation_kit.py) builds the env again for every mutant: the
        # initialised instance is copied from one made once per process.
        from instance_template import initialised

        overrides = initialised(instance, outbound=outbound, **settings)
    else:
        overrides = base_overrides(instance, outbound=outbound, **settings)
        init_database(overrides)
    app = create_app(overrides, clock=clock)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    hasher = password_hasher(svc)
    rp_key = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "use": "sig"})
    made: dict[str, str] = {}
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_group("staff")
        d.create_group("engineering", "staff")
        d.create_role("editor", ["app:documents:*"])
        alice = d.create_user(NewUser(username="alice", email="alice@example.org",
                                      given_name="Alice", family_name="Adams",
                                      password_hash=hasher.hash(PASSWORD)),
                              groups=["staff/engineering"], roles=["editor"])
        alice.email_verified = True
        d.create_user(NewUser(username="bob", email="bob@example.org", given_name="Bob",
                              password_hash=hasher.hash(PASSWORD)))
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        scope = "openid profile email phone address groups roles offline_access"
        _, made["web"] = reg.create(
            "web", name="Web App", redirect_uris=[RP, "http://127.0.0.1:9999/cb",
                                                  "https://rp.example.org/cb?x=1"],
            grant_types=["authorization_code", "refresh_token"], scope=scope,
            post_logout_redirect_uris=["https://rp.example.org/bye"])
        _, made["web2"] = reg.create(
            "web2", name="Other App", redirect_uris=["https://other.example.org/cb"],
            grant_types=["authorization_code", "refresh_token"], scope=scope)
        reg.create("spa", name="Single Page", redirect_uris=["https://spa.example.org/cb"],
                   grant_types=["authorization_code", "refresh_token"], auth_method="none",
                   scope=scope)
        _, made["fapi"] = reg.create(
            "fapi", name="No Rotation", redirect_uris=[RP],
            grant_types=["authorization_code", "refresh_token"], scope=scope,
            extra={"refresh_token_rotation": False, "access_token_format": "opaque",
                   "id_token_signed_response_alg": "ES256"})
        _, made["svc"] = reg.create("svc", name="Service", grant_types=["client_credentials"],
                                    scope="admin scim api", roles=["Administrator"],
                                    extra={"resources": ["https://api.example.org/"]})
        _, made["plain"] = reg.create("plain", name="Plain service",
                                      grant_types=["client_credentials"], scope="admin api")
        reg.create("jwtc", name="Key client", grant_types=["client_credentials"],
                   auth_method="private_key_jwt", scope="api",
                   extra={"jwks": {"keys": [rp_key.as_dict(private=False)]}})
        _, made["hsc"] = reg.create("hsc", name="HMAC client",
                                    grant_types=["client_credentials"],
                                    auth_method="client_secret_jwt", scope="api")
        _, made["two"] = reg.create(
            "two", name="Two URIs", redirect_uris=[RP, "https://rp.example.org/other"],
            grant_types=["authorization_code"], scope="openid")
    try:
        yield Env(app, svc, made, rp_key)
    finally:
        svc.engine.dispose()
