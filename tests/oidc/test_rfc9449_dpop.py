"""DPoP (RFC 9449) over HTTP with an independent client (``dpop_client``: pyjwt proofs): the
token endpoint binds access tokens (``cnf.jkt``, ``token_type: DPoP``), public clients' refresh
tokens and ``dpop_jkt`` codes to the key; userinfo and the admin API take ``Authorization:
DPoP`` with a proof and refuse a bound token sent as Bearer; every bad proof of RFC 9449 §4.3
(and the FAPI 2.0 DPoP negative tests) is refused with nothing issued; server nonces (§8)."""

from __future__ import annotations

import time

import pytest
from dpop_client import DPoPKey, claims_of, hmac_proof, unsigned
from oidc_support import RP, authorize, build_env, initial_access_token, pkce, token
from sqlalchemy import func, select

ISSUER = "http://127.0.0.1:5000"
TOKEN_URL = f"{ISSUER}/oauth2/token"
USERINFO_URL = f"{ISSUER}/oauth2/userinfo"
SPA_RP = "https://spa.example.org/cb"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.clock import FrozenClock

    with build_env(tmp_path_factory, {}, clock=FrozenClock(float(int(time.time())))) as built:
        _add_clients(built)
        yield built


def _add_clients(env) -> None:
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    with env.svc.sessions.begin() as db:
        reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
        _, env.secrets["bound"] = reg.create(
            "bound", name="DPoP only", redirect_uris=[RP], scope="openid profile api",
            grant_types=["authorization_code", "client_credentials"],
            extra={"dpop_bound_access_tokens": True})
    client_cache(env.svc).bump()


def now(env) -> float:
    return env.svc.clock.now()


def issued_rows(env) -> int:
    from idp.storage.models import AuditEvent

    with env.svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action == "token.issued"))


def refresh_rows(env) -> list[tuple]:
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        return list(db.execute(select(RefreshToken.token_hash, RefreshToken.used_at,
                                      RefreshToken.revoked, RefreshToken.cnf)
                               .order_by(RefreshToken.token_hash)))


def dpop_token(c, key: DPoPKey, data: dict, env, auth=None, **proof):
    proof.setdefault("iat", now(env))
    headers = {"DPoP": key.proof("POST", TOKEN_URL, **proof)}
    if auth:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    return c.post("/oauth2/token", data=data, headers=headers)


def svc_token(c, env, key: DPoPKey, **proof):
    return dpop_token(c, key, {"grant_type": "client_credentials", "scope": "admin"}, env,
                      auth=("svc", env.secrets["svc"]), **proof)


def spa_code(c, key: DPoPKey | None = None, **extra):
    verifier, challenge = pkce()
    params = dict(code_challenge=challenge, code_challenge_method="S256", **extra)
    if key is not None:
        params["dpop_jkt"] = key.jkt
    got = authorize(c, client_id="spa", redirect_uri=SPA_RP, scope="openid profile", **params)
    return got, verifier


def spa_redeem(c, env, key: DPoPKey, got, verifier):
    return dpop_token(c, key, {"grant_type": "authorization_code", "code": got["code"],
                               "redirect_uri": SPA_RP, "client_id": "spa",
                               "code_verifier": verifier}, env)


def userinfo(c, env, access_token: str, key: DPoPKey | None, scheme: str = "DPoP", **proof):
    headers = {"Authorization": f"{scheme} {access_token}"}
    if key is not None:
        headers["DPoP"] = key.proof("GET", USERINFO_URL, access_token=access_token,
                                    iat=now(env), **proof)
    return c.get("/oauth2/userinfo", headers=headers)


# --- discovery ------------------------------------------------------------------------------------

def test_discovery_advertises_dpop_algs_and_no_mtls(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert doc["dpop_signing_alg_values_supported"] == ["ES256", "ES384", "PS256", "PS384",
                                                        "RS256", "EdDSA"]
    assert "none" not in doc["dpop_signing_alg_values_supported"]
    assert "tls_client_certificate_bound_access_tokens" not in doc


# --- the code flow of a public client -------------------------------------------------------------

def test_code_flow_binds_tokens_and_userinfo_takes_dpop(env):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    resp = spa_redeem(c, env, key, got, verifier)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    info = userinfo(c, env, body["access_token"], key)
    assert info.status_code == 200, info.json
    assert "DPoP-Nonce" not in info.headers  # nonces are not required here

    # The public client's refresh token is bound: the same key refreshes...
    again = dpop_token(c, key, {"grant_type": "refresh_token", "client_id": "spa",
                                "refresh_token": body["refresh_token"]}, env)
    assert again.status_code == 200, again.json
    assert again.json["token_type"] == "DPoP"
    assert claims_of(again.json["access_token"])["cnf"] == {"jkt": key.jkt}

    # ...another key does not, and the token is not used up by the refusal.
    before = refresh_rows(env)
    stolen = dpop_token(c, DPoPKey(), {"grant_type": "refresh_token", "client_id": "spa",
                                       "refresh_token": again.json["refresh_token"]}, env)
    assert stolen.status_code == 400 and stolen.json["error"] == "invalid_grant"
    no_proof = token(c, {"grant_type": "refresh_token", "client_id": "spa",
                         "refresh_token": again.json["refresh_token"]})
    assert no_proof.status_code == 400 and no_proof.json["error"] == "invalid_grant"
    assert refresh_rows(env) == before
    assert dpop_token(c, key, {"grant_type": "refresh_token", "client_id": "spa",
                               "refresh_token": again.json["refresh_token"]},
                      env).status_code == 200


def test_bound_refresh_tokens_carry_the_jkt(env):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    body = spa_redeem(c, env, key, got, verifier).json
    assert {"jkt": key.jkt} in [row[3] for row in refresh_rows(env)]
    assert body["token_type"] == "DPoP"


def test_bound_token_as_bearer_is_refused(env):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    at = spa_redeem(c, env, key, got, verifier).json["access_token"]
    resp = userinfo(c, env, at, None, scheme="Bearer")
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP ") and 'error="invalid_token"' in challenge
    assert 'algs="ES256' in challenge
    # Bearer with a proof beside it is still Bearer: refused.
    assert userinfo(c, env, at, key, scheme="Bearer").status_code == 401


@pytest.mark.parametrize("case", ["wrong_ath", "other_key", "no_proof", "wrong_htu",
                                  "wrong_htm"])
def test_userinfo_refuses_bad_proofs(env, case):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    at = spa_redeem(c, env, key, got, verifier).json["access_token"]
    headers = {"Authorization": f"DPoP {at}"}
    if case == "wrong_ath":
        headers["DPoP"] = key.proof("GET", USERINFO_URL, access_token=at + "x", iat=now(env))
    elif case == "other_key":
        headers["DPoP"] = DPoPKey().proof("GET", USERINFO_URL, access_token=at, iat=now(env))
    elif case == "wrong_htu":
        headers["DPoP"] = key.proof("GET", TOKEN_URL, access_token=at, iat=now(env))
    elif case == "wrong_htm":
        headers["DPoP"] = key.proof("POST", USERINFO_URL, access_token=at, iat=now(env))
    resp = c.get("/oauth2/userinfo", headers=headers)
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge
    assert "sub" not in resp.json


def test_unbound_token_sent_as_dpop_is_refused(env):
    c = env.client()
    got = authorize(c)
    at = token(c, {"grant_type": "authorization_code", "code": got["code"],
                   "redirect_uri": RP}, auth=("web", env.secrets["web"])).json["access_token"]
    resp = userinfo(c, env, at, DPoPKey())
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers[
        "WWW-Authenticate"]
    assert userinfo(c, env, at, None, scheme="Bearer").status_code == 200


# --- dpop_jkt: the code bound to a key (§10) ------------------------------------------------------

def test_code_with_dpop_jkt_redeemed_with_another_key_is_refused(env):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    before, issued = refresh_rows(env), issued_rows(env)
    resp = spa_redeem(c, env, DPoPKey(), got, verifier)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert "access_token" not in resp.json
    assert refresh_rows(env) == before and issued_rows(env) == issued


def test_code_with_dpop_jkt_redeemed_without_proof_is_refused(env):
    c = env.client()
    got, verifier = spa_code(c, DPoPKey())
    before, issued = refresh_rows(env), issued_rows(env)
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": SPA_RP, "client_id": "spa", "code_verifier": verifier})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert refresh_rows(env) == before and issued_rows(env) == issued


def test_malformed_dpop_jkt_is_refused_at_authorization(env):
    c = env.client()
    got, _ = spa_code(c, None, dpop_jkt="not-a-thumbprint")
    assert got["error"] == "invalid_request" and "code" not in got


# --- confidential clients -------------------------------------------------------------------------

def test_confidential_refresh_token_is_not_bound(env):
    """RFC 9449 §5: a confidential client's refresh token is bound to its authentication; a
    refresh with a new key binds the new access token to that key."""
    c = env.client()
    key = DPoPKey()
    got = authorize(c)
    body = dpop_token(c, key, {"grant_type": "authorization_code", "code": got["code"],
                               "redirect_uri": RP}, env, auth=("web", env.secrets["web"])).json
    assert body["token_type"] == "DPoP"
    other = DPoPKey("RSA")
    again = dpop_token(c, other, {"grant_type": "refresh_token",
                                  "refresh_token": body["refresh_token"]}, env,
                       auth=("web", env.secrets["web"]))
    assert again.status_code == 200, again.json
    assert claims_of(again.json["access_token"])["cnf"] == {"jkt": other.jkt}


def test_client_credentials_dpop_token_works_at_the_admin_api(env):
    c = env.client()
    key = DPoPKey()
    resp = svc_token(c, env, key)
    assert resp.status_code == 200, resp.json
    at = resp.json["access_token"]
    assert resp.json["token_type"] == "DPoP"
    url = f"{ISSUER}/api/v1/users"
    ok = c.get("/api/v1/users", headers={"Authorization": f"DPoP {at}",
                                         "DPoP": key.proof("GET", url, access_token=at,
                                                           iat=now(env))})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    bearer = c.get("/api/v1/users", headers={"Authorization": f"Bearer {at}"})
    assert bearer.status_code == 401
    assert bearer.headers["WWW-Authenticate"].startswith("DPoP ")
    replay = c.get("/api/v1/users", headers={"Authorization": f"DPoP {at}",
                                             "DPoP": key.proof("GET", url, access_token=at,
                                                               iat=now(env), jti="same")})
    assert replay.status_code == 200
    again = c.get("/api/v1/users", headers={"Authorization": f"DPoP {at}",
                                            "DPoP": key.proof("GET", url, access_token=at,
                                                              iat=now(env), jti="same")})
    assert again.status_code == 401
    assert 'error="invalid_dpop_proof"' in again.headers["WWW-Authenticate"]


def test_scim_takes_a_dpop_bound_token(env):
    c = env.client()
    key = DPoPKey()
    at = dpop_token(c, key, {"grant_type": "client_credentials", "scope": "scim"}, env,
                    auth=("svc", env.secrets["svc"])).json["access_token"]
    url = f"{ISSUER}/scim/v2/Users"
    ok = c.get("/scim/v2/Users", headers={"Authorization": f"DPoP {at}",
                                          "DPoP": key.proof("GET", url, access_token=at,
                                                            iat=now(env))})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    bearer = c.get("/scim/v2/Users", headers={"Authorization": f"Bearer {at}"})
    assert bearer.status_code == 401
    assert bearer.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')


def test_introspection_returns_cnf_for_jwt_and_opaque_tokens(env):
    c = env.client()
    key = DPoPKey()
    jwt_at = svc_token(c, env, key).json["access_token"]
    got = authorize(c, client_id="fapi")
    opaque = dpop_token(c, key, {"grant_type": "authorization_code", "code": got["code"],
                                 "redirect_uri": RP}, env,
                        auth=("fapi", env.secrets["fapi"])).json["access_token"]
    for value, client in ((jwt_at, "svc"), (opaque, "fapi")):
        resp = token_introspect(c, value, client, env)
        assert resp["active"] is True
        assert resp["token_type"] == "DPoP" and resp["cnf"] == {"jkt": key.jkt}


def token_introspect(c, value: str, client: str, env) -> dict:
    import base64

    basic = base64.b64encode(f"{client}:{env.secrets[client]}".encode()).decode()
    return c.post("/oauth2/introspect", data={"token": value},
                  headers={"Authorization": f"Basic {basic}"}).json


def test_dpop_bound_client_needs_a_proof_and_keeps_its_code(env):
    """RFC 9449 §5.2: refused before the code is used up, which a proof then redeems."""
    c = env.client()
    got = authorize(c, client_id="bound", scope="openid")
    data = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP}
    issued = issued_rows(env)
    resp = token(c, data, auth=("bound", env.secrets["bound"]))
    assert resp.status_code == 400 and resp.json["error"] == "invalid_dpop_proof"
    assert issued_rows(env) == issued
    ok = dpop_token(c, DPoPKey(), data, env, auth=("bound", env.secrets["bound"]))
    assert ok.status_code == 200 and ok.json["token_type"] == "DPoP"
    plain = token(c, {"grant_type": "client_credentials", "scope": "api"},
                  auth=("bound", env.secrets["bound"]))
    assert plain.json["error"] == "invalid_dpop_proof"


# --- bad proofs at the token endpoint (RFC 9449 §4.3; FAPI 2.0 dpop-negative-tests) --------------

def _bad_proof(env, case: str) -> str:
    key = DPoPKey()
    t = now(env)
    if case == "wrong_htm":
        return key.proof("GET", TOKEN_URL, iat=t)
    if case == "wrong_htu":
        return key.proof("POST", f"{ISSUER}/oauth2/userinfo", iat=t)
    if case == "other_host":
        return key.proof("POST", "https://evil.example.org/oauth2/token", iat=t)
    if case == "foreign_key":
        return key.proof("POST", TOKEN_URL, iat=t, header={"jwk": DPoPKey().jwk})
    if case == "private_key_in_jwk":
        return key.proof("POST", TOKEN_URL, iat=t, header={"jwk": key.private_jwk()})
    if case == "alg_none":
        return unsigned({"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": int(t)},
                        {"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk})
    if case == "alg_hs256":
        return hmac_proof({"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": int(t)},
                          {"kty": "oct", "k": "c2VjcmV0"})
    if case == "alg_hs256_ec_jwk":
        return hmac_proof({"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": int(t)},
                          key.jwk)
    if case == "typ_jwt":
        return key.proof("POST", TOKEN_URL, iat=t, header={"typ": "JWT"})
    if case == "no_jwk":
        return key.proof("POST", TOKEN_URL, iat=t, header={"jwk": None})
    if case in ("no_jti", "no_htm", "no_htu", "no_iat"):
        return key.proof("POST", TOKEN_URL, iat=t, drop=(case[3:],))
    if case == "iat_61s_old":
        return key.proof("POST", TOKEN_URL, iat=t - 61)
    if case == "iat_11s_ahead":
        return key.proof("POST", TOKEN_URL, iat=t + 11)
    if case == "exp_passed":
        return key.proof("POST", TOKEN_URL, iat=t, exp=int(t) - 30)
    if case == "nbf_ahead":
        return key.proof("POST", TOKEN_URL, iat=t, nbf=int(t) + 30)
    if case == "not_a_jwt":
        return "not.a.jwt!"
    if case == "rsa_1024":
        return DPoPKey("RSA", bits=1024).proof("POST", TOKEN_URL, iat=t)
    raise AssertionError(case)


BAD_PROOFS = ["wrong_htm", "wrong_htu", "other_host", "foreign_key", "private_key_in_jwk",
              "alg_none", "alg_hs256", "alg_hs256_ec_jwk", "typ_jwt", "no_jwk", "no_jti",
              "no_htm", "no_htu", "no_iat", "iat_61s_old", "iat_11s_ahead", "exp_passed",
              "nbf_ahead", "not_a_jwt", "rsa_1024"]


@pytest.mark.parametrize("case", BAD_PROOFS)
def test_bad_proof_is_refused_and_nothing_is_issued(env, case):
    c = env.client()
    issued = issued_rows(env)
    resp = c.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"},
                  headers={"DPoP": _bad_proof(env, case),
                           "Authorization": _basic("svc", env)})
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == "invalid_dpop_proof"
    assert "access_token" not in resp.json
    assert issued_rows(env) == issued


def _basic(client: str, env) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{client}:{env.secrets[client]}".encode()).decode()


def test_bad_proof_keeps_the_code(env):
    c = env.client()
    key = DPoPKey()
    got, verifier = spa_code(c, key)
    data = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": SPA_RP,
            "client_id": "spa", "code_verifier": verifier}
    bad = c.post("/oauth2/token", data=data,
                 headers={"DPoP": key.proof("GET", TOKEN_URL, iat=now(env))})
    assert bad.json["error"] == "invalid_dpop_proof"
    assert spa_redeem(c, env, key, got, verifier).status_code == 200


def test_replayed_proof_is_refused(env):
    c = env.client()
    key = DPoPKey()
    proof = key.proof("POST", TOKEN_URL, iat=now(env))
    data = {"grant_type": "client_credentials", "scope": "admin"}
    first = c.post("/oauth2/token", data=data,
                   headers={"DPoP": proof, "Authorization": _basic("svc", env)})
    assert first.status_code == 200
    issued = issued_rows(env)
    second = c.post("/oauth2/token", data=data,
                    headers={"DPoP": proof, "Authorization": _basic("svc", env)})
    assert second.status_code == 400 and second.json["error"] == "invalid_dpop_proof"
    assert issued_rows(env) == issued


def test_two_dpop_headers_are_refused(env):
    c = env.client()
    key = DPoPKey()
    headers = [("DPoP", key.proof("POST", TOKEN_URL, iat=now(env))),
               ("DPoP", key.proof("POST", TOKEN_URL, iat=now(env))),
               ("Authorization", _basic("svc", env))]
    resp = c.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=headers)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize("offset", [-60, 0, 10])
def test_iat_inside_the_window_is_accepted(env, offset):
    """The bounds of the window ([dpop] max_age 60 s back, leeway 10 s ahead; FAPI 2.0:
    "iat 10 seconds after succeeds"); one second beyond each is refused (BAD_PROOFS)."""
    c = env.client()
    assert svc_token(c, env, DPoPKey(), iat=now(env) + offset).status_code == 200


def test_htu_with_query_and_other_spelling_is_accepted(env):
    c = env.client()
    for htu in (f"{TOKEN_URL}?x=1#frag", "HTTP://127.0.0.1:5000/oauth2/token"):
        key = DPoPKey()
        resp = c.post("/oauth2/token", data={"grant_type": "client_credentials"},
                      headers={"DPoP": key.proof("POST", htu, iat=now(env)),
                               "Authorization": _basic("svc", env)})
        assert resp.status_code == 200, (htu, resp.json)


def test_rsa_pss_proof_is_accepted(env):
    c = env.client()
    key = DPoPKey("RSA")
    resp = svc_token(c, env, key)
    assert resp.status_code == 200 and claims_of(resp.json["access_token"])["cnf"] == {
        "jkt": key.jkt}


# --- client metadata ------------------------------------------------------------------------------

def test_dpop_bound_access_tokens_metadata_must_be_boolean():
    from idp.core.client_metadata import MetadataError, check_client_metadata

    base = {"redirect_uris": ["https://rp.example.org/cb"]}
    check_client_metadata(dict(base, dpop_bound_access_tokens=True))
    with pytest.raises(MetadataError) as err:
        check_client_metadata(dict(base, dpop_bound_access_tokens="yes"))
    assert err.value.field == "dpop_bound_access_tokens"


def test_registration_keeps_the_flag_and_refuses_a_non_boolean(env):
    from idp.storage.models import Client

    c = env.client()
    with env.svc.sessions() as db:
        before = db.scalar(select(func.count()).select_from(Client))
    bad = c.post("/oauth2/register", json={"redirect_uris": [RP],
                                           "dpop_bound_access_tokens": "yes"},
                 headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert bad.status_code == 400 and bad.json["error"] == "invalid_client_metadata"
    with env.svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Client)) == before
    good = c.post("/oauth2/register", json={"redirect_uris": [RP],
                                            "dpop_bound_access_tokens": True},
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert good.status_code == 201 and good.json["dpop_bound_access_tokens"] is True


# --- server nonces (§8) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nonce_env(tmp_path_factory):
    from idp.clock import FrozenClock

    with build_env(tmp_path_factory, {}, clock=FrozenClock(float(int(time.time()))),
                   dpop={"require_nonce": True}) as built:
        yield built


def test_token_endpoint_asks_for_a_nonce(nonce_env):
    env = nonce_env
    c = env.client()
    key = DPoPKey()
    issued = issued_rows(env)
    first = svc_token(c, env, key)
    assert first.status_code == 400 and first.json["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    assert issued_rows(env) == issued
    ok = svc_token(c, env, key, nonce=nonce)
    assert ok.status_code == 200, ok.json
    assert ok.headers["DPoP-Nonce"]
    wrong = svc_token(c, env, key, nonce=nonce[:-2] + "xx")
    assert wrong.json["error"] == "use_dpop_nonce"


def test_stale_nonce_is_refused(nonce_env):
    env = nonce_env
    c = env.client()
    key = DPoPKey()
    nonce = svc_token(c, env, key).headers["DPoP-Nonce"]
    env.svc.clock.advance(600)
    try:
        resp = svc_token(c, env, key, nonce=nonce)
        assert resp.status_code == 400 and resp.json["error"] == "use_dpop_nonce"
        assert resp.headers["DPoP-Nonce"] != nonce
    finally:
        env.svc.clock.advance(-600)


def test_resource_asks_for_a_nonce(nonce_env):
    env = nonce_env
    c = env.client()
    key = DPoPKey()
    nonce = svc_token(c, env, key).headers["DPoP-Nonce"]
    at = svc_token(c, env, key, nonce=nonce).json["access_token"]
    url = f"{ISSUER}/api/v1/users"
    resp = c.get("/api/v1/users", headers={
        "Authorization": f"DPoP {at}",
        "DPoP": key.proof("GET", url, access_token=at, iat=now(env))})
    assert resp.status_code == 401
    assert 'error="use_dpop_nonce"' in resp.headers["WWW-Authenticate"]
    fresh = resp.headers["DPoP-Nonce"]
    ok = c.get("/api/v1/users", headers={
        "Authorization": f"DPoP {at}",
        "DPoP": key.proof("GET", url, access_token=at, iat=now(env), nonce=fresh)})
    assert ok.status_code == 200
