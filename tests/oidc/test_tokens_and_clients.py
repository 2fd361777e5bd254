"""Refresh tokens (RFC 6749 §6, rotation and reuse detection per RFC 9700 §4.14), client
authentication (RFC 6749 §2.3, RFC 7523 §2.2), client credentials with service-account
scopes, userinfo (OIDC Core §5.3), introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import base64
import time
import uuid

import jwt as pyjwt
from joserfc import jwt as jose_jwt
from joserfc.jwk import OctKey, RSAKey
from oidc_support import RP, authorize, login, token

from idp.storage.models_oauth import RefreshToken

TOKEN_URL = "http://127.0.0.1:5000/oauth2/token"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _tokens(env, client_id="web", scope="openid profile offline_access"):
    c = env.client()
    got = authorize(c, client_id=client_id, scope=scope)
    resp = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=(client_id, env.secrets[client_id]))
    assert resp.status_code == 200, resp.json
    return c, resp.json


def _basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(
        f"{client_id}:{secret}".encode()).decode()}


# --- refresh tokens ------------------------------------------------------------------------

def test_refresh_rotates_and_reuse_revokes_the_family(env):
    c, first = _tokens(env)
    second = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                   auth=("web", env.secrets["web"])).json
    assert second["refresh_token"] != first["refresh_token"]
    assert pyjwt.decode(second["id_token"], options={"verify_signature": False})["sub"]
    # The rotated-out token comes back: an attacker has it. The whole family dies.
    reuse = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                  auth=("web", env.secrets["web"]))
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    latest = token(c, {"grant_type": "refresh_token",
                       "refresh_token": second["refresh_token"]},
                   auth=("web", env.secrets["web"]))
    assert latest.json["error"] == "invalid_grant"
    assert c.get("/oauth2/userinfo", headers={
        "Authorization": f"Bearer {second['access_token']}"}).status_code == 401


def test_refresh_without_rotation_keeps_the_token_and_is_client_bound(env):
    c, first = _tokens(env, "fapi")
    again = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                  auth=("fapi", env.secrets["fapi"])).json
    assert again["refresh_token"] == first["refresh_token"]
    # Opaque access token and ES256 ID token for this client.
    assert again["access_token"].count(".") == 0
    assert pyjwt.get_unverified_header(again["id_token"])["alg"] == "ES256"
    stolen = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                   auth=("web", env.secrets["web"]))
    assert stolen.json["error"] == "invalid_grant"


def test_refresh_cannot_widen_scope(env):
    c, first = _tokens(env, scope="openid offline_access")
    wider = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                      "scope": "openid email offline_access"},
                  auth=("web", env.secrets["web"]))
    assert wider.json["error"] == "invalid_scope"


def test_online_refresh_token_dies_with_the_sso_session(env):
    c, first = _tokens(env, scope="openid profile")
    page = c.get("/logout")
    import re

    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    c.post("/logout", data={"csrf_token": csrf.group(1)})
    resp = token(c, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                 auth=("web", env.secrets["web"]))
    assert resp.json["error"] == "invalid_grant"


# --- client authentication -----------------------------------------------------------------

def test_client_secret_post_and_basic(env):
    c = env.client()
    post = c.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": "svc",
                                         "client_secret": env.secrets["svc"], "scope": "api"})
    assert post.status_code == 401  # svc is registered for client_secret_basic only
    basic = token(c, {"grant_type": "client_credentials", "scope": "api"},
                  auth=("svc", env.secrets["svc"]))
    assert basic.status_code == 200 and basic.json["scope"] == "api"


def _assertion(key, client_id: str, alg: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "iat": now,
              "exp": now + 60, "jti": str(uuid.uuid4())}
    claims.update(overrides)
    header = {"alg": alg}
    if isinstance(key, RSAKey):
        header["kid"] = key.kid
    return jose_jwt.encode(header, claims, key, algorithms=[alg])


def _cc(c, assertion: str):
    return c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                         "client_assertion_type": ASSERTION,
                                         "client_assertion": assertion})


def test_private_key_jwt_accepts_a_good_assertion_once(env):
    c = env.client()
    good = _assertion(env.rp_key, "jwtc", "RS256")
    assert _cc(c, good).status_code == 200
    replay = _cc(c, good)  # same jti
    assert replay.status_code == 401 and replay.json["error"] == "invalid_client"
    issuer_aud = _assertion(env.rp_key, "jwtc", "PS256", aud="http://127.0.0.1:5000")
    assert _cc(c, issuer_aud).status_code == 200


def _hs256_with(secret: bytes, claims: dict) -> str:
    """The key-confusion attack: HMAC keyed with the client's public key (joserfc itself
    refuses to build this, so it is built by hand)."""
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = b64(b'{"alg":"HS256"}') + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def test_private_key_jwt_hostile_assertions(env):
    c = env.client()
    now = int(time.time())
    other = RSAKey.generate_key(2048, parameters={"kid": "rp-1"})
    public_pem = env.rp_key.as_pem(private=False)
    cases = {
        "alg none": "eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(
            f'{{"iss":"jwtc","sub":"jwtc","aud":"{TOKEN_URL}","exp":{now + 60},'
            f'"jti":"x1"}}'.encode()).decode().rstrip("=") + ".",
        "HS256 keyed with the public key": _hs256_with(public_pem, {
            "iss": "jwtc", "sub": "jwtc", "aud": TOKEN_URL, "exp": now + 60, "jti": "x2"}),
        "signed by another key": _assertion(other, "jwtc", "RS256"),
        "expired": _assertion(env.rp_key, "jwtc", "RS256", exp=now - 120, iat=now - 180),
        "future iat": _assertion(env.rp_key, "jwtc", "RS256", iat=now + 600, exp=now + 660),
        "lives too long": _assertion(env.rp_key, "jwtc", "RS256", exp=now + 86400),
        "wrong audience": _assertion(env.rp_key, "jwtc", "RS256", aud="https://evil.example"),
        "iss differs from sub": _assertion(env.rp_key, "jwtc", "RS256", iss="svc"),
        "no jti": _assertion(env.rp_key, "jwtc", "RS256", jti=None),
    }
    for name, assertion in cases.items():
        resp = _cc(c, assertion)
        assert resp.status_code == 401, name
        assert resp.json["error"] == "invalid_client", name


def test_client_secret_jwt(env):
    c = env.client()
    key = OctKey.import_key(env.secrets["hsc"])
    assert _cc(c, _assertion(key, "hsc", "HS256")).status_code == 200
    wrong = OctKey.import_key("not-the-secret-" + "x" * 40)
    assert _cc(c, _assertion(wrong, "hsc", "HS256")).status_code == 401


# --- client credentials and service-account scopes -----------------------------------------

def test_admin_scope_only_for_service_accounts_holding_it(env):
    c = env.client()
    granted = token(c, {"grant_type": "client_credentials", "scope": "admin api"},
                    auth=("svc", env.secrets["svc"])).json
    assert set(granted["scope"].split()) == {"admin", "api"}
    claims = pyjwt.decode(granted["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "svc" and claims["client_id"] == "svc"
    refused = token(c, {"grant_type": "client_credentials", "scope": "admin"},
                    auth=("plain", env.secrets["plain"]))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_scope"
    partial = token(c, {"grant_type": "client_credentials", "scope": "admin api"},
                    auth=("plain", env.secrets["plain"])).json
    assert partial["scope"] == "api"


def test_user_without_permission_does_not_get_admin_scope(env):
    c = env.client()
    got = authorize(c, scope="openid admin")
    body = token(c, {"grant_type": "authorization_code", "code": got["code"],
                     "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    assert "admin" not in body["scope"].split()


# --- userinfo, introspection, revocation ---------------------------------------------------

def test_userinfo_transport_rules(env):
    c, body = _tokens(env, scope="openid email")
    at = body["access_token"]
    assert c.post("/oauth2/userinfo", data={"access_token": at}).status_code == 200
    assert c.post("/oauth2/userinfo", headers={"Authorization": f"Bearer {at}"}
                  ).status_code == 200
    both = c.post("/oauth2/userinfo", data={"access_token": at},
                  headers={"Authorization": f"Bearer {at}"})
    assert both.status_code == 400
    in_url = c.get(f"/oauth2/userinfo?access_token={at}")
    assert in_url.status_code == 400
    missing = c.get("/oauth2/userinfo")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    garbage = c.get("/oauth2/userinfo", headers={"Authorization": "Bearer abc.def.ghi"})
    assert garbage.status_code == 401 and 'error="invalid_token"' in garbage.headers[
        "WWW-Authenticate"]
    service = token(c, {"grant_type": "client_credentials", "scope": "api"},
                    auth=("svc", env.secrets["svc"])).json["access_token"]
    assert c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {service}"}
                 ).status_code == 403


def test_introspection_and_revocation(env):
    c, body = _tokens(env)
    at, rt = body["access_token"], body["refresh_token"]
    auth = _basic("web", env.secrets["web"])
    active = c.post("/oauth2/introspect", data={"token": at}, headers=auth).json
    assert active["active"] is True and active["client_id"] == "web" and active["sub"]
    rt_info = c.post("/oauth2/introspect", data={"token": rt}, headers=auth).json
    assert rt_info["active"] is True and rt_info["token_type"] == "refresh_token"
    # Another client without the introspection permission learns nothing.
    other = c.post("/oauth2/introspect", data={"token": at},
                   headers=_basic("web2", env.secrets["web2"])).json
    assert other == {"active": False}
    unauth = c.post("/oauth2/introspect", data={"token": at})
    assert unauth.status_code == 401
    # Revocation by another client is a silent no-op; by the owner it works.
    assert c.post("/oauth2/revoke", data={"token": at},
                  headers=_basic("web2", env.secrets["web2"])).status_code == 200
    assert c.post("/oauth2/introspect", data={"token": at}, headers=auth).json["active"]
    assert c.post("/oauth2/revoke", data={"token": at}, headers=auth).status_code == 200
    assert c.post("/oauth2/introspect", data={"token": at}, headers=auth).json == {
        "active": False}
    assert c.post("/oauth2/revoke", data={"token": rt, "token_type_hint": "refresh_token"},
                  headers=auth).status_code == 200
    with env.svc.sessions() as db:
        row = db.query(RefreshToken).filter_by(client_id="web", revoked=False).count()
    assert token(c, {"grant_type": "refresh_token", "refresh_token": rt},
                 auth=("web", env.secrets["web"])).json["error"] == "invalid_grant"
    assert row >= 0
    bad_hint = c.post("/oauth2/revoke", data={"token": rt, "token_type_hint": "cookie"},
                      headers=auth)
    assert bad_hint.status_code == 400 and bad_hint.json["error"] == "unsupported_token_type"


def test_consent_is_remembered_and_withdrawal_ends_offline_tokens(env):
    from idp.oidc.authorize import list_consents, withdraw_consent
    from idp.storage.models import User

    c = env.client()
    login(c)
    _, body = _tokens(env, scope="openid offline_access")
    with env.svc.sessions() as db:
        alice = db.query(User).filter_by(username="alice").one()
    listed = list_consents(env.svc, alice)
    assert any(item["key"] == "web" for item in listed)
    withdraw_consent(env.svc, alice, "web")
    assert not any(item["key"] == "web" for item in list_consents(env.svc, alice))
    assert token(env.client(), {"grant_type": "refresh_token",
                                "refresh_token": body["refresh_token"]},
                 auth=("web", env.secrets["web"])).json["error"] == "invalid_grant"
