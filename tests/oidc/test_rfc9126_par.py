"""RFC 9126 pushed authorization requests: the push (client authentication as at the token
endpoint, the whole request validated, 201 with a request_uri), its use at /oauth2/authorize
(only client_id + request_uri count; reusable until the code is issued, then never again;
expiry on a frozen clock; another client's or a made-up request_uri refused with a page),
``require_pushed_authorization_requests`` per client and ``oidc.require_par`` globally, and
discovery. Driven over the Flask test client as a client would; PKCE from authlib's client
helper, the client assertion built with joserfc, the ID token checked with PyJWT."""

from __future__ import annotations

import base64
import secrets
import time

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt as josejwt
from joserfc.jwk import OctKey
from oidc_support import PASSWORD, RP, follow, initial_access_token, query, token
from support import clock_swapped, store_keys

ISSUER = "http://127.0.0.1:5000"
URN = "urn:ietf:params:oauth:request_uri:"


@pytest.fixture(scope="module", autouse=True)
def par_clients(env):
    from idp.storage.clients import ClientRegistry

    with env.svc.sessions.begin() as db:
        reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
        _, env.secrets["parreq"] = reg.create(
            "parreq", name="PAR only", redirect_uris=[RP], grant_types=["authorization_code"],
            scope="openid profile", extra={"require_pushed_authorization_requests": True})
        reg.create("pkj", name="Key client", redirect_uris=[RP],
                   grant_types=["authorization_code"], auth_method="private_key_jwt",
                   scope="openid profile",
                   extra={"jwks": {"keys": [env.rp_key.as_dict(private=False)]}})
    from idp.oidc.clients import client_cache

    client_cache(env.svc).bump()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _request(**extra: str) -> tuple[dict[str, str], str]:
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "redirect_uri": RP, "scope": "openid profile email",
              "state": "pushed-" + secrets.token_hex(4), "nonce": "n-" + secrets.token_hex(4),
              "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256"}
    params.update(extra)
    return params, verifier


def push(c, params: dict[str, str], client_id: str = "web", secret: str | None = None,
         headers: dict[str, str] | None = None):
    if headers is None:
        headers = _basic(client_id, secret)
    return c.post("/oauth2/par", data=params, headers=headers)


def _state(svc) -> tuple:
    """What a refused request must leave alone: pushed requests and their used-markers,
    codes, pending sign-ins, request-object jtis; and the refresh tokens."""
    with svc.engine.connect() as conn:
        keys = sorted(k for p in ("par", "code:", "authreq:", "rojti:") for k in store_keys(svc, p))
        tokens = conn.exec_driver_sql("SELECT count(*) FROM oauth_refresh_tokens").scalar()
    return tuple(keys), tokens


def _refused_page(resp) -> None:
    assert resp.status_code == 400, resp.status_code
    assert "Location" not in resp.headers
    assert "expired or was already used" in resp.get_data(as_text=True)


def _verified_id_token(c, id_token: str, audience: str, nonce: str) -> dict:
    jwks = c.get("/jwks").json
    header = pyjwt.get_unverified_header(id_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = pyjwt.decode(id_token, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                          audience=audience, issuer=ISSUER)
    assert claims["nonce"] == nonce
    return claims


# --- the push ------------------------------------------------------------------------------------

def test_pushed_request_runs_to_tokens_with_a_verified_id_token(env):
    c = env.client()
    params, verifier = _request()
    resp = push(c, params, secret=env.secrets["web"])
    assert resp.status_code == 201, resp.json
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json
    assert body["request_uri"].startswith(URN) and body["expires_in"] == 60
    assert len(body["request_uri"]) - len(URN) >= 43  # 256 random bits
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "web", "request_uri": body["request_uri"]}))
    assert got["state"] == params["state"] and got["iss"] == ISSUER
    assert got["_location"].startswith(RP + "?")
    tokens = token(c, {"grant_type": "authorization_code", "code": got["code"],
                       "redirect_uri": RP, "code_verifier": verifier},
                   auth=("web", env.secrets["web"]))
    assert tokens.status_code == 200, tokens.json
    claims = _verified_id_token(c, tokens.json["id_token"], "web", params["nonce"])
    assert claims["azp"] == "web"


def test_query_parameters_beside_the_request_uri_are_ignored(env):
    c = env.client()
    params, _ = _request()
    uri = push(c, params, secret=env.secrets["web"]).json["request_uri"]
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "web", "request_uri": uri, "state": "from-query",
        "redirect_uri": "http://127.0.0.1:9999/cb", "scope": "openid",
        "response_mode": "form_post"}))
    assert got["state"] == params["state"]
    assert got["_location"].startswith(RP + "?")


def test_public_client_pushes_with_none_and_its_client_id(env):
    c = env.client()
    params, verifier = _request(client_id="spa", redirect_uri="https://spa.example.org/cb")
    resp = push(c, params, headers={})
    assert resp.status_code == 201, resp.json
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "spa", "request_uri": resp.json["request_uri"]}))
    tokens = token(c, {"grant_type": "authorization_code", "code": got["code"],
                       "client_id": "spa", "redirect_uri": "https://spa.example.org/cb",
                       "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.json


def test_private_key_jwt_client_authenticates_with_par_audience(env):
    c = env.client()
    now = int(time.time())
    assertion = josejwt.encode({"alg": "RS256", "kid": "rp-1"}, {
        "iss": "pkj", "sub": "pkj", "aud": f"{ISSUER}/oauth2/par", "iat": now,
        "exp": now + 60, "jti": secrets.token_hex(8)}, env.rp_key)
    params, _ = _request(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion)
    resp = push(c, params, headers={})
    assert resp.status_code == 201, resp.json


@pytest.mark.parametrize("headers,status", [
    ({}, 401),                                                  # confidential, no auth
    (_basic("web", "wrong-secret"), 401),                       # wrong secret
    (_basic("nobody", "x"), 401),                               # unknown client
])
def test_push_without_valid_client_authentication_is_refused(env, headers, status):
    c = env.client()
    before = _state(env.svc)
    params, _ = _request(client_id="web")
    resp = c.post("/oauth2/par", data=params, headers=headers)
    assert resp.status_code == status and resp.json["error"] == "invalid_client"
    assert _state(env.svc) == before


@pytest.mark.parametrize("change,error", [
    ({"request_uri": URN + "abc"}, "invalid_request"),          # RFC 9126 §2.1
    ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": ""}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "", "code_challenge_method": ""}, None),  # confidential: optional
    ({"resource": "https://unknown.example/api"}, "invalid_target"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"claims": "{not json"}, "invalid_request"),
    ({"client_id": "web2"}, "invalid_request"),                 # not the authenticated one
    ({"response_mode": "fragment"}, "invalid_request"),
])
def test_push_validates_the_whole_request(env, change, error):
    c = env.client()
    params, _ = _request(**change)
    params = {k: v for k, v in params.items() if v != ""} if error is None else params
    before = _state(env.svc)
    resp = push(c, params, secret=env.secrets["web"])
    if error is None:
        assert resp.status_code == 201
        return
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == error and resp.json["error_description"]
    assert _state(env.svc) == before


def test_push_needs_a_form_post(env):
    c = env.client()
    resp = c.post("/oauth2/par", json={"response_type": "code"},
                  headers=_basic("web", env.secrets["web"]))
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"
    assert c.get("/oauth2/par").status_code == 405


# --- using the request_uri -----------------------------------------------------------------------

def test_request_uri_works_until_completion_then_never_again(env):
    c = env.client()
    params, _ = _request()
    uri = push(c, params, secret=env.secrets["web"]).json["request_uri"]
    at = {"client_id": "web", "request_uri": uri}
    # FAPI par-ensure-reused-request-uri-prior-to-auth-completion-succeeds: a reload.
    first = c.get("/oauth2/authorize", query_string=at)
    again = c.get("/oauth2/authorize", query_string=at)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"].startswith("/login")
    got = follow(c, again)
    assert "code" in got
    before = _state(env.svc)
    # FAPI par-attempt-reuse-request_uri: a signed-in browser presents it again.
    _refused_page(c.get("/oauth2/authorize", query_string=at))
    assert _state(env.svc) == before


def test_completion_is_one_time_even_from_two_pending_sign_ins(env):
    c1, c2 = env.client(), env.client()
    params, _ = _request()
    uri = push(c1, params, secret=env.secrets["web"]).json["request_uri"]
    at = {"client_id": "web", "request_uri": uri}
    pending1 = c1.get("/oauth2/authorize", query_string=at)
    pending2 = c2.get("/oauth2/authorize", query_string=at)
    assert "code" in follow(c1, pending1)
    loser = follow(c2, pending2)
    assert loser["error"] == "invalid_request" and "code" not in loser


@pytest.mark.parametrize("offset,usable", [(-1, True), (1, False)])
def test_request_uri_expiry_one_second_either_side(env, offset, usable):
    from idp.clock import FrozenClock

    c = env.client()
    svc = env.svc
    with clock_swapped(svc, FrozenClock(svc.clock.now())) as start:
        uri = push(c, _request()[0], secret=env.secrets["web"]).json["request_uri"]
        start.advance(60 + offset)
        before = _state(svc)
        resp = c.get("/oauth2/authorize", query_string={"client_id": "web", "request_uri": uri})
        if usable:
            assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")
        else:
            _refused_page(resp)
            assert _state(svc) == before


def test_request_uri_of_another_client_or_made_up_is_refused_with_a_page(env):
    c = env.client()
    uri = push(c, _request()[0], secret=env.secrets["web"]).json["request_uri"]
    before = _state(env.svc)
    for at in ({"client_id": "web2", "request_uri": uri},
               {"request_uri": uri},
               {"client_id": "web", "request_uri": URN + secrets.token_urlsafe(32)},
               {"client_id": "web", "request_uri": URN},
               {"client_id": "web", "request_uri": uri, "request": "a.b.c"}):
        _refused_page(c.get("/oauth2/authorize", query_string=at))
    assert _state(env.svc) == before
    # Still the pushing client's to use.
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "web", "request_uri": uri}))


def test_a_non_pushed_request_uri_is_not_supported(env):
    c = env.client()
    resp = c.get("/oauth2/authorize", query_string={
        "client_id": "web", "response_type": "code", "redirect_uri": RP, "scope": "openid",
        "state": "s", "request_uri": "https://rp.example.org/request.jwt"})
    assert query(resp.headers["Location"])["error"] == "request_uri_not_supported"


# --- requiring PAR -------------------------------------------------------------------------------

def test_client_that_requires_par_is_refused_without_it(env):
    c = env.client()
    before = _state(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(_request()[0], client_id="parreq"))
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_request" and "pushed" in got["error_description"]
    assert "code" not in got and _state(env.svc) == before
    uri = push(c, _request()[0], "parreq", env.secrets["parreq"]).json["request_uri"]
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "parreq", "request_uri": uri}))


def test_discovery_advertises_par(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert doc["pushed_authorization_request_endpoint"] == f"{ISSUER}/oauth2/par"
    assert doc["require_pushed_authorization_requests"] is False
    assert doc["require_signed_request_object"] is False
    oauth = env.client().get("/.well-known/oauth-authorization-server").json
    assert oauth["pushed_authorization_request_endpoint"] == f"{ISSUER}/oauth2/par"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_registration_takes_the_flag_as_a_boolean_only(env, value):
    c = env.client()
    meta = {"redirect_uris": [RP], "require_pushed_authorization_requests": value}
    resp = c.post("/oauth2/register", json=meta,
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid_client_metadata"
    meta["require_pushed_authorization_requests"] = True
    ok = c.post("/oauth2/register", json=meta,
                headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert ok.status_code == 201 and ok.json["require_pushed_authorization_requests"] is True


# --- oidc.require_par and oidc.require_signed_request_object -----------------------------------

@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """An app whose [oidc] requires PAR and signed request objects of every client."""
    from support import base_overrides, init_database

    from idp.app import create_app

    instance = tmp_path_factory.mktemp("strict") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, oidc={"require_par": True,
                                               "require_signed_request_object": True,
                                               "par_lifetime": 90})
    init_database(overrides)
    app = create_app(overrides)
    secret = _alice_and_web(app, auth_method="client_secret_jwt",
                            extra={"request_object_signing_alg": "HS256"})
    yield app, secret
    app.extensions["idp"].engine.dispose()


def _alice_and_web(app, **client: object) -> str:
    """Alice and the client "web" in a small app of its own; returns its secret."""
    from idp.backends.chain import password_hasher
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        Directory(db).create_user(NewUser(username="alice", email="alice@example.org",
                                          password_hash=password_hasher(svc).hash(PASSWORD)))
        return ClientRegistry(db, svc.hasher, svc.sealer).create(
            "web", name="Web", redirect_uris=[RP], grant_types=["authorization_code"],
            scope="openid", **client)[1]


def test_global_settings_require_par_and_signed_request_objects(strict):
    app, secret = strict
    c = app.test_client()
    doc = c.get("/.well-known/openid-configuration").json
    assert doc["require_pushed_authorization_requests"] is True
    assert doc["require_signed_request_object"] is True
    svc = app.extensions["idp"]
    key = OctKey.import_key(secret)
    now = int(time.time())

    def client_auth() -> dict[str, str]:
        assertion = josejwt.encode({"alg": "HS256"}, {
            "iss": "web", "sub": "web", "aud": ISSUER, "exp": now + 60,
            "jti": secrets.token_hex(8)}, key)
        return {"client_assertion": assertion, "client_assertion_type":
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}

    before = _state(svc)
    plain = c.get("/oauth2/authorize", query_string=dict(_request()[0], client_id="web"))
    assert query(plain.headers["Location"])["error"] == "invalid_request"
    unsigned = push(c, dict(_request()[0], **client_auth()), headers={})
    assert unsigned.status_code == 400 and "signed" in unsigned.json["error_description"]
    assert _state(svc) == before
    claims = dict(_request()[0], iss="web", aud=ISSUER, exp=now + 60, client_id="web")
    signed = josejwt.encode({"alg": "HS256"}, claims, key)
    resp = push(c, dict(client_auth(), request=signed), headers={})
    assert resp.status_code == 201, resp.json
    assert resp.json["expires_in"] == 90
    got = c.get("/oauth2/authorize", query_string={"client_id": "web",
                                                   "request_uri": resp.json["request_uri"]})
    assert got.status_code == 303 and got.headers["Location"].startswith("/login")


def test_par_lifetime_must_stay_under_ten_minutes(tmp_path):
    from idp.errors import ConfigError
    from idp.settings import load_settings

    with pytest.raises(ConfigError, match="par_lifetime"):
        load_settings({"instance_dir": str(tmp_path), "oidc": {"par_lifetime": 600}})


def test_one_time_use_holds_on_redis(make_app, redis_url):
    """The same promises with the store on Redis (``IDP_REDIS_URL``)."""
    app = make_app(redis_url=redis_url,
                   store={"redis_prefix": f"par-{secrets.token_hex(4)}:"})
    secret = _alice_and_web(app)
    c = app.test_client()
    uri = push(c, _request()[0], secret=secret).json["request_uri"]
    at = {"client_id": "web", "request_uri": uri}
    c.get("/oauth2/authorize", query_string=at)  # presented before completion: still usable
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string=at))
    _refused_page(c.get("/oauth2/authorize", query_string=at))
    _refused_page(c.get("/oauth2/authorize", query_string={"client_id": "web",
                                                           "request_uri": URN + "made-up"}))
