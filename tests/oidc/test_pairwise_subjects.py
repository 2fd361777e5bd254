"""Pairwise subject identifiers (OIDC Core §8.1) and sector_identifier_uri (OIDC Registration
§5; conformance oidcc-registration-sector-uri / -sector-bad).

Clients are registered over HTTP (RFC 7591), the admin API and the command line; sector
documents are served by a real loopback HTTP server. Tokens are read with PyJWT against the
published JWKS: the client must see one ``sub`` for a user in ID tokens, userinfo, access
tokens, introspection, refreshes and back-channel logout tokens, and clients of different
sectors must see different ones. Every refused registration writes nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from api_kit import service_token
from oidc_support import PASSWORD, authorize, build_env, initial_access_token, login, query, token
from support import set_instance_env

from idp.storage.models import Client, User

ISSUER = "http://127.0.0.1:5000"
A1 = "https://a1.example.org/cb"
A2 = "https://a2.example.org/cb"
B = "https://b.example.org/cb"
SCOPE = "openid profile email offline_access"


class Site:
    """A loopback HTTP server: GET answers from ``docs`` (path -> (status, body)); POSTs of
    back-channel logout tokens are kept in ``logout_tokens``."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[int, bytes]] = {}
        self.logout_tokens: list[str] = []
        self.fetched: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                site.fetched.append(self.path)
                status, body = site.docs.get(self.path, (404, b""))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                site.logout_tokens.append(form["logout_token"][0])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, document, status: int = 200) -> str:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.docs[path] = (status, body)
        return self.base + path


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    threading.Thread(target=s.server.serve_forever, daemon=True).start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _register(env, **meta):
    return env.client().post(
        "/oauth2/register", headers={"Authorization": f"Bearer {initial_access_token(env)}"},
        json={"scope": SCOPE, "grant_types": ["authorization_code", "refresh_token"], **meta})


@pytest.fixture(scope="module")
def rps(env, site) -> dict[str, dict]:
    """a1 and a2: one sector (127.0.0.1, their sector document's host); b: its own sector
    (its one redirect host); each registered over RFC 7591."""
    sector = site.serve("/sector-a.json", [A1, A2, "https://a1.example.org/other"])
    made = {}
    for name, uris, extra in (
        ("a1", [A1], {"sector_identifier_uri": sector,
                      "backchannel_logout_uri": f"{site.base}/bcl"}),
        ("a2", [A2], {"sector_identifier_uri": sector}),
        ("b", [B], {}),
    ):
        resp = _register(env, redirect_uris=uris, subject_type="pairwise", **extra)
        assert resp.status_code == 201, resp.json
        made[name] = dict(resp.json, redirect_uri=uris[0])
    return made


def _verify(c, jwt_value: str, audience: str | None = None) -> dict:
    header = pyjwt.get_unverified_header(jwt_value)
    key = next(k for k in c.get("/jwks").json["keys"] if k["kid"] == header["kid"])
    return pyjwt.decode(jwt_value, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                        audience=audience, issuer=ISSUER,
                        options={"verify_aud": audience is not None})


def _tokens(env, c, rp: dict, username: str = "alice", **extra) -> dict:
    if username != "alice":
        login(c, username, PASSWORD)
    got = authorize(c, client_id=rp["client_id"], redirect_uri=rp["redirect_uri"], scope=SCOPE,
                    **extra)
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": rp["redirect_uri"]},
                 auth=(rp["client_id"], rp["client_secret"]))
    assert resp.status_code == 200, resp.json
    return resp.json


def _sub(env, c, rp: dict, username: str = "alice") -> str:
    return _verify(c, _tokens(env, c, rp, username)["id_token"], rp["client_id"])["sub"]


def _uuid(env, username: str) -> str:
    with env.svc.sessions() as db:
        return db.query(User).filter_by(username=username).one().uuid


def _clients(svc) -> int:
    with svc.sessions() as db:
        return db.query(Client).count()


# --- discovery ------------------------------------------------------------------------------

def test_discovery_advertises_both_subject_types(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert doc["subject_types_supported"] == ["public", "pairwise"]


# --- who sees which sub ---------------------------------------------------------------------

def test_sectors_decide_the_sub(env, rps):
    """oidcc-registration-sector-uri: same sector same sub, other sector other sub, one client
    always the same sub; a public client sees the user's stable id."""
    c = env.client()
    a1, a2, b = (_sub(env, c, rps[n]) for n in ("a1", "a2", "b"))
    alice = _uuid(env, "alice")
    assert a1 == a2
    assert a1 != b and alice not in (a1, b)
    assert len(a1) == 43  # base64url of a SHA-256 digest, unpadded
    assert _sub(env, env.client(), rps["a1"]) == a1  # another sign-in, the same sub
    assert _sub(env, env.client(), rps["a1"], "bob") not in (a1, _uuid(env, "bob"))
    public = _verify(c, _tokens(env, c, {"client_id": "web", "redirect_uri":
                                         "https://rp.example.org/cb",
                                         "client_secret": env.secrets["web"]})["id_token"])
    assert public["sub"] == alice


def test_every_surface_shows_the_client_its_pairwise_sub(env, rps):
    rp = rps["a1"]
    auth = (rp["client_id"], rp["client_secret"])
    c = env.client()
    tokens = _tokens(env, c, rp)
    sub = _verify(c, tokens["id_token"], rp["client_id"])["sub"]
    assert _verify(c, tokens["access_token"])["sub"] == sub  # RFC 9068 access token
    info = c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200 and info.json["sub"] == sub
    assert info.json["email"] == "alice@example.org"  # the token still finds its user
    for value in (tokens["access_token"], tokens["refresh_token"]):
        seen = c.post("/oauth2/introspect", data={"token": value}, auth=auth).json
        assert seen["active"] is True and seen["sub"] == sub
    refreshed = token(c, {"grant_type": "refresh_token",
                          "refresh_token": tokens["refresh_token"]}, auth=auth).json
    assert _verify(c, refreshed["id_token"], rp["client_id"])["sub"] == sub
    assert _verify(c, refreshed["access_token"])["sub"] == sub


def test_opaque_access_tokens_of_a_pairwise_client_reach_userinfo(env, rps):
    rp = rps["b"]
    app = env.app
    headers = {"Authorization": f"Bearer {service_token(app)}"}
    resp = app.test_client().patch(f"/api/v1/clients/{rp['client_id']}", headers=headers,
                                   json={"metadata": {"access_token_format": "opaque"}})
    assert resp.status_code == 200, resp.json
    c = env.client()
    tokens = _tokens(env, c, rp)
    sub = _verify(c, tokens["id_token"], rp["client_id"])["sub"]
    assert tokens["access_token"].count(".") == 0
    info = c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200 and info.json["sub"] == sub != _uuid(env, "alice")


# --- hints and logout -------------------------------------------------------------------------

def test_prompt_none_with_a_pairwise_id_token_hint(env, rps):
    rp = rps["a2"]
    c = env.client()
    alice_hint = _tokens(env, c, rp)["id_token"]
    bob_hint = _tokens(env, env.client(), rp, "bob")["id_token"]
    params = {"response_type": "code", "client_id": rp["client_id"],
              "redirect_uri": rp["redirect_uri"], "scope": SCOPE, "prompt": "none"}
    ok = c.get("/oauth2/authorize", query_string=dict(params, id_token_hint=alice_hint))
    assert "code" in query(ok.headers["Location"]), ok.headers["Location"]
    other = c.get("/oauth2/authorize", query_string=dict(params, id_token_hint=bob_hint))
    assert query(other.headers["Location"])["error"] == "login_required"


def test_logout_with_a_pairwise_hint_and_the_back_channel_token(env, rps, site):
    rp = rps["a1"]
    c = env.client()
    tokens = _tokens(env, c, rp)
    claims = _verify(c, tokens["id_token"], rp["client_id"])
    site.logout_tokens.clear()
    page = c.get("/oauth2/logout", query_string={"id_token_hint": tokens["id_token"]})
    # The hint's pairwise sub matched the session: signed out at once, no confirmation asked.
    assert page.status_code == 200 and 'name="confirm"' not in page.get_data(as_text=True)
    deadline = time.time() + 10
    while not site.logout_tokens and time.time() < deadline:
        time.sleep(0.05)
    assert site.logout_tokens, "no logout token arrived"
    logout = _verify(c, site.logout_tokens[0], rp["client_id"])
    assert logout["sub"] == claims["sub"] and logout["sid"] == claims["sid"]


# --- sector documents: refused registrations store nothing ------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["missing", "unreachable", "not-json", "not-array",
                                  "not-strings", "http-error"])
def test_bad_sector_documents_are_refused(env, site, case):
    """oidcc-registration-sector-bad, and the ways a document can fail."""
    uris = ["https://sector.example.org/cb"]
    path = f"/bad-{case}.json"
    sector = {
        "missing": lambda: site.serve(path, ["https://sector.example.org/other"]),
        "unreachable": lambda: f"http://127.0.0.1:{_closed_port()}/s.json",
        "not-json": lambda: site.serve(path, b"<html>sector</html>"),
        "not-array": lambda: site.serve(path, {"redirect_uris": uris}),
        "not-strings": lambda: site.serve(path, [uris]),
        "http-error": lambda: site.serve(path, uris, status=500),
    }[case]()
    before = _clients(env.svc)
    resp = _register(env, redirect_uris=uris, subject_type="pairwise",
                     sector_identifier_uri=sector)
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid_client_metadata"
    assert resp.json["error_description"].startswith("sector_identifier_uri:")
    assert _clients(env.svc) == before


@pytest.mark.parametrize("meta,field", [
    ({"subject_type": "pairwise", "redirect_uris": [A1, B]}, "subject_type"),
    ({"subject_type": "pairwise", "redirect_uris": [A1, "com.example.app:/cb"]}, "subject_type"),
    ({"subject_type": "secret", "redirect_uris": [A1]}, "subject_type"),
])
def test_pairwise_without_a_sector_needs_one_host(env, meta, field):
    before = _clients(env.svc)
    resp = _register(env, **meta)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    assert resp.json["error_description"].startswith(field)
    assert _clients(env.svc) == before


def test_pairwise_with_one_host_needs_no_sector_document(env):
    resp = _register(env, subject_type="pairwise",
                     redirect_uris=[B, "https://b.example.org/other"])
    assert resp.status_code == 201 and resp.json["subject_type"] == "pairwise"


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The default [outbound] settings: https only, no private addresses."""
    with build_env(tmp_path_factory, {}) as built:
        yield built


def test_sector_uri_on_http_or_a_private_address_is_refused_by_default(strict, site,
                                                                          monkeypatch):
    site.serve("/strict.json", [A1])
    real = socket.getaddrinfo

    def sector_host_is_loopback(host, port, *args, **kwargs):
        if host == "sector.rp.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", sector_host_is_loopback)
    headers = {"Authorization": f"Bearer {service_token(strict.app)}"}
    before = _clients(strict.svc)
    for uri in (f"{site.base}/strict.json", "https://10.0.0.8/s.json",
                "https://sector.rp.test/s.json"):
        resp = _register(strict, redirect_uris=[A1], subject_type="pairwise",
                         sector_identifier_uri=uri)
        assert resp.status_code == 400, resp.json
        assert resp.json["error_description"].startswith("sector_identifier_uri:")
    # The admin API writes through the same service: the resolved address is refused too.
    resp = strict.app.test_client().post("/api/v1/clients", headers=headers, json={
        "metadata": {"redirect_uris": [A1], "subject_type": "pairwise",
                     "sector_identifier_uri": "https://sector.rp.test/s.json"}})
    assert resp.status_code == 409, resp.json
    assert "loopback" in resp.json["detail"]
    assert _clients(strict.svc) == before
    assert "/strict.json" not in site.fetched  # refused before any connection


def test_admin_api_checks_the_sector_document_on_create_and_patch(env, rps, site):
    headers = {"Authorization": f"Bearer {service_token(env.app)}"}
    api = env.app.test_client()
    before = _clients(env.svc)
    # Unreachable (the name does not resolve): nothing is created.
    resp = api.post("/api/v1/clients", headers=headers, json={
        "metadata": {"redirect_uris": [A1], "subject_type": "pairwise",
                     "sector_identifier_uri": "https://sector.invalid/s.json"}})
    # Well formed; the document (outside the request) refuses it: 409.
    assert resp.status_code == 409 and "sector_identifier_uri" in resp.json["detail"]
    resp = api.post("/api/v1/clients", headers=headers, json={
        "metadata": {"redirect_uris": [A1, B], "subject_type": "pairwise"}})
    assert resp.status_code == 400 and "subject_type" in resp.json["detail"]
    assert _clients(env.svc) == before
    # A new redirect URI the stored sector document does not list: the client is unchanged.
    client_id = rps["a2"]["client_id"]
    with env.svc.sessions() as db:
        stored = dict(db.get(Client, client_id).meta)
    resp = api.patch(f"/api/v1/clients/{client_id}", headers=headers,
                     json={"metadata": {"redirect_uris": [A2, "https://a2.example.org/new"]}})
    assert resp.status_code == 409, resp.json
    assert "does not list" in resp.json["detail"]
    with env.svc.sessions() as db:
        assert db.get(Client, client_id).meta == stored
    # A change that leaves sector and redirect URIs alone does not fetch the document again.
    site.docs.pop("/sector-a.json")
    try:
        resp = api.patch(f"/api/v1/clients/{client_id}", headers=headers,
                         json={"metadata": {"id_token_lifetime": 120}})
        assert resp.status_code == 200, resp.json
    finally:
        site.serve("/sector-a.json", [A1, A2, "https://a1.example.org/other"])


def test_command_line_sets_the_subject_type(tmp_path, monkeypatch, capsys, site):
    from test_cli import fails, ok_json, run, snapshot

    instance = tmp_path / "instance"
    set_instance_env(monkeypatch, instance)
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_HTTP", "true")
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_PRIVATE_ADDRESSES", "true")
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0
    before = snapshot(instance)
    assert "subject_type" in fails(capsys, "clients", "create", "--client-id", "p1",
                                   "--redirect-uri", A1, "--redirect-uri", B,
                                   "--subject-type", "pairwise", code=1)
    bad = site.serve("/cli-bad.json", [A1])
    assert "does not list" in fails(capsys, "clients", "create", "--client-id", "p1",
                                    "--redirect-uri", A1, "--redirect-uri", B,
                                    "--subject-type", "pairwise",
                                    "--sector-identifier-uri", bad, code=1)
    assert snapshot(instance) == before
    good = site.serve("/cli-good.json", [A1, B])
    ok_json(capsys, "clients", "create", "--client-id", "p1", "--redirect-uri", A1,
            "--redirect-uri", B, "--subject-type", "pairwise", "--sector-identifier-uri", good)
    shown = ok_json(capsys, "clients", "show", "p1")
    assert shown["subject_type"] == "pairwise" and shown["sector_identifier_uri"] == good
    updated = ok_json(capsys, "clients", "update", "p1", "--authorization-alg", "ES256",
                      "--subject-type", "public")
    assert updated["authorization_signed_response_alg"] == "ES256"
    assert updated["subject_type"] == "public"


def test_console_sets_the_subject_type_and_the_jarm_algorithm(env):
    from admin_kit import console_csrf, make_admin, signed_in

    make_admin(env.svc)
    admin = signed_in(env.app)
    form = {"csrf_token": console_csrf(admin, "/admin/clients/new"), "client_id": "console-pw",
            "name": "Console", "auth_method": "client_secret_basic",
            "redirect_uris": f"{A1}\n{B}", "grant_types": ["authorization_code"],
            "scope": "openid", "subject_type": "pairwise"}
    before = _clients(env.svc)
    refused = admin.post("/admin/clients/new", data=form)
    assert refused.status_code == 400
    assert 'id="subject_type-error"' in refused.get_data(as_text=True)
    assert _clients(env.svc) == before
    made = admin.post("/admin/clients/new", data=dict(form, redirect_uris=A1,
                                                      authorization_alg="ES256"))
    assert made.status_code == 302
    with env.svc.sessions() as db:
        meta = db.get(Client, "console-pw").meta
    assert meta["subject_type"] == "pairwise"
    assert meta["authorization_signed_response_alg"] == "ES256"
    page = admin.get("/admin/clients/console-pw").get_data(as_text=True)
    assert "Pairwise" in page and "ES256" in page
    saved = admin.post("/admin/clients/console-pw/edit", data=dict(
        form, redirect_uris=A1, subject_type="public", authorization_alg=""))
    assert saved.status_code == 302
    with env.svc.sessions() as db:
        meta = db.get(Client, "console-pw").meta
    assert "subject_type" not in meta and "authorization_signed_response_alg" not in meta


def test_config_apply_fetches_the_sector_document(tmp_path, monkeypatch, capsys, site):
    """`idp config apply` writes clients through the same service: a document that does not
    list the redirect URI refuses the whole file; the JARM and pairwise keys are taken."""
    import yaml
    from test_cli import fails, ok_json, run, snapshot

    instance = tmp_path / "instance"
    set_instance_env(monkeypatch, instance)
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_HTTP", "true")
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_PRIVATE_ADDRESSES", "true")
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0

    def document(sector: str) -> str:
        path = tmp_path / "idp.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "clients": {"pw": {"metadata": {
            "redirect_uris": [A1], "token_endpoint_auth_method": "none",
            "subject_type": "pairwise", "sector_identifier_uri": sector,
            "authorization_signed_response_alg": "ES256"}}}}))
        return str(path)

    before = snapshot(instance)
    bad = document(site.serve("/apply-bad.json", [B]))
    assert "does not list" in fails(capsys, "config", "apply", bad)
    assert snapshot(instance) == before
    ok_json(capsys, "config", "apply", document(site.serve("/apply-good.json", [A1])))
    shown = ok_json(capsys, "clients", "show", "pw")
    assert shown["subject_type"] == "pairwise"
    assert shown["authorization_signed_response_alg"] == "ES256"
