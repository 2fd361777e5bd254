"""Certificate-bound access tokens (RFC 8705 §3) behind a TLS-terminating proxy: the client
certificate arrives URL-encoded in ``[mtls] client_cert_header`` (nginx's
``$ssl_client_escaped_cert``) and is believed only from ``[server] trusted_proxy_networks``.
Tokens of a client registered with ``tls_client_certificate_bound_access_tokens`` carry
``cnf["x5t#S256"]`` (computed here independently), and userinfo and the admin API accept them
only with the same certificate."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from dpop_client import claims_of
from mtls_client import escaped, make_cert, x5t
from oidc_support import RP, authorize, build_env
from sqlalchemy import func, select

HEADER = "X-SSL-Client-Cert"
UNTRUSTED = {"REMOTE_ADDR": "203.0.113.9"}
CERT, OTHER = make_cert("client"), make_cert("someone else")


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
