"""Configuration as code (`idp config export` / `idp config apply`): an export applied to a fresh
instance exports identically; applying twice changes nothing the second time; a dry run and
every refused file write nothing; secrets never reach the file; applied policies take effect in
an app built afterwards."""

from __future__ import annotations

import base64
import copy
import json
import os
import time
from pathlib import Path

import jwt as pyjwt
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from test_cli import fails, ok_json, run, snapshot

from idp.app import create_app
from idp.core.policy import check_password
from idp.errors import Forbidden
from idp.manage import Actor, transaction
from idp.manage.config_code import apply, parse
from idp.manage.config_code import export as export_document
from idp.services import build_services, load_effective_settings
from idp.storage.models import User
from idp.web.password_policy import password_policy

ADMIN = ["--admin-password", "Admin-Password-123"]
WEB_SECRET = "web-secret-" + "x" * 40
JWT_SECRET = "jwt-secret-" + "y" * 40
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def sp_metadata(entity_id: str, acs: str | None = None) -> str:
    return (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{entity_id}">\n'
        '  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
        '    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"'
        f' Location="{acs or entity_id + "/acs"}" index="0"/>\n'
        "  </md:SPSSODescriptor>\n"
        "</md:EntityDescriptor>"
    )


# A file that uses every kind of resource and most fields.
RICH = {
    "version": 1,
    "policies": {
        "password_policy": {"min_length": 14, "require_special": True},
        "lockout": {"max_failures": 3, "ip_delay_seconds": 1},
        "mfa": {"policies": ["group:staff/admins methods=totp,webauthn"], "remember_days": 7},
        "session": {"idle_minutes": 45},
    },
    "permission_groups": {
        "doc-readers": {"description": "Read documents", "permissions": ["app:documents:read"]},
    },
    "roles": {
        "viewer": {"description": "Views", "permission_groups": ["doc-readers"]},
        "editor": {"permissions": ["app:documents:*"], "includes": ["viewer"]},
        "chief": {"includes": ["editor", "web/publisher"]},
        "robot": {"permissions": ["users:accounts:read"]},
    },
    "groups": {
        "staff": {
            "description": "Everyone employed",
            "roles": ["viewer"],
            "groups": {"admins": {"roles": ["chief", "web/publisher"]}, "sales": {}},
        },
    },
    "clients": {
        "web": {
            "name": "Web shop",
            "client_secret": "${env:IDP_CLIENT_WEB_SECRET}",
            "first_party": True,
            "metadata": {
                "redirect_uris": ["https://shop.example.org/cb"],
                "grant_types": ["authorization_code", "refresh_token"],
                "scope": "openid profile email",
                "access_token_lifetime": 120,
                "require_pkce": True,
            },
            "roles": {"publisher": {"description": "Publishes", "permissions": ["shop:items:*"]}},
            "claim_rules": [
                {
                    "order": 5,
                    "scope": "profile",
                    "rule": {"target": "shop_groups", "source": {"type": "groups"}},
                },
            ],
        },
        "batch": {
            "client_secret": "${env:IDP_CLIENT_BATCH_SECRET}",
            "service_roles": ["robot"],
            "metadata": {
                "grant_types": ["client_credentials"],
                "scope": "api",
                "token_endpoint_auth_method": "client_secret_jwt",
            },
        },
        "spa": {
            "enabled": False,
            "metadata": {
                "redirect_uris": ["https://spa.example.org/cb"],
                "token_endpoint_auth_method": "none",
            },
        },
    },
    "saml_service_providers": {
        "https://wiki.example.org/sp": {
            "metadata": sp_metadata("https://wiki.example.org/sp"),
            "settings": {"name_id_format": "email", "attributes": ["mail"]},
            "claim_rules": [
                {
                    "scope": None,
                    "rule": {"saml_name": "urn:oid:2.5.4.11", "source": {"type": "department"}},
                },
            ],
        },
    },
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Two instance dirs, A (current) and B; secrets of the rich file in the environment."""
    monkeypatch.setenv("IDP_CLIENT_WEB_SECRET", WEB_SECRET)
    monkeypatch.setenv("IDP_CLIENT_BATCH_SECRET", JWT_SECRET)

    def use(name: str) -> Path:
        path = tmp_path / name
        path.mkdir(exist_ok=True)
        monkeypatch.setenv("IDP_INSTANCE_DIR", str(path))
        return path

    return use


@pytest.fixture
def inst(env, capsys) -> Path:
    path = env("a")
    assert run(capsys, "init", *ADMIN)[0] == 0
    return path


def write(tmp_path: Path, doc, name: str = "idp.yaml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def export(capsys) -> str:
    code, out, err = run(capsys, "config", "export")
    assert code == 0 and err == "", err
    return out


def apply_json(capsys, path: str, *extra: str) -> dict:
    return ok_json(capsys, "config", "apply", path, *extra)


def rows(instance: Path, sql: str) -> list:
    engine = create_engine(f"sqlite:///{instance / 'idp.db'}")
    with engine.connect() as conn:
        out = list(conn.execute(text(sql)))
    engine.dispose()
    return out


def audit_count(instance: Path) -> int:
    return rows(instance, "SELECT count(*) FROM audit_events")[0][0]


# --- round trips ---------------------------------------------------------------------------------


def test_export_applied_to_a_fresh_instance_exports_identically(env, capsys, tmp_path):
    """Instance A gets its configuration from commands and a file; its export, applied to a
    freshly initialised B, gives B the same configuration (B's export is the same text)."""
    env("a")
    assert run(capsys, "init", "--demo", *ADMIN)[0] == 0
    apply_json(capsys, write(tmp_path, RICH))
    # More made with the ordinary commands, outside any file.
    ok_json(capsys, "roles", "create", "auditor-lite", "--permission", "audit:log:read")
    ok_json(capsys, "groups", "add-role", "staff/engineering", "editor")
    ok_json(
        capsys,
        "clients",
        "update",
        "demo-app",
        "--id-token-alg",
        "ES256",
        "--access-token-format",
        "opaque",
    )
    first = export(capsys)
    assert "${env:IDP_CLIENT_DEMO_APP_SECRET}" in first
    env_secret = "demo-" + "z" * 40

    env("b")
    assert run(capsys, "init", *ADMIN)[0] == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IDP_CLIENT_DEMO_APP_SECRET", env_secret)
        result = apply_json(capsys, write(tmp_path, first, "a.yaml"))
    assert result["changed"] and result["summary"]["delete"] == 0
    second = export(capsys)
    assert second == first
    # And B really has the resources, not only the same text.
    b = tmp_path / "b"
    assert rows(b, "SELECT name FROM roles WHERE name = 'chief'") == [("chief",)]
    assert rows(b, "SELECT path FROM groups ORDER BY path")[-1] == ("staff/sales",)


def test_applying_the_same_file_twice_changes_nothing_the_second_time(inst, capsys, tmp_path):
    path = write(tmp_path, RICH)
    first = apply_json(capsys, path)
    assert first["changed"] is True and first["dry_run"] is False
    kinds = {(c["kind"], c["action"]) for c in first["changes"]}
    assert {
        ("policy", "update"),
        ("role", "create"),
        ("client", "create"),
        ("saml_sp", "create"),
        ("group", "create"),
        ("permission_group", "create"),
        ("claim_rules", "update"),
    } <= kinds
    audits, before = audit_count(inst), snapshot(inst)
    second = apply_json(capsys, path)
    assert second["changed"] is False and second["changes"] == []
    assert audit_count(inst) == audits
    assert snapshot(inst) == before
    # The text form says so too.
    code, out, err = run(capsys, "config", "apply", path)
    assert (code, err) == (0, "") and out.startswith("no changes\n")
    assert "5 not in the file and kept (--prune deletes them): role Administrator" in out


def test_an_export_applied_to_itself_changes_nothing(inst, capsys, tmp_path):
    apply_json(capsys, write(tmp_path, RICH))
    exported = write(tmp_path, export(capsys), "export.yaml")
    before = snapshot(inst)
    assert apply_json(capsys, exported)["changed"] is False
    assert snapshot(inst) == before


def test_the_diff_names_each_change_and_comes_before_the_summary(inst, capsys, tmp_path):
    apply_json(capsys, write(tmp_path, RICH))
    changed = copy.deepcopy(RICH)
    changed["roles"]["editor"]["permissions"] = ["app:documents:write"]
    changed["roles"]["robot"]["description"] = "Batch jobs"
    changed["clients"]["web"]["metadata"]["redirect_uris"].append("https://shop.example.org/cb2")
    changed["groups"]["staff"]["groups"]["admins"]["roles"] = ["chief"]
    changed["policies"]["password_policy"]["min_length"] = 16
    code, out, err = run(capsys, "config", "apply", write(tmp_path, changed))
    assert code == 0, err
    lines = out.splitlines()
    assert "~ role editor: permissions +app:documents:write -app:documents:*" in lines
    assert '~ role robot: description: null -> "Batch jobs"' in lines
    assert "~ group staff/admins: roles -web/publisher" in lines
    assert "~ policy password_policy.min_length: 14 -> 16" in lines
    assert any(line.startswith("~ client web: metadata.redirect_uris:") for line in lines)
    assert all(line.startswith("~ ") for line in lines[:5])
    assert lines[5] == "0 to create, 5 to update, 0 to delete: applied"
    assert lines[-1].startswith("policies changed")


def test_dry_run_prints_the_diff_and_writes_nothing(inst, capsys, tmp_path):
    before = snapshot(inst)
    result = apply_json(capsys, write(tmp_path, RICH), "--dry-run")
    assert result["dry_run"] is True and result["changed"] is True
    assert result["summary"]["create"] >= 10
    assert "generated_secrets" not in result
    assert snapshot(inst) == before
    code, out, _ = run(capsys, "config", "apply", write(tmp_path, RICH), "--dry-run")
    assert code == 0 and "to delete: dry run, nothing written\n" in out
    assert snapshot(inst) == before


# --- what is deleted -----------------------------------------------------------------------------


def test_only_prune_deletes_and_only_in_sections_of_the_file(inst, capsys, tmp_path):
    apply_json(capsys, write(tmp_path, RICH))
    smaller = yaml.safe_load(export(capsys))
    del smaller["roles"]["chief"]
    del smaller["groups"]["staff"]["groups"]["admins"]
    del smaller["clients"]["spa"]
    del smaller["clients"]["web"]["roles"]["publisher"]
    del smaller["saml_service_providers"]
    path = write(tmp_path, smaller)

    kept = apply_json(capsys, path)
    assert {(k["kind"], k["name"]) for k in kept["kept"]} == {
        ("role", "chief"),
        ("group", "staff/admins"),
        ("client", "spa"),
        ("role", "web/publisher"),
    }
    assert not [c for c in kept["changes"] if c["action"] == "delete"]
    assert rows(inst, "SELECT count(*) FROM roles WHERE name IN ('chief', 'publisher')") == [(2,)]

    pruned = apply_json(capsys, path, "--prune")
    deleted = {(c["kind"], c["name"]) for c in pruned["changes"] if c["action"] == "delete"}
    assert deleted == {
        ("role", "chief"),
        ("group", "staff/admins"),
        ("client", "spa"),
        ("role", "web/publisher"),
    }
    assert pruned["kept"] == []
    # The SAML section was left out of the file: its SP stays.
    assert rows(inst, "SELECT entity_id FROM saml_service_providers") == [
        ("https://wiki.example.org/sp",)
    ]
    assert rows(inst, "SELECT name FROM roles WHERE name IN ('chief', 'publisher')") == []
    assert rows(inst, "SELECT client_id FROM clients WHERE client_id = 'spa'") == []
    assert apply_json(capsys, path, "--prune")["changed"] is False


def test_prune_refuses_a_role_someone_holds_and_writes_nothing(inst, capsys, tmp_path):
    doc = {"version": 1, "roles": {}}
    before = snapshot(inst)
    err = fails(capsys, "config", "apply", write(tmp_path, doc), "--prune")
    assert "Administrator" in err and "in use" in err
    assert snapshot(inst) == before


def test_prune_refuses_a_group_with_members(inst, capsys, tmp_path):
    apply_json(capsys, write(tmp_path, RICH))
    ok_json(
        capsys,
        "users",
        "create",
        "--username",
        "ann",
        "--email",
        "ann@example.org",
        "--group",
        "staff/sales",
    )
    doc = copy.deepcopy(RICH)
    del doc["groups"]["staff"]["groups"]["sales"]
    before = snapshot(inst)
    err = fails(capsys, "config", "apply", write(tmp_path, doc), "--prune")
    assert "staff/sales" in err and "member" in err
    assert snapshot(inst) == before


# --- refused files -------------------------------------------------------------------------------


def _bad(mutate):
    doc = copy.deepcopy(RICH)
    mutate(doc)
    return doc


BAD_FILES = {
    "unknown key": (
        _bad(lambda d: d["roles"]["editor"].update(colour="red")),
        "roles.editor.colour: unknown key",
    ),
    "unknown top-level key": (_bad(lambda d: d.update(users={})), "users: unknown key"),
    "unknown client metadata": (
        _bad(lambda d: d["clients"]["web"]["metadata"].update(redirect_uri="https://x.org/")),
        "clients.web.metadata.redirect_uri: unknown client metadata key",
    ),
    "invalid redirect URI": (
        _bad(
            lambda d: d["clients"]["web"]["metadata"].update(
                redirect_uris=["http://evil.example/cb"]
            )
        ),
        "clients.web.metadata.redirect_uris:",
    ),
    "role cycle": (
        _bad(lambda d: d["roles"]["viewer"].update(includes=["chief"])),
        "includes: this would create a cycle",
    ),
    "unknown role reference": (
        _bad(lambda d: d["groups"]["staff"].update(roles=["nobody"])),
        "groups.staff.roles[0]: no role 'nobody'",
    ),
    "wrong type": (
        _bad(lambda d: d["clients"]["spa"].update(enabled="no")),
        "clients.spa.enabled:",
    ),
    "wrong metadata type": (
        _bad(lambda d: d["clients"]["web"]["metadata"].update(require_pkce="yes")),
        "clients.web.metadata.require_pkce: must be true or false",
    ),
    "a FAPI 2.0 client with a client secret": (
        _bad(lambda d: d["clients"]["web"]["metadata"].update(fapi_profile="fapi2-security")),
        "clients.web.metadata.token_endpoint_auth_method: the FAPI 2.0 profile allows only",
    ),
    "wrong policy type": (
        _bad(lambda d: d["policies"]["password_policy"].update(min_length="12")),
        "password_policy.min_length must be an integer",
    ),
    "policy out of range": (
        _bad(lambda d: d["policies"]["password_policy"].update(min_length=0)),
        "password_policy.min_length must be at least 1",
    ),
    "not a policy": (
        _bad(lambda d: d["policies"]["mfa"].update(sms_password="pw")),
        "policies.mfa.sms_password: not a policy setting",
    ),
    "literal secret": (
        _bad(lambda d: d["clients"]["web"].update(client_secret="hunter2")),
        "clients.web.client_secret: must be a reference",
    ),
    "missing env secret": (
        _bad(lambda d: d["clients"]["web"].update(client_secret="${env:IDP_CLIENT_NOPE}")),
        "clients.web.client_secret: the environment variable IDP_CLIENT_NOPE is not set",
    ),
    "bad permission": (
        _bad(lambda d: d["roles"]["robot"].update(permissions=["Users Read"])),
        "roles.robot.permissions:",
    ),
    "bad claim rule": (
        _bad(lambda d: d.update(claim_rules=[{"rule": {"target": "x", "source": {"type": "?"}}}])),
        "claim_rules[0].rule:",
    ),
    "group name with slash": (
        _bad(lambda d: d["groups"].update({"a/b": {}})),
        "groups.a/b: a group name",
    ),
    "SP metadata for another entity": (
        _bad(
            lambda d: d["saml_service_providers"]["https://wiki.example.org/sp"].update(
                metadata=sp_metadata("https://other.example.org/sp")
            )
        ),
        "saml_service_providers.https://wiki.example.org/sp.metadata: the metadata is for",
    ),
    # Refused only when the change is made (the SP registry's own check): everything the file
    # made before it is rolled back with it.
    "SP endpoint refused late": (
        _bad(
            lambda d: d["saml_service_providers"].update(
                {
                    "https://zz.example.org/sp": {
                        "metadata": sp_metadata(
                            "https://zz.example.org/sp", "http://zz.example.org/acs"
                        )
                    }
                }
            )
        ),
        "saml_service_providers.https://zz.example.org/sp:",
    ),
    "YAML syntax": ("version: 1\nroles:\n  editor: {permissions: [a\n", "not valid YAML: line"),
    "duplicate key": ("version: 1\nroles:\n  a: {}\n  a: {}\n", "key 'a' is given twice"),
    "not a mapping": ("- 1\n- 2\n", "must be a YAML mapping"),
    "wrong version": ("version: 2\n", "version: must be 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_fails_in_one_line_and_writes_nothing(inst, capsys, tmp_path, case):
    doc, expected = BAD_FILES[case]
    before = snapshot(inst)
    err = fails(capsys, "config", "apply", write(tmp_path, doc), code=1)
    assert expected in err, err
    assert snapshot(inst) == before


def test_the_environment_wins_over_an_applied_policy_so_apply_refuses(
    inst, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("IDP_PASSWORD_POLICY_MIN_LENGTH", "12")
    before = snapshot(inst)
    err = fails(capsys, "config", "apply", write(tmp_path, RICH))
    assert "IDP_PASSWORD_POLICY_MIN_LENGTH" in err and "policies.password_policy.min_length" in err
    assert snapshot(inst) == before
    same = _bad(lambda d: d["policies"]["password_policy"].update(min_length=12))
    assert apply_json(capsys, write(tmp_path, same))["changed"] is True


# --- secrets -------------------------------------------------------------------------------------


def test_the_export_holds_no_secret(inst, capsys, tmp_path, monkeypatch):
    made = ok_json(
        capsys,
        "clients",
        "create",
        "--client-id",
        "plain",
        "--redirect-uri",
        "https://plain.example.org/cb",
    )
    apply_json(capsys, write(tmp_path, RICH))
    monkeypatch.setenv("IDP_MFA_SMS_PASSWORD", "sms-gateway-password")
    exported = export(capsys)
    hashes = [h for (h,) in rows(inst, "SELECT secret_hash FROM clients") if h]
    sealed = [s for (s,) in rows(inst, "SELECT secret_enc FROM clients") if s]
    assert len(hashes) == 3 and len(sealed) == 1
    for secret in (
        made["client_secret"],
        WEB_SECRET,
        JWT_SECRET,
        "sms-gateway-password",
        *hashes,
        *sealed,
    ):
        assert secret not in exported
        assert base64.b64encode(secret.encode()).decode()[:20] not in exported
    doc = yaml.safe_load(exported)
    assert doc["clients"]["plain"]["client_secret"] == "${env:IDP_CLIENT_PLAIN_SECRET}"
    assert doc["clients"]["batch"]["client_secret"] == "${env:IDP_CLIENT_BATCH_SECRET}"
    assert "client_secret" not in doc["clients"]["spa"]
    assert "sms_password" not in doc["policies"]["mfa"]


def test_the_secret_from_the_environment_authenticates_the_client(
    inst, capsys, tmp_path, monkeypatch
):
    """batch uses client_secret_jwt: its HMAC assertions verify with the secret the file
    referred to, and with nothing else; a new value in the environment replaces it."""
    apply_json(capsys, write(tmp_path, RICH))

    def token(secret: str, jti: str) -> int:
        app = create_app({"logging": {"access_log": False}})
        issuer = app.extensions["idp"].settings.issuer
        now = int(time.time())
        assertion = pyjwt.encode(
            {
                "iss": "batch",
                "sub": "batch",
                "aud": f"{issuer}/oauth2/token",
                "jti": jti,
                "iat": now,
                "exp": now + 60,
            },
            secret,
            algorithm="HS256",
        )
        status = (
            app.test_client()
            .post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": assertion,
                },
            )
            .status_code
        )
        capsys.readouterr()  # the app's log lines, not output of the next command
        return status

    assert token(JWT_SECRET, "a") == 200
    assert token("w" * 50, "b") == 401
    monkeypatch.setenv("IDP_CLIENT_BATCH_SECRET", "n" * 48)
    result = apply_json(capsys, write(tmp_path, RICH))
    assert [(c["name"], c["details"][0]["field"]) for c in result["changes"]] == [
        ("batch", "client_secret")
    ]
    assert "n" * 48 not in json.dumps(result)
    assert token(JWT_SECRET, "c") == 401
    assert token("n" * 48, "d") == 200


def test_a_client_without_a_secret_reference_keeps_its_secret(inst, capsys, tmp_path):
    made = ok_json(
        capsys,
        "clients",
        "create",
        "--client-id",
        "keep",
        "--redirect-uri",
        "https://keep.example.org/cb",
    )
    before = rows(inst, "SELECT secret_hash FROM clients WHERE client_id = 'keep'")
    doc = yaml.safe_load(export(capsys))
    del doc["clients"]["keep"]["client_secret"]
    doc["clients"]["keep"]["name"] = "Kept"
    result = apply_json(capsys, write(tmp_path, doc))
    assert [c["name"] for c in result["changes"]] == ["keep"]
    assert rows(inst, "SELECT secret_hash FROM clients WHERE client_id = 'keep'") == before
    assert made["client_secret"]


def test_a_new_client_without_a_reference_gets_a_generated_secret_shown_once(
    inst, capsys, tmp_path
):
    doc = {
        "version": 1,
        "clients": {"new": {"metadata": {"redirect_uris": ["https://new.example.org/cb"]}}},
    }
    result = apply_json(capsys, write(tmp_path, doc))
    secret = result["generated_secrets"]["new"]
    assert len(secret) >= 32
    assert apply_json(capsys, write(tmp_path, doc))["changed"] is False


# --- policies ------------------------------------------------------------------------------------


def test_applied_policies_round_trip_and_rule_an_app_built_afterwards(inst, capsys, tmp_path):
    apply_json(capsys, write(tmp_path, RICH))
    policies = yaml.safe_load(export(capsys))["policies"]
    assert policies["password_policy"]["min_length"] == 14
    assert policies["password_policy"]["require_special"] is True
    assert policies["lockout"]["ip_delay_seconds"] == 1.0
    assert policies["mfa"]["policies"] == ["group:staff/admins methods=totp,webauthn"]
    assert policies["session"] == {
        "idle_minutes": 45,
        "max_hours": 10,
        "remember_me_days": 30,
        "max_per_user": 0,
        "limit_action": "end_oldest",
        "limit_help_url": "",
    }

    app = create_app({"logging": {"access_log": False}})
    settings = app.extensions["idp"].settings
    assert settings.password_policy.min_length == 14
    assert settings.lockout.max_failures == 3
    assert settings.session.idle_minutes == 45
    with app.app_context():
        policy = password_policy()  # what the password pages check against
    assert [v.code for v in check_password(policy, "Abcdefgh12!x")] == ["min_length"]
    assert check_password(policy, "Abcdefgh12!xyz") == []
    # Back to the TOML file's value: the stored value goes, the default applies again.
    back = _bad(lambda d: d["policies"]["password_policy"].update(min_length=10))
    result = apply_json(capsys, write(tmp_path, back))
    assert [c["name"] for c in result["changes"]] == ["password_policy.min_length"]
    assert ("password_policy", "min_length") not in {
        tuple(r) for r in rows(inst, "SELECT section, key FROM applied_settings")
    }
    assert (
        create_app({"logging": {"access_log": False}})
        .extensions["idp"]
        .settings.password_policy.min_length
        == 10
    )


# --- federation-managed SPs ----------------------------------------------------------------------


def test_federation_service_providers_are_skipped_and_never_pruned(inst, capsys, tmp_path):
    from idp.saml.registry import SpRegistry

    svc = build_services(load_effective_settings())
    with svc.sessions.begin() as db:
        SpRegistry(db).add(sp_metadata("https://fed.example.org/sp"), origin="federation:edu")
    svc.engine.dispose()
    exported = export(capsys)
    assert "https://fed.example.org/sp" not in yaml.safe_load(exported)["saml_service_providers"]
    assert "federation 'edu'" in exported.split("version:")[0]  # a comment says why

    doc = {"version": 1, "saml_service_providers": {}}
    assert apply_json(capsys, write(tmp_path, doc), "--prune")["changed"] is False
    listed = copy.deepcopy(doc)
    listed["saml_service_providers"]["https://fed.example.org/sp"] = {
        "metadata": sp_metadata("https://fed.example.org/sp")
    }
    err = fails(capsys, "config", "apply", write(tmp_path, listed))
    assert "federation 'edu' manages this service provider" in err


def test_the_file_must_exist(inst, capsys, tmp_path):
    assert "does not exist" in fails(capsys, "config", "apply", str(tmp_path / "nope.yaml"))


def test_audit_rows_record_each_change_and_the_apply(inst, capsys, tmp_path):
    before = audit_count(inst)
    result = apply_json(capsys, write(tmp_path, RICH))
    actions = [a for (a,) in rows(inst, "SELECT action FROM audit_events ORDER BY id")][before:]
    assert actions[-1] == "config.applied"
    assert {
        "role.created",
        "client.created",
        "client.secret_set",
        "saml.sp_added",
        "group.created",
        "permission_group.created",
        "config.policy_set",
        "claims.rule_added",
        "role.composite_added",
    } <= set(actions)
    assert len(actions) > len(result["changes"])
    engine = create_engine(f"sqlite:///{inst / 'idp.db'}")
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(text("applied_settings"))).scalar()
    engine.dispose()
    assert n == 7  # one row per policy key the file sets away from the defaults


def test_the_documented_example_applies(inst, capsys, tmp_path, monkeypatch):
    """docs/configuration.md's example file is a valid file: applied, then nothing to change."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    example = docs.split("<!-- config-as-code:example -->\n```yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("IDP_CLIENT_SHOP_SECRET", "s" * 40)
    path = write(tmp_path, example)
    first = apply_json(capsys, path)
    assert first["changed"] and not [c for c in first["changes"] if c["action"] == "delete"]
    assert apply_json(capsys, path)["changed"] is False


def test_updates_of_every_kind_converge(inst, capsys, tmp_path):
    """A second file changing something of every kind: applied, the IdP says what it says (an
    export gives its values back), and applying it again changes nothing."""
    apply_json(capsys, write(tmp_path, RICH))
    doc = copy.deepcopy(RICH)
    doc["policies"]["mfa"]["policies"] = []
    doc["permission_groups"]["doc-readers"]["permissions"] = ["app:documents:list"]
    doc["roles"]["viewer"]["permission_groups"] = []
    doc["roles"]["chief"]["includes"] = ["viewer"]
    doc["groups"]["staff"]["description"] = None
    web = doc["clients"]["web"]
    web["name"] = "Shop"
    web["first_party"] = False
    del web["metadata"]["require_pkce"]
    web["metadata"]["post_logout_redirect_uris"] = ["https://shop.example.org/bye"]
    web["roles"]["publisher"]["permissions"] = ["shop:items:publish"]
    web["claim_rules"] = []
    doc["clients"]["batch"]["service_roles"] = ["viewer"]
    doc["clients"]["spa"]["enabled"] = True
    sp = doc["saml_service_providers"]["https://wiki.example.org/sp"]
    sp["metadata"] = sp_metadata("https://wiki.example.org/sp", "https://wiki.example.org/new-acs")
    sp["settings"] = {"name_id_format": "persistent"}
    sp["claim_rules"][0]["enabled"] = False
    path = write(tmp_path, doc)
    result = apply_json(capsys, path)
    changed = {(c["kind"], c["name"]) for c in result["changes"]}
    assert changed == {
        ("policy", "mfa.policies"),
        ("permission_group", "doc-readers"),
        ("role", "viewer"),
        ("role", "chief"),
        ("group", "staff"),
        ("client", "web"),
        ("role", "web/publisher"),
        ("claim_rules", "client web"),
        ("client", "batch"),
        ("client", "spa"),
        ("saml_sp", "https://wiki.example.org/sp"),
        ("claim_rules", "saml_sp https://wiki.example.org/sp"),
    }
    assert {c["action"] for c in result["changes"]} == {"update"}
    assert apply_json(capsys, path)["changed"] is False

    now = yaml.safe_load(export(capsys))
    assert now["permission_groups"]["doc-readers"]["permissions"] == ["app:documents:list"]
    assert now["roles"]["viewer"]["permission_groups"] == []
    assert now["roles"]["chief"]["includes"] == ["viewer"]
    shop = now["clients"]["web"]
    assert (shop["name"], shop["first_party"], shop["claim_rules"]) == ("Shop", False, [])
    assert "require_pkce" not in shop["metadata"]
    assert shop["metadata"]["post_logout_redirect_uris"] == ["https://shop.example.org/bye"]
    assert now["clients"]["batch"]["service_roles"] == ["viewer"]
    assert now["clients"]["spa"]["enabled"] is True
    wiki = now["saml_service_providers"]["https://wiki.example.org/sp"]
    assert "new-acs" in wiki["metadata"] and wiki["settings"] == {"name_id_format": "persistent"}
    assert [r["enabled"] for r in wiki["claim_rules"]] == [False]
    assert now["policies"]["mfa"]["policies"] == []
    # The composites left are editor -> viewer and chief -> viewer.
    assert rows(inst, "SELECT count(*) FROM role_composites") == [(2,)]


def test_export_and_apply_check_the_actors_permissions(inst, capsys, tmp_path, monkeypatch):
    """Through the service layer as an administrator who may read everything and change
    nothing: the export works, the apply is refused at its first change, nothing written."""
    ok_json(
        capsys,
        "users",
        "create",
        "--username",
        "ro",
        "--email",
        "ro@example.org",
        "--role",
        "Read-only",
    )
    svc = build_services(load_effective_settings())
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == "ro"))
    actor = Actor.user(user.id, user.uuid)
    with transaction(svc, actor) as ctx:
        assert export_document(ctx, os.environ)["roles"]["Read-only"]["permissions"] == [
            "*:*:read",
            "console:admin:access",
            "oauth:scope:admin",
        ]
    before = snapshot(inst)
    with pytest.raises(Forbidden) as refused, transaction(svc, actor) as ctx:
        apply(ctx, parse(RICH), environ=os.environ)
    assert "config:policies:update" in str(refused.value)
    assert snapshot(inst) == before
    svc.engine.dispose()


def test_on_postgresql_applying_twice_changes_nothing_and_policies_are_read_at_start(
    env, capsys, tmp_path, monkeypatch, pg_url
):
    env("pg")
    monkeypatch.setenv("IDP_DATABASE_URL", pg_url)
    assert run(capsys, "init", *ADMIN)[0] == 0
    assert apply_json(capsys, write(tmp_path, RICH))["changed"] is True
    exported = write(tmp_path, export(capsys), "export.yaml")
    assert apply_json(capsys, exported)["changed"] is False
    assert apply_json(capsys, write(tmp_path, RICH))["changed"] is False
    app = create_app({"logging": {"access_log": False}})
    assert app.extensions["idp"].settings.password_policy.min_length == 14
    app.extensions["idp"].engine.dispose()
