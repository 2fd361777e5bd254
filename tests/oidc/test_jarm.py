"""JWT Secured Authorization Response Mode (JARM, OpenID final): query.jwt, fragment.jwt,
form_post.jwt and jwt; responses signed with the client's algorithm and, when registered,
encrypted to its key; errors as JARM once the redirect URI is verified; the metadata rules
(allowed algorithms only, enc needs alg, keys fit for encryption) on every write path.

Responses are read the way a client would: PyJWT verifies the signature against the published
JWKS and the audience and issuer; joserfc decrypts with the client's private key."""

from __future__ import annotations

import re
import socket
from html import unescape
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from api_kit import service_token
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey
from oidc_support import PASSWORD, RP, authorize, initial_access_token, login, serve_json, token
from support import store_keys

from idp.core.client_metadata import Policy
from idp.oidc.clients import client_cache
from idp.storage.clients import ClientRegistry
from idp.storage.models import Client

ISSUER = "http://127.0.0.1:5000"
RSA_ENC = RSAKey.generate_key(2048, parameters={"kid": "enc-rsa", "use": "enc"})
EC_ENC = ECKey.generate_key("P-256", parameters={"kid": "enc-ec", "use": "enc"})
RSA_SIG = RSAKey.generate_key(2048, parameters={"kid": "sig-rsa", "use": "sig"})
SCOPE = "openid profile"


def _public(*keys) -> dict:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jarm_env(env):
    """JARM clients beside the module's usual ones; ``jwks_uri`` documents served locally."""
    secrets: dict[str, str] = {}
    with serve_json(_public(RSA_SIG, RSA_ENC)) as base:
        with env.svc.sessions.begin() as db:
            reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer, Policy(True, True))

            def add(client_id: str, **extra):
                _, secrets[client_id] = reg.create(
                    client_id, redirect_uris=[RP], grant_types=["authorization_code"],
                    scope=SCOPE, extra=extra)

            add("jarm")
            add("jarm-es", authorization_signed_response_alg="ES256")
            add("jarm-rsa", authorization_signed_response_alg="PS256",
                authorization_encrypted_response_alg="RSA-OAEP-256",
                authorization_encrypted_response_enc="A256GCM",
                jwks=_public(RSA_SIG, RSA_ENC))
            add("jarm-ec", authorization_encrypted_response_alg="ECDH-ES",
                jwks=_public(EC_ENC))
            add("jarm-uri", authorization_encrypted_response_alg="RSA-OAEP",
                jwks_uri=f"{base}/jwks.json")
            add("jarm-dead", authorization_encrypted_response_alg="RSA-OAEP",
                jwks_uri=f"http://127.0.0.1:{_free_port()}/jwks.json")
        client_cache(env.svc).bump()
        env.secrets.update(secrets)
        yield env


def _verify(c, response: str, audience: str) -> tuple[dict, dict]:
    """The JWT's header and claims, verified as the client would (signature, aud, iss, exp)."""
    header = pyjwt.get_unverified_header(response)
    jwks = c.get("/jwks").json
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = pyjwt.decode(response, pyjwt.PyJWK(key).key, algorithms=[header["alg"]],
                          audience=audience, issuer=ISSUER,
                          options={"require": ["exp", "iss", "aud"]})
    return header, claims


def _signed_in(jarm_env, client_id: str):
    """A browser signed in as alice that has consented to ``client_id`` already."""
    c = jarm_env.client()
    got = authorize(c, client_id=client_id, scope=SCOPE)
    assert "code" in got or "response" in got, got
    return c


def _request(c, client_id: str, mode: str, **extra):
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": RP,
              "scope": SCOPE, "state": "st-jarm", "response_mode": mode}
    params.update(extra)
    return c.get("/oauth2/authorize", query_string=params)


def _code_keys(svc) -> int:
    return len(store_keys(svc, "code:"))


# --- discovery ----------------------------------------------------------------------------------

def test_discovery_advertises_the_jarm_modes_and_algorithms(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert {"query.jwt", "fragment.jwt", "form_post.jwt", "jwt"} <= set(
        doc["response_modes_supported"])
    assert doc["authorization_signing_alg_values_supported"] == [
        "RS256", "PS256", "ES256", "EdDSA"]
    assert "RSA-OAEP-256" in doc["authorization_encryption_alg_values_supported"]
    assert "RSA1_5" not in doc["authorization_encryption_alg_values_supported"]
    assert "A128CBC-HS256" in doc["authorization_encryption_enc_values_supported"]


# --- the response modes -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["query.jwt", "jwt"])
def test_query_jwt_carries_a_signed_response_the_client_redeems(jarm_env, mode):
    c = _signed_in(jarm_env, "jarm")
    resp = _request(c, "jarm", mode)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(RP + "?") and "#" not in location
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert set(params) == {"response"}  # code, state and iss travel inside the JWT only
    header, claims = _verify(c, params["response"], "jarm")
    assert header["alg"] == "RS256"
    assert claims["iss"] == ISSUER and claims["aud"] == "jarm" and claims["state"] == "st-jarm"
    assert claims["exp"] - claims["iat"] == 300  # [oidc] jarm_lifetime
    redeemed = token(c, {"grant_type": "authorization_code", "code": claims["code"],
                         "redirect_uri": RP}, auth=("jarm", jarm_env.secrets["jarm"]))
    assert redeemed.status_code == 200 and redeemed.json["id_token"]


def test_fragment_jwt_puts_the_response_in_the_fragment(jarm_env):
    c = _signed_in(jarm_env, "jarm")
    resp = _request(c, "jarm", "fragment.jwt")
    location = resp.headers["Location"]
    parts = urlsplit(location)
    assert resp.status_code == 302 and not parts.query
    fragment = parse_qs(parts.fragment)
    assert set(fragment) == {"response"}
    assert "code" in _verify(c, fragment["response"][0], "jarm")[1]


def test_form_post_jwt_posts_one_response_field(jarm_env):
    c = _signed_in(jarm_env, "jarm")
    resp = _request(c, "jarm", "form_post.jwt")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and f'action="{RP}"' in html
    names = re.findall(r'name="([^"]+)"', html)
    assert "response" in names and "code" not in names and "iss" not in names
    value = unescape(re.search(r'name="response" value="([^"]+)"', html).group(1))
    assert _verify(c, value, "jarm")[1]["state"] == "st-jarm"


def test_signing_algorithm_is_the_clients(jarm_env):
    c = _signed_in(jarm_env, "jarm-es")
    resp = _request(c, "jarm-es", "query.jwt")
    response = parse_qs(urlsplit(resp.headers["Location"]).query)["response"][0]
    header, claims = _verify(c, response, "jarm-es")
    assert header["alg"] == "ES256" and claims["code"]


# --- errors -------------------------------------------------------------------------------------

def test_errors_go_back_as_jarm_once_the_redirect_uri_is_verified(jarm_env):
    c = jarm_env.client()  # nobody signed in
    resp = _request(c, "jarm", "query.jwt", prompt="none")
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert set(params) == {"response"}
    claims = _verify(c, params["response"][0], "jarm")[1]
    assert claims["error"] == "login_required" and claims["state"] == "st-jarm"
    assert "code" not in claims
    resp = _request(c, "jarm", "fragment.jwt", scope="openid", response_type="token")
    fragment = parse_qs(urlsplit(resp.headers["Location"]).fragment)
    assert _verify(c, fragment["response"][0], "jarm")[1]["error"] == "unsupported_response_type"


def test_an_unverified_redirect_uri_gets_a_page_not_a_jwt(jarm_env):
    resp = _request(jarm_env.client(), "jarm", "query.jwt",
                    redirect_uri="https://evil.example.org/cb")
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_an_unknown_response_mode_is_refused_in_the_default_mode(jarm_env):
    resp = _request(jarm_env.client(), "jarm", "pigeon.jwt")
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert params["error"] == ["invalid_request"] and "response" not in params


# --- encryption ---------------------------------------------------------------------------------

@pytest.mark.parametrize("client_id,key,alg,enc", [
    ("jarm-rsa", RSA_ENC, "RSA-OAEP-256", "A256GCM"),
    ("jarm-ec", EC_ENC, "ECDH-ES", "A128CBC-HS256"),  # JARM §3: the default enc
    ("jarm-uri", RSA_ENC, "RSA-OAEP", "A128CBC-HS256"),
])
def test_encrypted_responses_open_with_the_clients_key(jarm_env, client_id, key, alg, enc):
    c = _signed_in(jarm_env, client_id)
    resp = _request(c, client_id, "query.jwt")
    response = parse_qs(urlsplit(resp.headers["Location"]).query)["response"][0]
    assert response.count(".") == 4  # a JWE
    opened = jwe.decrypt_compact(response, key, algorithms=[alg, enc])
    assert opened.protected["alg"] == alg and opened.protected["enc"] == enc
    assert opened.protected["cty"] == "JWT" and opened.protected["kid"] == key.kid
    header, claims = _verify(c, opened.plaintext.decode(), client_id)
    assert claims["aud"] == client_id and claims["code"]
    if client_id == "jarm-rsa":
        assert header["alg"] == "PS256"
    with pytest.raises(Exception):  # noqa: B017 - any failure: another key cannot open it
        jwe.decrypt_compact(response, RSAKey.generate_key(2048) if key is RSA_ENC
                            else ECKey.generate_key("P-256"), algorithms=[alg, enc])


def test_no_response_and_no_code_when_the_keys_to_encrypt_to_cannot_be_had(jarm_env):
    c = jarm_env.client()
    login(c, "alice", PASSWORD)
    before = _code_keys(jarm_env.svc)
    for mode in ("jwt", "form_post.jwt"):
        resp = _request(c, "jarm-dead", mode)
        assert resp.status_code == 400 and "Location" not in resp.headers
        assert "keys cannot be used" in resp.get_data(as_text=True)
    # Even an error is not sent unencrypted.
    resp = _request(c, "jarm-dead", "jwt", prompt="none")
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert _code_keys(jarm_env.svc) == before


# --- metadata -----------------------------------------------------------------------------------

def _count(svc) -> int:
    with svc.sessions() as db:
        return db.query(Client).count()


@pytest.mark.parametrize("extra,field", [
    ({"authorization_signed_response_alg": "none"}, "authorization_signed_response_alg"),
    ({"authorization_signed_response_alg": "HS256"}, "authorization_signed_response_alg"),
    ({"authorization_encrypted_response_enc": "A128GCM"}, "authorization_encrypted_response_enc"),
    ({"authorization_encrypted_response_alg": "RSA1_5", "jwks": _public(RSA_ENC)},
     "authorization_encrypted_response_alg"),
    ({"authorization_encrypted_response_alg": "dir", "jwks": _public(RSA_ENC)},
     "authorization_encrypted_response_alg"),
    ({"authorization_encrypted_response_alg": "RSA-OAEP", "jwks": _public(RSA_ENC),
      "authorization_encrypted_response_enc": "A128KW"}, "authorization_encrypted_response_enc"),
    ({"authorization_encrypted_response_alg": "RSA-OAEP"}, "authorization_encrypted_response_alg"),
    ({"authorization_encrypted_response_alg": "RSA-OAEP", "jwks": _public(RSA_SIG)},
     "authorization_encrypted_response_alg"),
    ({"authorization_encrypted_response_alg": "ECDH-ES", "jwks": _public(RSA_ENC)},
     "authorization_encrypted_response_alg"),
])
def test_registration_refuses_bad_jarm_metadata_and_stores_nothing(env, extra, field):
    before = _count(env.svc)
    resp = env.client().post(
        "/oauth2/register", headers={"Authorization": f"Bearer {initial_access_token(env)}"},
        json={"redirect_uris": [RP], **extra})
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == "invalid_client_metadata"
    assert resp.json["error_description"].startswith(field)
    assert _count(env.svc) == before


def test_registration_keeps_the_jarm_metadata(env):
    resp = env.client().post(
        "/oauth2/register", headers={"Authorization": f"Bearer {initial_access_token(env)}"},
        json={"redirect_uris": [RP], "authorization_signed_response_alg": "ES256",
              "authorization_encrypted_response_alg": "RSA-OAEP-256",
              "authorization_encrypted_response_enc": "A256GCM", "jwks": _public(RSA_ENC)})
    assert resp.status_code == 201, resp.json
    assert resp.json["authorization_signed_response_alg"] == "ES256"
    assert resp.json["authorization_encrypted_response_alg"] == "RSA-OAEP-256"
    assert resp.json["authorization_encrypted_response_enc"] == "A256GCM"


def test_admin_api_sets_and_refuses_the_jarm_metadata(jarm_env):
    app = jarm_env.app
    headers = {"Authorization": f"Bearer {service_token(app)}"}
    c = app.test_client()
    resp = c.patch("/api/v1/clients/jarm", headers=headers,
                   json={"metadata": {"authorization_signed_response_alg": "PS256"}})
    assert resp.status_code == 200, resp.json
    assert resp.json["metadata"]["authorization_signed_response_alg"] == "PS256"
    for bad in ({"authorization_signed_response_alg": "none"},
                {"authorization_encrypted_response_enc": "A128GCM"},
                {"authorization_encrypted_response_alg": "RSA-OAEP"}):  # no keys
        resp = c.patch("/api/v1/clients/jarm", headers=headers, json={"metadata": bad})
        assert resp.status_code in (400, 409), resp.json
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    with jarm_env.svc.sessions() as db:
        meta = db.get(Client, "jarm").meta
    assert meta["authorization_signed_response_alg"] == "PS256"
    assert "authorization_encrypted_response_alg" not in meta
    c.patch("/api/v1/clients/jarm", headers=headers,
            json={"metadata": {"authorization_signed_response_alg": None}})


def test_jarm_lifetime_setting_is_bounded():
    from idp.settings import ConfigError, load_settings

    assert load_settings({"oidc": {"jarm_lifetime": 600}}).oidc.jarm_lifetime == 600
    for bad in (601, 5):
        with pytest.raises(ConfigError, match="jarm_lifetime"):
            load_settings({"oidc": {"jarm_lifetime": bad}})


def test_a_failing_encryption_is_a_page_never_an_unencrypted_response(jarm_env, monkeypatch):
    from joserfc.errors import JoseError

    import idp.oidc.jarm as jarm

    def broken(*args, **kwargs):
        raise JoseError("test: the key refuses")

    c = _signed_in(jarm_env, "jarm-rsa")
    monkeypatch.setattr(jarm.jwe, "encrypt_compact", broken)
    resp = _request(c, "jarm-rsa", "query.jwt")
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "keys cannot be used" in resp.get_data(as_text=True)
