"""The OIDC engine tests' app: one per module, with users and clients."""

from __future__ import annotations

import pytest
from joserfc.jwk import RSAKey
from oidc_support import PASSWORD, RP, Env
from support import base_overrides, init_database


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from idp.app import create_app
    from idp.backends.chain import password_hasher
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    instance = tmp_path_factory.mktemp("oidc") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    hasher = password_hasher(svc)
    rp_key = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "use": "sig"})
    made: dict[str, str] = {}
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_group("staff")
        d.create_group("engineering", "staff")
        d.create_role("editor", ["app:documents:*"])
        alice = d.create_user(NewUser(username="alice", email="alice@example.org",
                                      given_name="Alice", family_name="Adams",
                                      password_hash=hasher.hash(PASSWORD)),
                              groups=["staff/engineering"], roles=["editor"])
        alice.email_verified = True
        d.create_user(NewUser(username="bob", email="bob@example.org", given_name="Bob",
                              password_hash=hasher.hash(PASSWORD)))
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        scope = "openid profile email phone address groups roles offline_access"
        _, made["web"] = reg.create(
            "web", name="Web App", redirect_uris=[RP, "http://127.0.0.1:9999/cb",
                                                  "https://rp.example.org/cb?x=1"],
            grant_types=["authorization_code", "refresh_token"], scope=scope,
            post_logout_redirect_uris=["https://rp.example.org/bye"])
        _, made["web2"] = reg.create(
            "web2", name="Other App", redirect_uris=["https://other.example.org/cb"],
            grant_types=["authorization_code", "refresh_token"], scope=scope)
        reg.create("spa", name="Single Page", redirect_uris=["https://spa.example.org/cb"],
                   grant_types=["authorization_code", "refresh_token"], auth_method="none",
                   scope=scope)
        _, made["fapi"] = reg.create(
            "fapi", name="No Rotation", redirect_uris=[RP],
            grant_types=["authorization_code", "refresh_token"], scope=scope,
            extra={"refresh_token_rotation": False, "access_token_format": "opaque",
                   "id_token_signed_response_alg": "ES256"})
        _, made["svc"] = reg.create("svc", name="Service", grant_types=["client_credentials"],
                                    scope="admin scim api", roles=["Administrator"],
                                    extra={"resources": ["https://api.example.org/"]})
        _, made["plain"] = reg.create("plain", name="Plain service",
                                      grant_types=["client_credentials"], scope="admin api")
        reg.create("jwtc", name="Key client", grant_types=["client_credentials"],
                   auth_method="private_key_jwt", scope="api",
                   extra={"jwks": {"keys": [rp_key.as_dict(private=False)]}})
        _, made["hsc"] = reg.create("hsc", name="HMAC client",
                                    grant_types=["client_credentials"],
                                    auth_method="client_secret_jwt", scope="api")
        _, made["two"] = reg.create(
            "two", name="Two URIs", redirect_uris=[RP, "https://rp.example.org/other"],
            grant_types=["authorization_code"], scope="openid")
    yield Env(app, svc, made, rp_key)
    svc.engine.dispose()
