"""Certificate-bound access tokens (RFC 8705 §3) behind a TLS-terminating proxy: the client
certificate arrives URL-encoded in ``[mtls] client_cert_header`` (nginx's
``$ssl_client_escaped_cert``) and is believed only from ``[server] trusted_proxy_networks``.
Tokens of a client registered with ``tls_client_certificate_bound_access_tokens`` carry
``cnf["x5t#S256"]`` (computed here independently), and userinfo and the admin API accept them
only with the same certificate. mTLS client authentication (RFC 8705 §2): ``tls_client_auth``
by the registered subject DN or SAN DNS name, ``self_signed_tls_client_auth`` by a registered
key; every other certificate, none, or one from an untrusted peer is ``invalid_client``."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from dpop_client import claims_of
from jwt.algorithms import ECAlgorithm
from mtls_client import escaped, make_cert, x5t
from oidc_support import RP, authorize, build_env, initial_access_token
from sqlalchemy import func, select

HEADER = "X-SSL-Client-Cert"
UNTRUSTED = {"REMOTE_ADDR": "203.0.113.9"}
CERT, OTHER = make_cert("client"), make_cert("someone else")
SAN_CERT = make_cert("anything", san_dns="bank.example.org")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    with build_env(tmp_path_factory, {}, server={"trusted_proxy_networks": ["127.0.0.0/8"]},
                   mtls={"client_cert_header": HEADER}) as built:
        with built.svc.sessions.begin() as db:
            reg = ClientRegistry(db, built.svc.hasher, built.svc.sealer)
            bound = {"tls_client_certificate_bound_access_tokens": True}
            _, built.secrets["certc"] = reg.create(
                "certc", name="Cert service", grant_types=["client_credentials"],
                scope="admin", roles=["Administrator"], extra=bound)
            _, built.secrets["certweb"] = reg.create(
                "certweb", name="Cert web", redirect_uris=[RP], scope="openid profile",
                grant_types=["authorization_code", "refresh_token"], extra=bound)
            service = {"grant_types": ["client_credentials"], "scope": "api"}
            reg.create("tlsdn", auth_method="tls_client_auth", **service,
                       extra={"tls_client_auth_subject_dn": "CN=client"})
            reg.create("tlsdns", auth_method="tls_client_auth", **service,
                       extra={"tls_client_auth_san_dns": "bank.example.org"})
            own_key = ECAlgorithm.to_jwk(CERT.public_key(), as_dict=True)
            reg.create("selfsig", auth_method="self_signed_tls_client_auth", **service,
                       extra={"jwks": {"keys": [own_key]}})
        client_cache(built.svc).bump()
        yield built


def basic(env, client: str) -> str:
    raw = base64.b64encode(f"{client}:{env.secrets[client]}".encode()).decode()
    return f"Basic {raw}"


def issued_rows(env) -> int:
    from idp.storage.models import AuditEvent

    with env.svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action == "token.issued"))


def cert_token(c, env, cert=CERT, **kw):
    headers = {"Authorization": basic(env, "certc")}
    if cert is not None:
        headers[HEADER] = escaped(cert)
    return c.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"},
                  headers=headers, **kw)


def test_discovery_advertises_certificate_bound_tokens(env):
    doc = env.client().get("/.well-known/openid-configuration").json
    assert doc["tls_client_certificate_bound_access_tokens"] is True
    assert "mtls_endpoint_aliases" not in doc


def test_client_credentials_token_is_bound_to_the_certificate(env):
    c = env.client()
    resp = cert_token(c, env)
    assert resp.status_code == 200, resp.json
    assert resp.json["token_type"] == "Bearer"
    at = resp.json["access_token"]
    assert claims_of(at)["cnf"] == {"x5t#S256": x5t(CERT)}
    intro = c.post("/oauth2/introspect", data={"token": at},
                   headers={"Authorization": basic(env, "certc")}).json
    assert intro["active"] is True and intro["cnf"] == {"x5t#S256": x5t(CERT)}

    ok = c.get("/api/v1/users", headers={"Authorization": f"Bearer {at}",
                                         HEADER: escaped(CERT)})
    assert ok.status_code == 200
    for headers in ({HEADER: escaped(OTHER)}, {}):
        refused = c.get("/api/v1/users", headers={"Authorization": f"Bearer {at}", **headers})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # The right certificate from an address outside the proxies' networks is not believed.
    spoofed = c.get("/api/v1/users", headers={"Authorization": f"Bearer {at}",
                                              HEADER: escaped(CERT)}, environ_base=UNTRUSTED)
    assert spoofed.status_code == 401


@pytest.mark.parametrize("case", ["no_cert", "untrusted_peer", "garbage"])
def test_bound_client_without_a_believed_certificate_gets_nothing(env, case):
    c = env.client()
    issued = issued_rows(env)
    if case == "no_cert":
        resp = cert_token(c, env, cert=None)
    elif case == "untrusted_peer":
        resp = cert_token(c, env, environ_base=UNTRUSTED)
    else:
        resp = c.post("/oauth2/token", data={"grant_type": "client_credentials"},
                      headers={"Authorization": basic(env, "certc"),
                               HEADER: quote("-----BEGIN CERTIFICATE-----\nAAAA\n")})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"
    assert "access_token" not in resp.json
    assert issued_rows(env) == issued


def test_code_flow_token_is_bound_and_userinfo_checks_the_certificate(env):
    c = env.client()
    got = authorize(c, client_id="certweb", scope="openid profile")
    resp = c.post("/oauth2/token", data={"grant_type": "authorization_code",
                                         "code": got["code"], "redirect_uri": RP},
                  headers={"Authorization": basic(env, "certweb"), HEADER: escaped(CERT)})
    assert resp.status_code == 200, resp.json
    at = resp.json["access_token"]
    assert claims_of(at)["cnf"] == {"x5t#S256": x5t(CERT)}
    info = c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {at}",
                                              HEADER: escaped(CERT)})
    assert info.status_code == 200 and info.json["sub"]
    other = c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {at}",
                                               HEADER: escaped(OTHER)})
    assert other.status_code == 401 and "sub" not in other.json
    assert other.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_unbound_clients_ignore_the_certificate(env):
    c = env.client()
    resp = c.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"},
                  headers={"Authorization": basic(env, "svc"), HEADER: escaped(CERT)})
    assert resp.status_code == 200 and "cnf" not in claims_of(resp.json["access_token"])


def test_metadata_flag_must_be_boolean():
    from idp.core.client_metadata import MetadataError, check_client_metadata

    with pytest.raises(MetadataError) as err:
        check_client_metadata({"grant_types": ["client_credentials"],
                               "tls_client_certificate_bound_access_tokens": "true"})
    assert err.value.field == "tls_client_certificate_bound_access_tokens"


@pytest.mark.parametrize(("mtls", "server", "message"), [
    ({"client_cert_header": HEADER}, {}, "needs server.trusted_proxy_networks"),
    ({"client_cert_header": "X SSL"}, {"trusted_proxy_networks": ["10.0.0.0/8"]},
     "must be a header name"),
])
def test_settings_refuse_a_header_nobody_vouches_for(tmp_path, mtls, server, message):
    from idp.errors import ConfigError
    from idp.settings import load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings({"instance_dir": str(tmp_path), "mtls": mtls, "server": server})


# --- mTLS client authentication (RFC 8705 §2) ---------------------------------------------------

def tls_token(c, client_id: str, cert, **kw):
    headers = {HEADER: escaped(cert)} if cert is not None else {}
    return c.post("/oauth2/token", data={"grant_type": "client_credentials",
                                         "client_id": client_id}, headers=headers, **kw)


@pytest.mark.parametrize("client_id,cert", [("tlsdn", CERT), ("tlsdns", SAN_CERT),
                                            ("selfsig", CERT)])
def test_mtls_client_authentication(env, client_id, cert):
    """The registered subject DN, SAN DNS name or key authenticates; another certificate,
    none, or the right one from a peer outside the proxies' networks is invalid_client with
    nothing issued. No client secret exists for these clients."""
    c = env.client()
    ok = tls_token(c, client_id, cert)
    assert ok.status_code == 200, ok.json
    assert claims_of(ok.json["access_token"])["client_id"] == client_id
    issued = issued_rows(env)
    for bad, kw in ((OTHER, {}), (None, {}), (cert, {"environ_base": UNTRUSTED})):
        refused = tls_token(c, client_id, bad, **kw)
        assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
        assert "access_token" not in refused.json
    assert issued_rows(env) == issued
    with env.svc.sessions() as db:
        from idp.storage.models import Client

        assert db.get(Client, client_id).secret_hash is None


def test_mtls_client_authenticates_at_introspection(env):
    c = env.client()
    token = tls_token(c, "tlsdn", CERT).json["access_token"]
    answer = c.post("/oauth2/introspect", data={"token": token, "client_id": "tlsdn"},
                    headers={HEADER: escaped(CERT)})
    assert answer.status_code == 200 and answer.json["active"] is True
    refused = c.post("/oauth2/introspect", data={"token": token, "client_id": "tlsdn"},
                     headers={HEADER: escaped(OTHER)})
    assert refused.status_code == 401


def test_discovery_lists_mtls_client_auth_only_with_certificates(env):
    from idp.oidc.discovery import metadata

    doc = env.client().get("/.well-known/openid-configuration").json
    for member in ("token_endpoint_auth_methods_supported",
                   "introspection_endpoint_auth_methods_supported"):
        assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(doc[member])
    plain = metadata("https://idp.example.org")
    assert not {"tls_client_auth", "self_signed_tls_client_auth"} & set(
        plain["token_endpoint_auth_methods_supported"])


@pytest.mark.parametrize("meta,field", [
    ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=a",
      "tls_client_auth_san_dns": "a.example.org"}, "token_endpoint_auth_method"),
    ({"tls_client_auth_subject_dn": "CN=a"}, "tls_client_auth_subject_dn"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth"},
     "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": ""},
     "tls_client_auth_subject_dn"),
    ({"token_endpoint_auth_method": "tls_client_auth",
      "tls_client_auth_san_dns": "a\nb.example.org"}, "tls_client_auth_san_dns"),
])
def test_mtls_client_metadata_is_refused_naming_the_member(env, meta, field):
    from idp.storage.models import Client

    c = env.client()
    with env.svc.sessions() as db:
        before = db.scalar(select(func.count()).select_from(Client))
    body = {"grant_types": ["client_credentials"], "scope": "api", **meta}
    resp = c.post("/oauth2/register", json=body,
                  headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    assert resp.json["error_description"].startswith(field), resp.json
    with env.svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Client)) == before


def test_registered_tls_client_keeps_its_subject(env):
    c = env.client()
    made = c.post("/oauth2/register", json={
        "grant_types": ["client_credentials"], "scope": "api",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=client"},
        headers={"Authorization": f"Bearer {initial_access_token(env)}"})
    assert made.status_code == 201, made.json
    assert made.json["tls_client_auth_subject_dn"] == "CN=client"
    assert "client_secret" not in made.json
    assert tls_token(c, made.json["client_id"], CERT).status_code == 200
