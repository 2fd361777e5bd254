"""RP-Initiated Logout 1.0, Back-Channel Logout 1.0 (a real HTTP receiver), Front-Channel
Logout 1.0, dynamic registration (RFC 7591 / OIDC Registration) and management (RFC 7592),
and the discovery document (OIDC Discovery 1.0 §3)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from oidc_support import RP, authorize, initial_access_token, login, query, token

from idp.storage.models import Client


def _id_token(env, c, client_id="web", redirect_uri=RP):
    got = authorize(c, client_id=client_id, redirect_uri=redirect_uri)
    return token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": redirect_uri},
                 auth=(client_id, env.secrets[client_id])).json


def test_rp_initiated_logout_with_hint_redirects_with_state(env):
    c = env.client()
    tokens = _id_token(env, c)
    resp = c.get("/oauth2/logout", query_string={
        "id_token_hint": tokens["id_token"], "state": "bye-1",
        "post_logout_redirect_uri": "https://rp.example.org/bye"})
    assert resp.status_code == 303
    assert resp.headers["Location"] == "https://rp.example.org/bye?state=bye-1"
    # The session is gone: prompt=none now fails.
    again = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web", "redirect_uri": RP, "scope": "openid",
        "prompt": "none"})
    assert query(again.headers["Location"])["error"] == "login_required"


@pytest.mark.parametrize("params", [
    {"post_logout_redirect_uri": "https://evil.example/bye"},
    {"post_logout_redirect_uri": "https://rp.example.org/bye?foo=bar"},
])
def test_unregistered_post_logout_uri_is_refused_and_session_kept(env, params):
    c = env.client()
    tokens = _id_token(env, c)
    resp = c.get("/oauth2/logout", query_string=dict(params, id_token_hint=tokens["id_token"]))
    assert resp.status_code == 400 and "Location" not in resp.headers
    silent = c.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "web", "redirect_uri": RP, "scope": "openid",
        "prompt": "none"})
    assert "code" in query(silent.headers["Location"])


def test_tampered_or_foreign_hint_never_redirects(env):
    c = env.client()
    tokens = _id_token(env, c)
    header, payload, _ = tokens["id_token"].split(".")
    none_alg = "eyJhbGciOiJub25lIn0." + payload + "."
    foreign = pyjwt.encode({"iss": "http://127.0.0.1:5000", "aud": "web", "sub": "x"},
                           "k" * 32, algorithm="HS256")
    for hint in (none_alg, foreign):
        resp = c.get("/oauth2/logout", query_string={
            "id_token_hint": hint, "post_logout_redirect_uri": "https://rp.example.org/bye"})
        assert resp.status_code == 400 and "Location" not in resp.headers


def test_logout_without_hint_asks_for_confirmation_and_does_not_redirect(env):
    c = env.client()
    login(c)
    page = c.get("/oauth2/logout", query_string={
        "client_id": "web", "post_logout_redirect_uri": "https://rp.example.org/bye"})
    assert page.status_code == 200 and "Sign out" in page.get_data(as_text=True)
    import re

    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    missing_csrf = c.post("/oauth2/logout", data={"confirm": "Sign out"})
    assert missing_csrf.status_code == 400
    done = c.post("/oauth2/logout", data={"csrf_token": csrf.group(1), "confirm": "Sign out"})
    assert done.status_code == 200 and "Location" not in done.headers
    assert "signed out" in done.get_data(as_text=True)


class _Receiver(BaseHTTPRequestHandler):
    tokens: list[str] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        body = parse_qs(self.rfile.read(length).decode())
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).tokens.append(body["logout_token"][0])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        return


def test_backchannel_and_frontchannel_logout(env):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with env.svc.sessions.begin() as db:
            row = db.get(Client, "web2")
            row.meta = dict(row.meta, backchannel_logout_uri=f"http://127.0.0.1:{port}/bcl",
                            frontchannel_logout_uri="https://other.example.org/fcl")
        from idp.oidc.clients import client_cache

        client_cache(env.svc).bump()
        _Receiver.tokens.clear()
        _Receiver.fail_first = 1  # the first delivery fails: the retry must succeed
        c = env.client()
        tokens = _id_token(env, c, "web2", "https://other.example.org/cb")
        id_claims = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
        page = c.get("/oauth2/logout", query_string={"id_token_hint": tokens["id_token"]})
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert 'src="https://other.example.org/fcl?iss=http' in html and "sid=" in html
        deadline = time.time() + 10
        while not _Receiver.tokens and time.time() < deadline:
            time.sleep(0.05)
        assert _Receiver.tokens, "no logout token arrived"
        logout = _Receiver.tokens[0]
        jwks = env.client().get("/jwks").json
        header = pyjwt.get_unverified_header(logout)
        assert header["typ"] == "logout+jwt"
        key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        claims = pyjwt.decode(logout, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                              audience="web2", issuer="http://127.0.0.1:5000")
        assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
        assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
        assert "nonce" not in claims and claims["jti"]
        refreshed = token(c, {"grant_type": "refresh_token",
                              "refresh_token": tokens["refresh_token"]},
                          auth=("web2", env.secrets["web2"]))
        assert refreshed.json["error"] == "invalid_grant"
    finally:
        server.shutdown()


# --- registration --------------------------------------------------------------------------

def test_registration_needs_an_initial_access_token_used_once(env):
    c = env.client()
    meta = {"redirect_uris": ["https://dyn.example.org/cb"], "client_name": "Dyn"}
    with env.svc.sessions() as db:
        before = db.query(Client).count()
    assert c.post("/oauth2/register", json=meta).status_code == 401
    iat = initial_access_token(env)
    created = c.post("/oauth2/register", json=meta, headers={"Authorization": f"Bearer {iat}"})
    assert created.status_code == 201
    doc = created.json
    assert doc["client_secret"] and doc["registration_access_token"]
    assert doc["redirect_uris"] == ["https://dyn.example.org/cb"]
    again = c.post("/oauth2/register", json=meta, headers={"Authorization": f"Bearer {iat}"})
    assert again.status_code == 401
    with env.svc.sessions() as db:
        assert db.query(Client).count() == before + 1
    # The new client works at once (the client cache was told).
    cc = c.post("/oauth2/token", data={"grant_type": "authorization_code", "code": "x",
                                       "redirect_uri": "https://dyn.example.org/cb"},
                headers={"Authorization": "Basic " + __import__("base64").b64encode(
                    f"{doc['client_id']}:{doc['client_secret']}".encode()).decode()})
    assert cc.json["error"] == "invalid_grant"  # authenticated; the code is just wrong
    # RFC 7592: read, update, delete with the registration access token.
    mgmt = {"Authorization": f"Bearer {doc['registration_access_token']}"}
    url = doc["registration_client_uri"].replace("http://127.0.0.1:5000", "")
    assert c.get(url, headers=mgmt).json["client_id"] == doc["client_id"]
    assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    updated = c.put(url, headers=mgmt, json={
        "client_id": doc["client_id"], "redirect_uris": ["https://dyn.example.org/cb2"],
        "client_name": "Dyn 2"})
    assert updated.status_code == 200 and updated.json["redirect_uris"] == [
        "https://dyn.example.org/cb2"]
    assert c.delete(url, headers=mgmt).status_code == 204
    with env.svc.sessions() as db:
        assert db.get(Client, doc["client_id"]) is None


@pytest.mark.parametrize("meta,error", [
    ({"redirect_uris": ["https://dyn.example.org/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["http://dyn.example.org/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://dyn.example.org/cb"], "response_types": ["token"]},
     "invalid_client_metadata"),
    ({"redirect_uris": ["https://dyn.example.org/cb"],
      "id_token_signed_response_alg": "none"}, "invalid_client_metadata"),
    ({"redirect_uris": ["https://dyn.example.org/cb"], "token_endpoint_auth_method": "x"},
     "invalid_client_metadata"),
    ({"redirect_uris": ["https://dyn.example.org/cb"], "logo_uri": "http://dyn.example.org/l"},
     "invalid_client_metadata"),
    ({"redirect_uris": ["https://dyn.example.org/cb"], "jwks": {"keys": []},
      "jwks_uri": "https://dyn.example.org/jwks"}, "invalid_client_metadata"),
])
def test_bad_registration_metadata_is_refused_and_creates_nothing(env, meta, error):
    c = env.client()
    with env.svc.sessions() as db:
        before = db.query(Client).count()
    resp = c.post("/oauth2/register", json=meta,
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 400 and resp.json["error"] == error
    with env.svc.sessions() as db:
        assert db.query(Client).count() == before


def test_discovery_document(env):
    c = env.client()
    resp = c.get("/.well-known/openid-configuration")
    doc = resp.json
    assert resp.headers["Cache-Control"].startswith("public") and resp.headers["ETag"]
    assert c.get("/.well-known/openid-configuration",
                 headers={"If-None-Match": resp.headers["ETag"]}).status_code == 304
    issuer = "http://127.0.0.1:5000"
    assert doc["issuer"] == issuer
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                "end_session_endpoint", "registration_endpoint", "introspection_endpoint",
                "revocation_endpoint"):
        assert doc[key].startswith(issuer)
    assert "none" not in doc["id_token_signing_alg_values_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    assert doc == c.get("/.well-known/oauth-authorization-server").json


def test_signing_in_again_as_the_same_person_does_not_log_the_rps_out(env):
    """A new login by the same person (prompt=login, max_age, a step-up) replaces the session
    id but keeps its relying parties: no back-channel logout for them. Another person signing
    in on that browser does end the old session, and its RPs are told."""
    _Receiver.tokens.clear()
    _Receiver.fail_first = 0
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with env.svc.sessions.begin() as db:
            row = db.get(Client, "web2")
            row.meta = dict(row.meta, backchannel_logout_uri=(
                f"http://127.0.0.1:{server.server_address[1]}/bcl"))
        from idp.oidc.clients import client_cache

        client_cache(env.svc).bump()
        c = env.client()
        first = _id_token(env, c, "web2", "https://other.example.org/cb")
        again = authorize(c, client_id="web2", redirect_uri="https://other.example.org/cb",
                          prompt="login")
        assert "code" in again
        time.sleep(1.5)
        assert _Receiver.tokens == []  # alice is still alice: nobody was logged out
        # Someone else takes over the browser through an RP's prompt=login.
        resp = c.get("/oauth2/authorize", query_string={
            "response_type": "code", "client_id": "web2", "scope": "openid",
            "redirect_uri": "https://other.example.org/cb", "prompt": "login"})
        assert login(c, "bob", rid=query(resp.headers["Location"])["r"]).status_code == 302
        deadline = time.time() + 10
        while not _Receiver.tokens and time.time() < deadline:
            time.sleep(0.05)
        assert len(_Receiver.tokens) == 1
        told = pyjwt.decode(_Receiver.tokens[0], options={"verify_signature": False})
        assert told["sub"] == pyjwt.decode(first["id_token"],
                                           options={"verify_signature": False})["sub"]
    finally:
        server.shutdown()
