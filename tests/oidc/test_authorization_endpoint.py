"""The authorization endpoint's checks: never redirect to an unverified URI (RFC 6749 §4.1.2.1,
RFC 9700 §4.11), exact redirect URI matching (RFC 9700 §2.1), prompt / max_age / id_token_hint
(OIDC Core §3.1.2.1), PKCE S256 (RFC 7636, RFC 9700 §2.1.1), request objects refused."""

from __future__ import annotations

import time

import pytest
from oidc_support import RP, authorize, login, pkce, query, token
from support import store_keys

BASE = {"response_type": "code", "client_id": "web", "scope": "openid", "state": "s"}


def _store_keys(svc) -> int:
    return len(store_keys(svc, "code:")) + len(store_keys(svc, "authreq:"))


@pytest.mark.parametrize("redirect_uri", [
    "https://RP.example.org/cb",            # case
    "https://rp.example.org/cb/",           # trailing slash
    "https://rp.example.org/cb/extra",      # extra path
    "https://rp.example.org/cb?x=2",        # query differs from the registered one
    "https://rp.example.org/cb?x=1&y=2",    # query added
    "https://evil@rp.example.org/cb",       # userinfo
    "https://rp.example.org%2f@evil.example/cb",
    "https://rp.example.org/%63b",          # encoded characters
    "https://rp.example.org/cb#frag",
    "https://rp.example.org.evil.example/cb",
    "https://other.example.org/cb",         # registered for another client
    "javascript:alert(1)",
])
def test_unregistered_redirect_uri_shows_a_page_and_never_redirects(env, redirect_uri):
    c = env.client()
    before = _store_keys(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=redirect_uri))
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "Reference" in resp.get_data(as_text=True)
    assert _store_keys(env.svc) == before


def test_unknown_client_and_missing_redirect_with_two_registered_show_a_page(env):
    c = env.client()
    for params in ({"client_id": "nope", "redirect_uri": RP},
                   {"client_id": "two"}):
        resp = c.get("/oauth2/authorize", query_string=dict(BASE, **params))
        assert resp.status_code == 400 and "Location" not in resp.headers


def test_registered_query_uri_and_loopback_port_match(env):
    c = env.client()
    got = authorize(c, redirect_uri="https://rp.example.org/cb?x=1")
    assert got["_location"].startswith("https://rp.example.org/cb?x=1&code=")
    # RFC 8252 §7.3: a loopback redirect may use any port.
    got = authorize(c, redirect_uri="http://127.0.0.1:41234/cb")
    assert got["_location"].startswith("http://127.0.0.1:41234/cb?") and "code" in got


@pytest.mark.parametrize("params,error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "invalid_request_object"),  # alg none
    ({"request_uri": "https://rp.example.org/req"}, "request_uri_not_supported"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"claims": "{not json"}, "invalid_request"),
    ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request"),
    ({"resource": "not-a-uri"}, "invalid_target"),
])
def test_invalid_requests_redirect_back_with_error_state_and_iss(env, params, error):
    c = env.client()
    login(c)
    before = _store_keys(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP, **params))
    assert resp.status_code in (302, 303)
    got = query(resp.headers["Location"])
    assert got["error"] == error
    assert got["state"] == "s" and got["iss"] == "http://127.0.0.1:5000"
    assert "code" not in got
    assert _store_keys(env.svc) == before


def test_duplicated_parameter_is_refused_without_redirect(env):
    c = env.client()
    resp = c.get(f"/oauth2/authorize?response_type=code&client_id=web&redirect_uri={RP}"
                 "&scope=openid&state=a&state=b")
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_prompt_none_without_session_is_login_required(env):
    c = env.client()
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP, prompt="none"))
    got = query(resp.headers["Location"])
    assert got["error"] == "login_required" and "code" not in got


def test_prompt_none_with_session_is_silent_and_keeps_auth_time(env):
    c = env.client()
    first = authorize(c)
    tokens = token(c, {"grant_type": "authorization_code", "code": first["code"],
                       "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    silent = authorize(c, prompt="none", id_token_hint=tokens["id_token"], login_first=False)
    assert "code" in silent
    again = token(c, {"grant_type": "authorization_code", "code": silent["code"],
                      "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    import jwt as pyjwt

    a = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
    b = pyjwt.decode(again["id_token"], options={"verify_signature": False})
    assert a["sub"] == b["sub"] and a["auth_time"] == b["auth_time"]


def test_id_token_hint_for_another_user_forces_login(env):
    c_alice = env.client()
    got = authorize(c_alice)
    hint = token(c_alice, {"grant_type": "authorization_code", "code": got["code"],
                           "redirect_uri": RP},
                 auth=("web", env.secrets["web"])).json["id_token"]  # alice's ID token
    c = env.client()
    login(c, "bob")  # ...but bob is signed in here
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP, prompt="none",
                                                        id_token_hint=hint))
    assert query(resp.headers["Location"])["error"] == "login_required"
    forged = hint[:-4] + ("AAAA" if not hint.endswith("AAAA") else "BBBB")
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP,
                                                        id_token_hint=forged))
    assert query(resp.headers["Location"])["error"] == "invalid_request"


def test_prompt_login_and_max_age_force_a_new_login(env):
    c = env.client()
    authorize(c)
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP,
                                                        prompt="login"))
    assert resp.headers["Location"].startswith("/login?r=")
    got = authorize(c, prompt="login")  # signs in again, then a code
    assert "code" in got
    time.sleep(1.1)
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP, max_age="0"))
    assert resp.headers["Location"].startswith("/login?r=")


def test_resume_url_is_single_use(env):
    c = env.client()
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, redirect_uri=RP))
    rid = query(resp.headers["Location"])["r"]
    login(c, rid=rid)
    first = c.get(f"/oauth2/authorize/resume?r={rid}")
    assert first.status_code in (302, 303)
    second = c.get(f"/oauth2/authorize/resume?r={rid}")
    assert second.status_code == 400 and "Location" not in second.headers


# --- PKCE ------------------------------------------------------------------------------------

def test_public_client_needs_pkce_at_the_authorization_endpoint(env):
    c = env.client()
    login(c)
    resp = c.get("/oauth2/authorize", query_string=dict(
        BASE, client_id="spa", redirect_uri="https://spa.example.org/cb"))
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_request" and "PKCE" in got["error_description"]


def test_pkce_s256_round_trip_and_mismatch(env):
    c = env.client()
    verifier, challenge = pkce()
    got = authorize(c, client_id="spa", redirect_uri="https://spa.example.org/cb",
                    code_challenge=challenge, code_challenge_method="S256")
    bad = token(c, {"grant_type": "authorization_code", "code": got["code"],
                    "redirect_uri": "https://spa.example.org/cb", "client_id": "spa",
                    "code_verifier": pkce()[0]})
    assert bad.status_code == 400 and bad.json["error"] == "invalid_grant"
    got = authorize(c, client_id="spa", redirect_uri="https://spa.example.org/cb",
                    code_challenge=challenge, code_challenge_method="S256")
    missing = token(c, {"grant_type": "authorization_code", "code": got["code"],
                        "redirect_uri": "https://spa.example.org/cb", "client_id": "spa"})
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"
    got = authorize(c, client_id="spa", redirect_uri="https://spa.example.org/cb",
                    code_challenge=challenge, code_challenge_method="S256")
    ok = token(c, {"grant_type": "authorization_code", "code": got["code"],
                   "redirect_uri": "https://spa.example.org/cb", "client_id": "spa",
                   "code_verifier": verifier})
    assert ok.status_code == 200 and ok.json["access_token"]


def test_pkce_downgrade_verifier_without_challenge_is_refused(env):
    """RFC 9700 §4.8: a code_verifier for a code issued without a challenge is an attack."""
    c = env.client()
    got = authorize(c)
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP, "code_verifier": pkce()[0]},
                 auth=("web", env.secrets["web"]))
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"


def _pkce_refused(env, client_id: str, description: str, **params) -> None:
    c = env.client()
    login(c)
    before = _store_keys(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, client_id=client_id,
                                                        redirect_uri=RP, **params))
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_request" and got["error_description"] == description
    assert "code" not in got and _store_keys(env.svc) == before


def test_pkce_challenge_without_a_method_is_refused_not_taken_as_s256(env):
    """RFC 7636 §4.3 would default a missing method to plain; authlib defaults to S256. We
    take neither: the method must be named."""
    _pkce_refused(env, "web", "code_challenge_method must be S256", code_challenge=pkce()[1])


def test_a_client_registered_with_require_pkce_needs_it(env):
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    with env.svc.sessions.begin() as db:
        ClientRegistry(db, env.svc.hasher, env.svc.sealer).create(
            "pkce-only", name="PKCE", redirect_uris=[RP], grant_types=["authorization_code"],
            scope="openid", extra={"require_pkce": True})
    client_cache(env.svc).bump()
    _pkce_refused(env, "pkce-only", "PKCE (code_challenge with S256) is required")
    got = authorize(env.client(), client_id="pkce-only", scope="openid",
                    code_challenge=pkce()[1], code_challenge_method="S256")
    assert "code" in got


def test_error_pages_speak_the_browser_language(env):
    c = env.client()
    resp = c.get("/oauth2/authorize", query_string=dict(BASE, client_id="nope"),
                 headers={"Accept-Language": "de-DE,de;q=0.9"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "Anmeldeanfrage abgelehnt" in html and "nicht registriert" in html
