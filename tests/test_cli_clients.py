"""`idp clients update / show / list`: per-client OIDC settings, refused input changes nothing."""

from __future__ import annotations

import pytest
from test_cli import fails, ok_json, run, snapshot


@pytest.fixture
def idp_env(monkeypatch, instance_dir):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    return instance_dir


def test_update_show_and_list(idp_env, capsys):
    assert run(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")[0] == 0
    updated = ok_json(capsys, "clients", "update", "demo-app", "--access-token-format",
                      "opaque", "--no-refresh-rotation", "--id-token-alg", "ES256",
                      "--userinfo-alg", "RS256", "--access-token-lifetime", "120",
                      "--first-party")
    assert updated["access_token_format"] == "opaque"
    assert updated["refresh_token_rotation"] is False
    assert updated["id_token_signed_response_alg"] == "ES256"
    assert updated["userinfo_signed_response_alg"] == "RS256"
    assert updated["access_token_lifetime"] == 120 and updated["first_party"] is True
    shown = ok_json(capsys, "clients", "show", "demo-app")
    assert shown == updated
    assert not {"client_secret", "secret_hash", "secret_enc"} & set(shown)
    plain = ok_json(capsys, "clients", "update", "demo-app", "--userinfo-alg", "none")
    assert "userinfo_signed_response_alg" not in plain
    listed = ok_json(capsys, "clients", "list")
    assert [c["client_id"] for c in listed["clients"]] == ["demo-app"]


def test_refused_updates_change_nothing(idp_env, capsys):
    assert run(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")[0] == 0
    before = snapshot(idp_env)
    assert "no client" in fails(capsys, "clients", "update", "nope", "--name", "x", code=1)
    assert "nothing to change" in fails(capsys, "clients", "update", "demo-app", code=1)
    fails(capsys, "clients", "update", "demo-app", "--id-token-alg", "none", code=2)
    fails(capsys, "clients", "update", "demo-app", "--access-token-lifetime", "5", code=2)
    assert snapshot(idp_env) == before


def test_resource_servers_from_the_command_line(idp_env, capsys):
    """`--resource` (RFC 8707) on create and update; a fragment is refused and changes nothing."""
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0
    ok_json(capsys, "clients", "create", "--client-id", "svc", "--grant-type",
            "client_credentials", "--scope", "api", "--resource", "https://api.example.org/")
    assert ok_json(capsys, "clients", "show", "svc")["resources"] == ["https://api.example.org/"]
    before = snapshot(idp_env)
    assert "resources:" in fails(capsys, "clients", "update", "svc", "--resource",
                                 "https://api.example.org/#x", code=1)
    assert "resources:" in fails(capsys, "clients", "create", "--client-id", "svc2",
                                 "--grant-type", "client_credentials", "--resource", "/api",
                                 code=1)
    assert snapshot(idp_env) == before
    updated = ok_json(capsys, "clients", "update", "svc", "--resource", "https://a.example.org/",
                      "--resource", "urn:example:b")
    assert updated["resources"] == ["https://a.example.org/", "urn:example:b"]
    assert ok_json(capsys, "clients", "update", "svc", "--resource", "")["resources"] == []


def test_par_and_request_object_flags(idp_env, capsys):
    """RFC 9126 §6 / RFC 9101 §10.5 per-client requirements; HMAC for a client whose secret is
    not kept is refused and changes nothing."""
    assert run(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")[0] == 0
    updated = ok_json(capsys, "clients", "update", "demo-app", "--require-par",
                      "--require-signed-request-object", "--request-object-alg", "PS256")
    assert updated["require_pushed_authorization_requests"] is True
    assert updated["require_signed_request_object"] is True
    assert updated["request_object_signing_alg"] == "PS256"
    before = snapshot(idp_env)
    assert "request_object_signing_alg" in fails(
        capsys, "clients", "update", "demo-app", "--request-object-alg", "HS256", code=1)
    fails(capsys, "clients", "update", "demo-app", "--request-object-alg", "none", code=2)
    assert snapshot(idp_env) == before
    back = ok_json(capsys, "clients", "update", "demo-app", "--no-require-par")
    assert back["require_pushed_authorization_requests"] is False


def test_a_device_client_from_the_command_line(idp_env, capsys):
    """`--grant-type urn:ietf:params:oauth:grant-type:device_code` (RFC 8628), no redirect URI."""
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0
    device = "urn:ietf:params:oauth:grant-type:device_code"
    made = ok_json(capsys, "clients", "create", "--client-id", "tv", "--grant-type", device,
                   "--auth-method", "none", "--scope", "openid profile")
    assert "client_secret" not in made or made["client_secret"] is None
    assert ok_json(capsys, "clients", "show", "tv")["grant_types"] == [device]


def test_sender_constraint_flags(idp_env, capsys):
    """`--dpop-bound` (RFC 9449 §5.2) and `--cert-bound` (RFC 8705 §3.4) set the metadata the
    token endpoint enforces; `--no-...` clears them."""
    assert run(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")[0] == 0
    updated = ok_json(capsys, "clients", "update", "demo-app", "--dpop-bound", "--cert-bound")
    assert updated["dpop_bound_access_tokens"] is True
    assert updated["tls_client_certificate_bound_access_tokens"] is True
    cleared = ok_json(capsys, "clients", "update", "demo-app", "--no-dpop-bound")
    assert cleared["dpop_bound_access_tokens"] is False


def test_token_exchange_grant_and_policy_from_the_command_line(idp_env, capsys, monkeypatch):
    """`--grant-type` offers the RFC 8693 grant; `update --token-exchange JSON` sets the policy
    through the one validator ('' removes it); bad JSON or a bad policy changes nothing."""
    grant = "urn:ietf:params:oauth:grant-type:token-exchange"
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0
    made = ok_json(capsys, "clients", "create", "--client-id", "api", "--grant-type", grant,
                   "--scope", "openid email")
    policy = '{"accept_from": ["web"], "audiences": ["https://api.example.org/"], ' \
             '"delegation": true}'
    updated = ok_json(capsys, "clients", "update", "api", "--token-exchange", policy)
    assert updated["grant_types"] == [grant]
    assert updated["token_exchange"] == {"accept_from": ["web"], "delegation": True,
                                         "audiences": ["https://api.example.org/"]}
    before = snapshot(idp_env)
    assert "JSON object" in fails(capsys, "clients", "update", "api", "--token-exchange",
                                  "{nope", code=1)
    assert "token_exchange:" in fails(capsys, "clients", "update", "api", "--token-exchange",
                                      '{"delegation": "yes"}', code=1)
    assert snapshot(idp_env) == before
    # Config as code carries the policy: an export applied to itself changes nothing.
    code, exported, _err = run(capsys, "config", "export")
    assert code == 0 and "token_exchange:" in exported
    path = idp_env / "export.yaml"
    path.write_text(exported)
    monkeypatch.setenv("IDP_CLIENT_API_SECRET", made["client_secret"])
    assert ok_json(capsys, "config", "apply", str(path))["changed"] is False
    removed = ok_json(capsys, "clients", "update", "api", "--token-exchange", "")
    assert "token_exchange" not in removed


def test_fapi_profile_from_the_command_line(idp_env, capsys):
    """`--fapi-profile fapi2-security` (docs/oidc.md "FAPI 2.0 profile") on create and update;
    a client the profile forbids (a client secret, RS256) is refused naming the member and
    nothing changes; `--fapi-profile none` takes the profile off."""
    assert run(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")[0] == 0
    made = ok_json(capsys, "clients", "create", "--client-id", "bank", "--auth-method",
                   "private_key_jwt", "--jwks-uri", "https://bank.example.org/jwks",
                   "--redirect-uri", "https://bank.example.org/cb", "--fapi-profile",
                   "fapi2-security")
    assert "client_secret" not in made
    assert ok_json(capsys, "clients", "show", "bank")["fapi_profile"] == "fapi2-security"
    before = snapshot(idp_env)
    assert "token_endpoint_auth_method" in fails(
        capsys, "clients", "update", "demo-app", "--fapi-profile", "fapi2-security", code=1)
    assert "id_token_signed_response_alg" in fails(
        capsys, "clients", "update", "bank", "--id-token-alg", "RS256", code=1)
    assert "token_endpoint_auth_method" in fails(
        capsys, "clients", "create", "--client-id", "bank2", "--redirect-uri",
        "https://bank.example.org/cb", "--fapi-profile", "fapi2-security", code=1)
    fails(capsys, "clients", "update", "bank", "--fapi-profile", "fapi1", code=2)
    assert snapshot(idp_env) == before
    assert "fapi_profile" not in ok_json(capsys, "clients", "update", "bank",
                                         "--fapi-profile", "none")


def test_mtls_client_authentication_from_the_command_line(idp_env, capsys):
    """`--auth-method tls_client_auth --tls-subject-dn` (RFC 8705 §2.1.2); without a subject it is
    refused in one line naming the member, nothing stored."""
    assert run(capsys, "init", "--admin-password", "Admin-Password-123")[0] == 0
    made = ok_json(capsys, "clients", "create", "--client-id", "robot", "--grant-type",
                   "client_credentials", "--scope", "api", "--auth-method", "tls_client_auth",
                   "--tls-subject-dn", "CN=robot,O=Example")
    assert "client_secret" not in made
    shown = ok_json(capsys, "clients", "show", "robot")
    assert shown["tls_client_auth_subject_dn"] == "CN=robot,O=Example"
    before = snapshot(idp_env)
    assert "token_endpoint_auth_method" in fails(
        capsys, "clients", "create", "--client-id", "robot2", "--grant-type",
        "client_credentials", "--auth-method", "tls_client_auth", code=1)
    assert "token_endpoint_auth_method" in fails(
        capsys, "clients", "update", "robot", "--tls-san-dns", "robot.example.org", code=1)
    assert snapshot(idp_env) == before
    moved = ok_json(capsys, "clients", "update", "robot", "--tls-subject-dn", "",
                    "--tls-san-dns", "robot.example.org")
    assert moved["tls_client_auth_san_dns"] == "robot.example.org"
    assert "tls_client_auth_subject_dn" not in moved
