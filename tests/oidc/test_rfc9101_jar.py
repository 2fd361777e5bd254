"""RFC 9101 JWT-secured authorization requests: a request object signed by the client (joserfc,
as a client library builds it) carries the whole request, at /oauth2/authorize and inside a
pushed request (RFC 9126); its signature, algorithm, iss, aud, exp / nbf, client_id and jti
are checked, and a refusal changes nothing. ``require_signed_request_object`` and
``request_object_signing_alg`` per client; discovery. The ID token is checked with PyJWT."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt as josejwt
from joserfc.jwk import OctKey, RSAKey
from oidc_support import RP, follow, initial_access_token, query, token
from support import clock_swapped, store_keys

ISSUER = "http://127.0.0.1:5000"


@pytest.fixture(scope="module", autouse=True)
def jar_clients(env):
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    jwks = {"keys": [env.rp_key.as_dict(private=False)]}
    with env.svc.sessions.begin() as db:
        reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
        common = {"redirect_uris": [RP], "grant_types": ["authorization_code"],
                  "scope": "openid profile email"}
        _, env.secrets["jar"] = reg.create("jar", name="JAR", extra={"jwks": jwks}, **common)
        _, env.secrets["jarrs"] = reg.create(
            "jarrs", name="RS256 only", auth_method="client_secret_jwt",
            extra={"jwks": jwks, "request_object_signing_alg": "RS256"}, **common)
        _, env.secrets["jarhs"] = reg.create("jarhs", name="HMAC", extra={"jwks": jwks},
                                             auth_method="client_secret_jwt", **common)
        _, env.secrets["jarreq"] = reg.create(
            "jarreq", name="Signed only",
            extra={"jwks": jwks, "require_signed_request_object": True}, **common)
    client_cache(env.svc).bump()


def _claims(client_id: str = "jar", **extra) -> dict:
    now = int(time.time())
    claims = {"iss": client_id, "aud": ISSUER, "exp": now + 300, "nbf": now, "iat": now,
              "jti": secrets.token_hex(8), "client_id": client_id, "response_type": "code",
              "redirect_uri": RP, "scope": "openid email", "state": "ro-" + secrets.token_hex(4),
              "nonce": "n-" + secrets.token_hex(4), "max_age": 3600,
              "claims": {"id_token": {"email": {"essential": True}}}}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(env, claims: dict, alg: str = "RS256", key=None) -> str:
    return josejwt.encode({"alg": alg, "kid": "rp-1"}, claims, key or env.rp_key)


def _unsigned(claims: dict) -> str:
    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part(claims)}."


def _state(svc) -> tuple:
    with svc.engine.connect() as conn:
        keys = sorted(k for p in ("par", "code:", "authreq:", "rojti:") for k in store_keys(svc, p))
        tokens = conn.exec_driver_sql("SELECT count(*) FROM oauth_refresh_tokens").scalar()
    return tuple(keys), tokens


def _refused(env, c, request_object: str, client_id: str = "jar", **query_params) -> dict:
    before = _state(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(
        {"client_id": client_id, "redirect_uri": RP, "request": request_object},
        **query_params))
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
    got = query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(RP + "?")
    assert got["error"] == "invalid_request_object" and "code" not in got
    assert got["iss"] == ISSUER
    assert _state(env.svc) == before
    return got


def test_signed_request_object_runs_to_tokens(env):
    c = env.client()
    verifier = secrets.token_urlsafe(48)
    claims = _claims(code_challenge=create_s256_code_challenge(verifier),
                     code_challenge_method="S256")
    # RFC 9101 §6.3: only the object's parameters count, not those beside it.
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "request": _sign(env, claims), "state": "from-query",
        "scope": "openid", "redirect_uri": "http://127.0.0.1:9999/cb"}))
    assert got["state"] == claims["state"] and got["_location"].startswith(RP + "?")
    tokens = token(c, {"grant_type": "authorization_code", "code": got["code"],
                       "redirect_uri": RP, "code_verifier": verifier},
                   auth=("jar", env.secrets["jar"]))
    assert tokens.status_code == 200, tokens.json
    id_token = tokens.json["id_token"]
    jwks = c.get("/jwks").json
    header = pyjwt.get_unverified_header(id_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    decoded = pyjwt.decode(id_token, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                           audience="jar", issuer=ISSUER)
    assert decoded["nonce"] == claims["nonce"]
    assert decoded["email"] == "alice@example.org"  # the object's claims request


def test_hmac_request_object_with_the_client_secret(env):
    c = env.client()
    claims = _claims("jarhs")
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jarhs", "request": _sign(env, claims, "HS256",
                                                OctKey.import_key(env.secrets["jarhs"]))}))
    assert "code" in got and got["state"] == claims["state"]


def test_request_object_inside_a_pushed_request(env):
    c = env.client()
    claims = _claims()
    resp = c.post("/oauth2/par", data={"request": _sign(env, claims), "client_id": "jar"},
                  headers=_basic("jar", env.secrets["jar"]))
    assert resp.status_code == 201, resp.json
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "request_uri": resp.json["request_uri"]}))
    assert got["state"] == claims["state"] and "code" in got


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_refused_request_object_in_a_push_stores_nothing(env):
    c = env.client()
    before = _state(env.svc)
    for bad in (_unsigned(_claims()), _sign(env, _claims(aud="https://other.example"))):
        resp = c.post("/oauth2/par", data={"request": bad},
                      headers=_basic("jar", env.secrets["jar"]))
        assert resp.status_code == 400 and resp.json["error"] == "invalid_request_object"
    assert _state(env.svc) == before


# --- refusals ------------------------------------------------------------------------------------

FOREIGN = RSAKey.generate_key(2048, parameters={"kid": "rp-1"})


@pytest.mark.parametrize("case,reason", [
    ("alg_none", "alg none"), ("foreign_key", "signature"), ("wrong_aud", "aud"),
    ("wrong_iss", "iss"), ("expired", "expired"), ("no_exp", "exp is required"),
    ("too_long", "longer than an hour"), ("nbf_future", "nbf"),
    ("client_id_mismatch", "client_id"), ("nested_request_uri", "request_uri"),
    ("not_a_jwt", "not a signed JWT"),
])
def test_bad_request_objects_are_refused(env, case, reason):
    c = env.client()
    obj = {
        "alg_none": lambda: _unsigned(_claims()),
        "foreign_key": lambda: _sign(env, _claims(), key=FOREIGN),
        "wrong_aud": lambda: _sign(env, _claims(aud="https://other.example.org")),
        "wrong_iss": lambda: _sign(env, _claims(iss="web")),
        "expired": lambda: _sign(env, _claims(exp=int(time.time()) - 1)),
        "no_exp": lambda: _sign(env, _claims(exp=None)),
        "too_long": lambda: _sign(env, _claims(exp=int(time.time()) + 3700)),
        "nbf_future": lambda: _sign(env, _claims(nbf=int(time.time()) + 120)),
        "client_id_mismatch": lambda: _sign(env, _claims(client_id="web")),
        "nested_request_uri": lambda: _sign(env, _claims(request_uri="https://x.example/r")),
        "not_a_jwt": lambda: "not-a-jwt",
    }[case]()
    assert reason in _refused(env, c, obj)["error_description"]


def test_array_aud_holding_the_issuer_is_accepted(env):
    c = env.client()
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "request": _sign(env, _claims(aud=[ISSUER, "https://x.example"]))}))
    assert "code" in got


def test_replayed_jti_is_refused(env):
    c = env.client()
    obj = _sign(env, _claims())
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "request": obj}))
    assert "jti" in _refused(env, c, obj)["error_description"]


def test_other_client_id_outside_verifies_with_that_clients_keys(env):
    # The object is jar's, signed with jar's key; presented as web's it fails (web has no keys).
    c = env.client()
    assert "keys" in _refused(env, c, _sign(env, _claims()), client_id="web")[
        "error_description"]


def test_hs256_when_rs256_is_registered_is_refused(env):
    c = env.client()
    hs = _sign(env, _claims("jarrs"), "HS256", OctKey.import_key(env.secrets["jarrs"]))
    got = _refused(env, c, hs, client_id="jarrs")
    assert "RS256" in got["error_description"]
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jarrs", "request": _sign(env, _claims("jarrs"))}))


def test_request_and_request_uri_together_are_refused(env):
    c = env.client()
    _refused(env, c, _sign(env, _claims()), request_uri="https://rp.example.org/r")


def test_refusal_never_redirects_to_an_unregistered_uri(env):
    c = env.client()
    resp = c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "redirect_uri": "https://evil.example/cb",
        "request": _unsigned(_claims())})
    assert resp.status_code == 400 and "Location" not in resp.headers
    unknown = c.get("/oauth2/authorize", query_string={
        "client_id": "nobody", "request": _unsigned(_claims())})
    assert unknown.status_code == 400 and "Location" not in unknown.headers


@pytest.mark.parametrize("offset,ok", [(-1, True), (1, False)])
def test_exp_one_second_either_side(env, offset, ok):
    from idp.clock import FrozenClock

    c = env.client()
    now = int(env.svc.clock.now())
    obj = _sign(env, _claims(exp=now + 30, nbf=now, iat=now))
    with clock_swapped(env.svc, FrozenClock(now + 30 + offset)):
        if ok:
            resp = c.get("/oauth2/authorize", query_string={"client_id": "jar", "request": obj})
            assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")
        else:
            assert "expired" in _refused(env, c, obj)["error_description"]


# --- per-client requirements, registration, discovery ----------------------------------------

def test_client_requiring_signed_request_objects(env):
    c = env.client()
    before = _state(env.svc)
    resp = c.get("/oauth2/authorize", query_string={
        "client_id": "jarreq", "response_type": "code", "redirect_uri": RP, "scope": "openid",
        "state": "s"})
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_request" and "signed request object" in \
        got["error_description"]
    assert _state(env.svc) == before
    assert "code" in follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jarreq", "request": _sign(env, _claims("jarreq"))}))


@pytest.mark.parametrize("meta", [
    {"request_object_signing_alg": "none"},
    {"request_object_signing_alg": "HS256"},  # needs client_secret_jwt
    {"require_signed_request_object": "true"},
])
def test_registration_refuses_bad_request_object_metadata(env, meta):
    c = env.client()
    resp = c.post("/oauth2/register", json=dict({"redirect_uris": [RP]}, **meta),
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"


def test_registration_keeps_request_object_metadata(env):
    c = env.client()
    meta = {"redirect_uris": [RP], "request_object_signing_alg": "PS256",
            "require_signed_request_object": True,
            "jwks": {"keys": [env.rp_key.as_dict(private=False)]}}
    resp = c.post("/oauth2/register", json=meta,
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 201, resp.json
    assert resp.json["request_object_signing_alg"] == "PS256"
    assert resp.json["require_signed_request_object"] is True


def test_discovery_advertises_request_objects(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert doc["request_parameter_supported"] is True
    assert doc["request_uri_parameter_supported"] is True
    assert doc["require_request_uri_registration"] is True
    assert "none" not in doc["request_object_signing_alg_values_supported"]
    assert {"RS256", "PS256", "ES256", "HS256"} <= set(
        doc["request_object_signing_alg_values_supported"])


# --- request objects by reference: registered request_uris (RFC 9101 §5.2) -----------------

@pytest.fixture
def served():
    """A real HTTP server on loopback serving request objects: path -> (status, body)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    documents: dict[str, tuple[int, str]] = {}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            status, body = documents.get(self.path, (404, ""))
            self.send_response(status)
            self.send_header("Content-Type", "application/oauth-authz-req+jwt")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", documents, seen
    finally:
        server.shutdown()


def _register_request_uris(env, client_id: str, uris: list[str]) -> None:
    from idp.oidc.clients import client_cache
    from idp.storage.models import Client

    with env.svc.sessions.begin() as db:
        row = db.get(Client, client_id)
        row.meta = dict(row.meta, request_uris=uris)
    client_cache(env.svc).bump()


def test_registered_request_uri_is_fetched_and_verified(env, served):
    base, documents, seen = served
    c = env.client()
    claims = _claims()
    documents["/ro.jwt"] = (200, _sign(env, claims))
    documents["/unsigned.jwt"] = (200, _unsigned(_claims()))
    _register_request_uris(env, "jar", [f"{base}/ro.jwt", f"{base}/unsigned.jwt",
                                        f"{base}/gone.jwt"])
    try:
        got = follow(c, c.get("/oauth2/authorize", query_string={
            "client_id": "jar", "request_uri": f"{base}/ro.jwt"}))
        assert got["state"] == claims["state"] and "code" in got
        assert "invalid_request_object" == _refused_uri(env, c, f"{base}/unsigned.jwt")
        assert "invalid_request_uri" == _refused_uri(env, c, f"{base}/gone.jwt")
        # Not registered: never fetched.
        assert "request_uri_not_supported" == _refused_uri(env, c, f"{base}/other.jwt")
        assert "/other.jwt" not in seen
    finally:
        _register_request_uris(env, "jar", [])


def _refused_uri(env, c, uri: str) -> str:
    before = _state(env.svc)
    resp = c.get("/oauth2/authorize", query_string={"client_id": "jar", "redirect_uri": RP,
                                                    "response_type": "code", "request_uri": uri})
    got = query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(RP + "?") and "code" not in got
    assert _state(env.svc) == before
    return got["error"]


@pytest.mark.parametrize("uri", ["https://rp.example.org/ro#frag", "javascript:alert(1)",
                                 "https://10.0.0.1/ro"])
def test_request_uris_metadata_follows_the_fetched_uri_rules(env, uri):
    from idp.core.client_metadata import MetadataError, Policy, check_client_metadata

    with pytest.raises(MetadataError, match="request_uris"):
        check_client_metadata({"redirect_uris": [RP], "request_uris": [uri]}, Policy())


# --- encrypted request objects (RFC 9101 §6.1) -------------------------------------------------

def _our_enc_key(c, alg: str):
    """Our published encryption key for ``alg``, as a client finds it in the JWKS."""
    from joserfc.jwk import ECKey

    jwk = next(k for k in c.get("/jwks").json["keys"]
               if k.get("use") == "enc" and k.get("alg") == alg)
    return (RSAKey if jwk["kty"] == "RSA" else ECKey).import_key(jwk)


@pytest.mark.parametrize("alg,enc", [("RSA-OAEP-256", "A256GCM"), ("ECDH-ES", "A128GCM")])
def test_encrypted_signed_request_object_runs(env, alg, enc):
    from joserfc import jwe

    c = env.client()
    claims = _claims()
    nested = jwe.encrypt_compact({"alg": alg, "enc": enc, "cty": "JWT"}, _sign(env, claims),
                                 _our_enc_key(c, alg), algorithms=[alg, enc])
    got = follow(c, c.get("/oauth2/authorize", query_string={"client_id": "jar",
                                                             "request": nested}))
    assert got["state"] == claims["state"] and "code" in got


@pytest.mark.parametrize("case", ["unsigned_inside", "foreign_key", "weak_alg"])
def test_bad_encrypted_request_objects_are_refused(env, case):
    from joserfc import jwe

    c = env.client()
    inner = _unsigned(_claims()) if case == "unsigned_inside" else _sign(env, _claims())
    key = RSAKey.generate_key(2048) if case == "foreign_key" else _our_enc_key(c, "RSA-OAEP-256")
    alg = "RSA1_5" if case == "weak_alg" else "RSA-OAEP-256"
    nested = jwe.encrypt_compact({"alg": alg, "enc": "A256GCM"}, inner, key,
                                 algorithms=[alg, "A256GCM"])
    reason = {"unsigned_inside": "alg none", "foreign_key": "cannot be decrypted",
              "weak_alg": "encryption is not supported"}[case]
    assert reason in _refused(env, c, nested)["error_description"]


def test_encryption_keys_are_published_and_advertised(env):
    c = env.client()
    keys = c.get("/jwks").json["keys"]
    enc = {k["alg"] for k in keys if k.get("use") == "enc"}
    assert enc == {"RSA-OAEP-256", "ECDH-ES"}
    assert all("d" not in k for k in keys)  # public parts only
    doc = c.get("/.well-known/openid-configuration").json
    assert doc["request_object_encryption_alg_values_supported"] == ["RSA-OAEP-256", "ECDH-ES"]
    assert doc["request_object_encryption_enc_values_supported"] == ["A256GCM", "A128GCM"]
    # The signing ring is untouched: nothing we sign names an encryption key.
    header = pyjwt.get_unverified_header(follow_token(env, c))
    assert header["kid"] not in {k["kid"] for k in keys if k.get("use") == "enc"}


def follow_token(env, c) -> str:
    got = follow(c, c.get("/oauth2/authorize", query_string={
        "client_id": "jar", "request": _sign(env, _claims())}))
    return token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=("jar", env.secrets["jar"])).json["id_token"]


def test_previous_encryption_key_still_decrypts_after_a_rotation(env):
    """Last in the module: it rotates the keys. A client that encrypted to the key it fetched
    before the rotation is still understood while that key is published as previous."""
    from joserfc import jwe

    c = env.client()
    before = _our_enc_key(c, "RSA-OAEP-256")
    env.svc.keys.rotate(ktys=("RSA",))
    published = [k for k in c.get("/jwks").json["keys"] if k.get("alg") == "RSA-OAEP-256"]
    assert before.kid in {k["kid"] for k in published} and len(published) == 2
    after = RSAKey.import_key(next(k for k in published if k["kid"] != before.kid))
    for key in (before, after):
        claims = _claims()
        nested = jwe.encrypt_compact({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid},
                                     _sign(env, claims), key,
                                     algorithms=["RSA-OAEP-256", "A256GCM"])
        got = follow(c, c.get("/oauth2/authorize", query_string={"client_id": "jar",
                                                                 "request": nested}))
        assert got["state"] == claims["state"]
