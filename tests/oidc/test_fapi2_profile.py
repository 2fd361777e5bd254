"""FAPI 2.0 Security Profile per client (``fapi_profile: "fapi2-security"``), mirroring the
OpenID conformance suite's ``fapi2-security-profile-final-*`` modules (named in each test).

A client application as one would write it drives the app over HTTP: PAR with a
``private_key_jwt`` assertion signed by PyJWT with the client's own ``cryptography`` key, PKCE
from authlib's client helper, DPoP proofs from ``dpop_client`` (PyJWT), the ID token verified
with PyJWT against our JWKS. Every refusal checks the OAuth error and that nothing was issued or
stored (pushed requests, codes, pending sign-ins, refresh tokens, ``token.issued`` rows).
The codes' 60 s limit is tested on the frozen clock with ``oidc.code_lifetime`` at 600, one
second either side."""

from __future__ import annotations

import base64
import secrets
import time
from contextlib import contextmanager

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives.asymmetric import rsa
from dpop_client import DPoPKey, claims_of
from jwt.algorithms import RSAAlgorithm
from mtls_client import escaped, make_cert, x5t
from oidc_support import RP, _csrf, build_env, follow, initial_access_token, login, query
from sqlalchemy import func, select
from support import clock_swapped, store_keys

ISSUER = "http://127.0.0.1:5000"
TOKEN_URL = f"{ISSUER}/oauth2/token"
PAR_URL = f"{ISSUER}/oauth2/par"
USERINFO_URL = f"{ISSUER}/oauth2/userinfo"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CERT_HEADER = "X-SSL-Client-Cert"
FAPI = {"fapi_profile": "fapi2-security"}

CLIENT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWK = dict(RSAAlgorithm.to_jwk(CLIENT_KEY.public_key(), as_dict=True), kid="fapi-1",
                  use="sig")
CERT = make_cert("fapi client")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.clock import FrozenClock
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    with build_env(tmp_path_factory, {}, clock=FrozenClock(float(int(time.time()))),
                   oidc={"code_lifetime": 600},
                   server={"trusted_proxy_networks": ["127.0.0.0/8"]},
                   mtls={"client_cert_header": CERT_HEADER}) as built:
        with built.svc.sessions.begin() as db:
            reg = ClientRegistry(db, built.svc.hasher, built.svc.sealer)
            # bankcert is a third party: its users see the consent page.
            for client_id, extra in (("bank", {}),
                                     ("bankcert", {"tls_client_certificate_bound_access_tokens":
                                                   True})):
                reg.create(client_id, name="FAPI " + client_id, redirect_uris=[RP],
                           grant_types=["authorization_code", "refresh_token"],
                           auth_method="private_key_jwt", scope="openid profile email",
                           first_party=client_id == "bank",
                           extra={"jwks": {"keys": [PUBLIC_JWK]}, **FAPI, **extra})
        client_cache(built.svc).bump()
        yield built


@pytest.fixture(autouse=True)
def _module_clock_at_real_now(env):
    """The module's frozen clock starts each test at the real time: the client assertions and
    DPoP proofs carry real times (the JWT library checks them against the real clock), and the
    module may have run for longer than their 60 s leeway (slower on PostgreSQL + Redis)."""
    env.svc.clock._t = float(int(time.time()))


# --- the client application ---------------------------------------------------------------------

def assertion(client_id: str = "bank", *, alg: str = "PS256", aud=ISSUER,
              **claims) -> dict[str, str]:
    """RFC 7523 client authentication, signed by the client's key (PyJWT). Times are real
    (the assertion's exp is also checked against the real clock by the JWT library)."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
            "jti": secrets.token_urlsafe(12)}
    body.update(claims)
    token = pyjwt.encode(body, CLIENT_KEY, algorithm=alg, headers={"kid": "fapi-1"})
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}


def request_object(env, *, alg: str = "PS256", **claims) -> str:
    now = int(env.svc.clock.now())
    body = {"iss": "bank", "aud": ISSUER, "client_id": "bank", "response_type": "code",
            "redirect_uri": RP, "scope": "openid", "nbf": now, "exp": now + 300,
            "code_challenge": create_s256_code_challenge("v" * 43),
            "code_challenge_method": "S256"}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return pyjwt.encode(body, CLIENT_KEY, algorithm=alg, headers={"kid": "fapi-1"})


def authorization_request(**extra) -> tuple[dict[str, str], str]:
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "client_id": "bank", "redirect_uri": RP,
              "scope": "openid profile email", "state": "s-" + secrets.token_hex(4),
              "nonce": "n-" + secrets.token_hex(4),
              "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}, verifier


def push(c, params: dict[str, str], auth: dict[str, str] | None = None, headers=None):
    return c.post("/oauth2/par", data={**params, **(auth or assertion(params.get("client_id",
                                                                                  "bank")))},
                  headers=headers or {})


def sign_in(c, request_uri: str, client_id: str = "bank") -> dict[str, str]:
    return follow(c, c.get("/oauth2/authorize", query_string={"client_id": client_id,
                                                              "request_uri": request_uri}))


def redeem(c, env, code: str, verifier: str, key: DPoPKey | None, client_id: str = "bank",
           headers: dict[str, str] | None = None):
    headers = dict(headers or {})
    if key is not None:
        headers["DPoP"] = key.proof("POST", TOKEN_URL, iat=env.svc.clock.now())
    return c.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                         "redirect_uri": RP, "code_verifier": verifier,
                                         **assertion(client_id)}, headers=headers)


def code_for(c, key: DPoPKey | None = None, client_id: str = "bank") -> tuple[str, str]:
    """A code of a complete pushed request (with ``dpop_jkt`` when ``key`` is given)."""
    params, verifier = authorization_request(client_id=client_id,
                                             dpop_jkt=key.jkt if key else None)
    pushed = push(c, params)
    assert pushed.status_code == 201, pushed.json
    got = sign_in(c, pushed.json["request_uri"], client_id)
    assert "code" in got, got
    return got["code"], verifier


def userinfo(c, env, access_token: str, key: DPoPKey):
    return c.get("/oauth2/userinfo", headers={
        "Authorization": f"DPoP {access_token}",
        "DPoP": key.proof("GET", USERINFO_URL, access_token=access_token,
                          iat=env.svc.clock.now())})


def state(env) -> tuple:
    """What a refused request must leave alone."""
    from idp.storage.models import AuditEvent

    with env.svc.engine.connect() as conn:
        keys = sorted(k for p in ("par", "code:", "authreq:", "rojti:")
                      for k in store_keys(env.svc, p))
        tokens = conn.exec_driver_sql("SELECT count(*) FROM oauth_refresh_tokens").scalar()
    with env.svc.sessions() as db:
        issued = db.scalar(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.action == "token.issued"))
    return tuple(keys), tokens, issued


@contextmanager
def frozen_at_now(env):
    """A clock of its own for a test that moves time (the module's stays where it was)."""
    from idp.clock import FrozenClock

    with clock_swapped(env.svc, FrozenClock(env.svc.clock.now())) as clock:
        yield clock


# --- the happy flow -------------------------------------------------------------------------------

def test_happy_flow_par_pkce_private_key_jwt_dpop_to_tokens_userinfo_and_refresh(env):
    """fapi2-security-profile-final-happy-flow, -ensure-dpop-auth-code-binding-success and
    -refresh-token: PAR (expires_in < 600) with dpop_jkt, iss in the response, DPoP-bound
    tokens, a PS256 ID token (the profile's default), userinfo with DPoP, a refresh that needs
    the proof and keeps the refresh token (no rotation for the profile's clients)."""
    c = env.client()
    key = DPoPKey()
    params, verifier = authorization_request(dpop_jkt=key.jkt)
    pushed = push(c, params)
    assert pushed.status_code == 201, pushed.json
    assert 0 < pushed.json["expires_in"] < 600
    got = sign_in(c, pushed.json["request_uri"])
    assert got["iss"] == ISSUER and got["state"] == params["state"]

    resp = redeem(c, env, got["code"], verifier, key)
    assert resp.status_code == 200, resp.json
    tokens = resp.json
    assert tokens["token_type"] == "DPoP"
    assert claims_of(tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    jwks = c.get("/jwks").json
    header = pyjwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "PS256"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    id_token = pyjwt.decode(tokens["id_token"], pyjwt.PyJWK(jwk).key, algorithms=["PS256"],
                            audience="bank", issuer=ISSUER)
    assert id_token["nonce"] == params["nonce"]

    info = userinfo(c, env, tokens["access_token"], key)
    assert info.status_code == 200 and info.json["sub"] == id_token["sub"]

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    before = state(env)
    unbound = c.post("/oauth2/token", data={**refresh, **assertion()})
    assert unbound.status_code == 400 and unbound.json["error"] == "invalid_request"
    assert state(env) == before
    again = c.post("/oauth2/token", data={**refresh, **assertion()},
                   headers={"DPoP": key.proof("POST", TOKEN_URL, iat=env.svc.clock.now())})
    assert again.status_code == 200, again.json
    assert again.json["refresh_token"] == tokens["refresh_token"]
    assert again.json["token_type"] == "DPoP"


def test_certificate_bound_tokens_satisfy_the_profile(env):
    """fapi2-security-profile-final-happy-flow with mTLS as the holder-of-key mechanism: the
    client registered for certificate-bound tokens presents its certificate (through the
    trusted proxy's header) instead of a DPoP proof."""
    c = env.client()
    code, verifier = code_for(c, client_id="bankcert")
    resp = redeem(c, env, code, verifier, None, "bankcert", {CERT_HEADER: escaped(CERT)})
    assert resp.status_code == 200, resp.json
    assert resp.json["token_type"] == "Bearer"
    assert claims_of(resp.json["access_token"])["cnf"] == {"x5t#S256": x5t(CERT)}


# --- the authorization request ------------------------------------------------------------------

@pytest.mark.parametrize("how", ["plain", "request_object"])
def test_ensure_unsigned_authorization_request_without_using_par_fails(env, how):
    """fapi2-security-profile-final-ensure-unsigned-authorization-request-without-using-par-fails:
    a request straight to /oauth2/authorize (and even a signed request object without PAR) goes
    back to the client as invalid_request; nothing is stored, no sign-in starts."""
    c = env.client()
    params, _ = authorization_request()
    if how == "request_object":
        params = {"client_id": "bank", "request": request_object(env)}
    before = state(env)
    resp = c.get("/oauth2/authorize", query_string=params)
    assert resp.status_code == 302, resp.status_code
    location = resp.headers["Location"]
    assert location.startswith(RP + "?") and "error=invalid_request" in location
    assert "iss=" in location
    assert state(env)[:2] == before[:2]


@pytest.mark.parametrize("change,error", [
    # fapi2-security-profile-final-par-ensure-pkce-required
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    # fapi2-security-profile-final-par-plain-pkce-rejected
    ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    # fapi2-security-profile-final-ensure-redirect-uri-in-authorization-request
    ({"redirect_uri": None}, "invalid_request"),
    # fapi2-security-profile-final-ensure-response-type-token-fails
    ({"response_type": "token"}, "unsupported_response_type"),
    # fapi2-security-profile-final-ensure-response-type-code-idtoken-fails
    ({"response_type": "code id_token"}, "unsupported_response_type"),
])
def test_push_refuses_what_the_profile_forbids(env, change, error):
    c = env.client()
    params, _ = authorization_request(**change)
    before = state(env)
    resp = push(c, params)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == error and resp.json["error_description"]
    assert "request_uri" not in resp.json
    assert state(env) == before


def test_user_rejects_authentication(env):
    """fapi2-security-profile-final-user-rejects-authentication: the person declines on the
    consent page; the client gets access_denied with iss, no code, and the pushed request is
    used up by nothing (a code was never issued)."""
    c = env.client()
    params, _ = authorization_request(client_id="bankcert", prompt="consent")
    pushed = push(c, params)
    resp = c.get("/oauth2/authorize", query_string={"client_id": "bankcert",
                                                    "request_uri": pushed.json["request_uri"]})
    resp = login(c, rid=query(resp.headers["Location"])["r"])
    while resp.headers["Location"].startswith("/oauth2/authorize"):
        resp = c.get(resp.headers["Location"])
    consent = resp.headers["Location"]
    assert consent.startswith("/oauth2/consent")
    before = state(env)[1:]
    page = c.get(consent).get_data(as_text=True)
    denied = c.post(consent, data={"csrf_token": _csrf(page), "deny": "Deny"})
    got = query(denied.headers["Location"])
    assert got["error"] == "access_denied" and got["iss"] == ISSUER
    assert got["state"] == params["state"] and "code" not in got
    assert state(env)[1:] == before


# --- client authentication ------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [
    # fapi2-security-profile-final-par-test-array-as-audience-fails
    lambda: assertion(aud=[ISSUER, "https://other.example"]),
    lambda: assertion(aud=[ISSUER]),
    # fapi2-security-profile-final-par-test-token-endpoint-url-as-audience-fails
    lambda: assertion(aud=TOKEN_URL),
    # fapi2-security-profile-final-par-test-par-endpoint-url-as-audience-fails
    lambda: assertion(aud=PAR_URL),
    # fapi2-security-profile-final-ensure-signed-client-assertion-with-RS256-fails
    lambda: assertion(alg="RS256"),
    # fapi2-security-profile-final-par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-
    # future-fails
    lambda: assertion(nbf=int(time.time()) + 61),
    lambda: assertion(iat=int(time.time()) + 61),
    lambda: {},
], ids=["array-aud", "one-element-array-aud", "token-endpoint-aud", "par-endpoint-aud",
        "rs256", "nbf-61s-ahead", "iat-61s-ahead", "no-authentication"])
def test_client_assertion_refused_at_par(env, auth):
    c = env.client()
    params, _ = authorization_request()
    before = state(env)
    resp = c.post("/oauth2/par", data={**params, **auth()})
    assert resp.status_code == 401, resp.json
    assert resp.json["error"] == "invalid_client"
    assert state(env) == before


@pytest.mark.parametrize("offset", [0, 8, 10])
def test_par_ensure_jwt_client_assertions_nbf_up_to_10_seconds_in_the_future_is_accepted(
        env, offset):
    """fapi2-security-profile-final-par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future
    -is-accepted (and 10 s: the clock skew FAPI 2.0 tells servers to accept)."""
    c = env.client()
    ahead = int(env.svc.clock.now()) + offset
    params, _ = authorization_request()
    resp = push(c, params, assertion(nbf=ahead, iat=ahead))
    assert resp.status_code == 201, resp.json


# --- the token endpoint ---------------------------------------------------------------------------

def test_ensure_holder_of_key_required(env):
    """fapi2-security-profile-final-ensure-holder-of-key-required: a token request with neither a
    DPoP proof nor the client's certificate is refused with invalid_request before the code is
    used up; nothing is issued, and the code still works with a proof."""
    c = env.client()
    code, verifier = code_for(c)
    before = state(env)
    for client_id, headers in (("bank", {CERT_HEADER: escaped(CERT)}), ("bank", {})):
        resp = redeem(c, env, code, verifier, None, client_id, headers)
        assert resp.status_code == 400 and resp.json["error"] == "invalid_request", resp.json
        assert "access_token" not in resp.json
        assert state(env) == before
    assert redeem(c, env, code, verifier, DPoPKey()).status_code == 200
    other, other_verifier = code_for(c, client_id="bankcert")
    before = state(env)
    resp = redeem(c, env, other, other_verifier, None, "bankcert")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request", resp.json
    assert state(env) == before


def test_ensure_mismatched_dpop_jkt_fails(env):
    """fapi2-security-profile-final-ensure-mismatched-dpop-jkt-fails: a code bound with dpop_jkt
    is not redeemed with another key (invalid_grant); nothing is issued."""
    c = env.client()
    bound = DPoPKey()
    code, verifier = code_for(c, bound)
    before = state(env)
    resp = redeem(c, env, code, verifier, DPoPKey())
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    after = state(env)
    assert after[1:] == before[1:]


@pytest.mark.parametrize("age,usable", [(59, True), (61, False)])
def test_ensure_token_endpoint_fails_with_expired_auth_code(env, age, usable):
    """fapi2-security-profile-final-ensure-token-endpoint-fails-with-expired-auth-code: the
    profile's codes live 60 s even with ``oidc.code_lifetime`` at 600 (frozen clock, one second
    either side)."""
    c = env.client()
    key = DPoPKey()
    with frozen_at_now(env) as clock:
        code, verifier = code_for(c)
        clock.advance(age)
        before = state(env)
        resp = redeem(c, env, code, verifier, key)
        if usable:
            assert resp.status_code == 200, resp.json
            return
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
        assert state(env)[1:] == before[1:]


def test_other_clients_codes_keep_the_configured_lifetime(env):
    """The 60 s limit is the profile's: a client without it keeps ``oidc.code_lifetime``."""
    c = env.client()
    with frozen_at_now(env) as clock:
        verifier = secrets.token_urlsafe(48)
        got = follow(c, c.get("/oauth2/authorize", query_string={
            "response_type": "code", "client_id": "web", "redirect_uri": RP, "scope": "openid",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256"}))
        clock.advance(61)
        resp = c.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP,
            "code_verifier": verifier}, headers={"Authorization": "Basic " + base64.b64encode(
                f"web:{env.secrets['web']}".encode()).decode()})
        assert resp.status_code == 200, resp.json


def test_attempt_reuse_authorization_code_after_one_second(env):
    """fapi2-security-profile-final-attempt-reuse-authorization-code-after-one-second: the
    second redemption is invalid_grant, issues nothing and revokes what the first issued."""
    c = env.client()
    key = DPoPKey()
    with frozen_at_now(env) as clock:
        code, verifier = code_for(c)
        first = redeem(c, env, code, verifier, key)
        assert first.status_code == 200
        clock.advance(1)
        before = state(env)
        again = redeem(c, env, code, verifier, key)
        assert again.status_code == 400 and again.json["error"] == "invalid_grant"
        assert state(env)[1:] == before[1:]
        assert userinfo(c, env, first.json["access_token"], key).status_code == 401
        refresh = c.post("/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": first.json["refresh_token"],
            **assertion()}, headers={"DPoP": key.proof("POST", TOKEN_URL, iat=clock.now())})
        assert refresh.status_code == 400 and refresh.json["error"] == "invalid_grant"


# --- request objects ------------------------------------------------------------------------------

def test_signed_request_object_in_par_is_accepted(env):
    c = env.client()
    resp = push(c, {"client_id": "bank", "request": request_object(env)})
    assert resp.status_code == 201, resp.json


@pytest.mark.parametrize("case", ["rs256", "exp_over_60", "no_nbf", "none"])
def test_request_object_refused(env, case):
    """fapi2-security-profile-final-ensure-signed-request-object-with-RS256-fails,
    -ensure-request-object-with-exp-over-60-fails (nbf now, exp 70 minutes on),
    -ensure-request-object-signature-algorithm-is-not-none; and no nbf (FAPI 2.0 Message
    Signing): invalid_request_object, nothing stored."""
    c = env.client()
    now = int(env.svc.clock.now())
    if case == "rs256":
        token = request_object(env, alg="RS256")
    elif case == "exp_over_60":
        token = request_object(env, nbf=now, exp=now + 70 * 60)
    elif case == "no_nbf":
        token = request_object(env, nbf=None)
    else:
        token = pyjwt.encode({"iss": "bank", "aud": ISSUER, "response_type": "code",
                              "nbf": now, "exp": now + 300}, None, algorithm="none")
    before = state(env)
    resp = push(c, {"client_id": "bank", "request": token})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request_object"
    assert state(env) == before


# --- registration ---------------------------------------------------------------------------------

def _registration(**change) -> dict:
    meta = {"redirect_uris": [RP], "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [PUBLIC_JWK]},
            "scope": "openid", **FAPI}
    meta.update(change)
    return {k: v for k, v in meta.items() if v is not None}


def _client_rows(env) -> int:
    from idp.storage.models import Client

    with env.svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(Client))


WEAK_KEY = dict(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 1024).public_key(),  # noqa: S505
                                    as_dict=True), kid="weak")


@pytest.mark.parametrize("change,field", [
    ({"token_endpoint_auth_method": None}, "token_endpoint_auth_method"),  # basic by default
    ({"token_endpoint_auth_method": "client_secret_post"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "client_secret_jwt"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    ({"redirect_uris": ["http://rp.example.org/cb"]}, "redirect_uris"),
    ({"id_token_signed_response_alg": "RS256"}, "id_token_signed_response_alg"),
    ({"userinfo_signed_response_alg": "RS256"}, "userinfo_signed_response_alg"),
    ({"request_object_signing_alg": "RS256"}, "request_object_signing_alg"),
    ({"request_object_signing_alg": "HS256"}, "request_object_signing_alg"),
    ({"token_endpoint_auth_signing_alg": "RS256"}, "token_endpoint_auth_signing_alg"),
    ({"token_endpoint_auth_signing_alg": "none"}, "token_endpoint_auth_signing_alg"),
    ({"require_pushed_authorization_requests": False},
     "require_pushed_authorization_requests"),
    ({"jwks": {"keys": [WEAK_KEY]}}, "jwks"),
    ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks"),
    ({"fapi_profile": "fapi1-advanced"}, "fapi_profile"),
])
def test_registration_contradicting_the_profile_is_refused(env, change, field):
    c = env.client()
    before = _client_rows(env)
    resp = c.post("/oauth2/register", json=_registration(**change),
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 400, resp.json
    expected = "invalid_redirect_uri" if field == "redirect_uris" else "invalid_client_metadata"
    assert resp.json["error"] == expected
    assert resp.json["error_description"].startswith(field)
    assert _client_rows(env) == before


def test_an_mtls_authenticated_client_may_take_the_profile(env):
    """FAPI 2.0 §5.3.2.1-3: mTLS client authentication (RFC 8705 §2) is the profile's other
    method."""
    c = env.client()
    made = c.post("/oauth2/register", json=_registration(
        token_endpoint_auth_method="tls_client_auth", jwks=None,
        tls_client_auth_subject_dn="CN=fapi client"),
        headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert made.status_code == 201, made.json
    assert made.json["fapi_profile"] == "fapi2-security"


def test_registration_of_a_profile_client_and_an_update_that_breaks_it(env):
    """A native app's loopback redirect URI is allowed (FAPI 2.0 §5.3.2.2-9); an RFC 7592
    update that would contradict the profile changes nothing."""
    c = env.client()
    made = c.post("/oauth2/register", json=_registration(
        redirect_uris=[RP, "http://127.0.0.1/cb"], id_token_signed_response_alg="ES256"),
        headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert made.status_code == 201, made.json
    doc = made.json
    assert doc["fapi_profile"] == "fapi2-security" and "client_secret" not in doc
    url = f"/oauth2/register/{doc['client_id']}"
    token = {"Authorization": f"Bearer {doc['registration_access_token']}"}
    body = _registration(client_id=doc["client_id"], redirect_uris=[RP],
                         id_token_signed_response_alg="RS256")
    resp = c.put(url, json=body, headers=token)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    assert c.get(url, headers=token).json == {k: v for k, v in doc.items()
                                              if k not in ("client_secret",
                                                           "registration_access_token")}


def test_a_dpop_proof_at_par_binds_the_code(env):
    """RFC 9449 §10.1: a DPoP proof sent with the pushed request binds the code to its key as
    dpop_jkt would: another key cannot redeem it, the proof's key can; a dpop_jkt that is not
    the proof's key is refused and nothing is pushed."""
    c = env.client()
    key = DPoPKey()
    par_url = TOKEN_URL.replace("/oauth2/token", "/oauth2/par")
    params, verifier = authorization_request()
    pushed = push(c, params, headers={"DPoP": key.proof("POST", par_url,
                                                        iat=env.svc.clock.now())})
    assert pushed.status_code == 201, pushed.json
    code = sign_in(c, pushed.json["request_uri"])["code"]
    other = redeem(c, env, code, verifier, DPoPKey())
    assert other.status_code == 400 and other.json["error"] == "invalid_grant"
    params, verifier = authorization_request()
    pushed = push(c, params, headers={"DPoP": key.proof("POST", par_url,
                                                        iat=env.svc.clock.now())})
    code = sign_in(c, pushed.json["request_uri"])["code"]
    ok = redeem(c, env, code, verifier, key)
    assert ok.status_code == 200 and claims_of(ok.json["access_token"])["cnf"] == {"jkt": key.jkt}

    before = state(env)
    params, _ = authorization_request(dpop_jkt=DPoPKey().jkt)
    mismatched = push(c, params, headers={"DPoP": key.proof("POST", par_url,
                                                            iat=env.svc.clock.now())})
    assert mismatched.status_code == 400 and mismatched.json["error"] == "invalid_dpop_proof"
    assert state(env) == before

