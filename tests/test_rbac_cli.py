"""The identity CLI: assignments, composites, explanations, org and claim rules, each with
``--json``; refusals exit non-zero with one line and change nothing."""

from __future__ import annotations

import json

import pytest
from test_cli import fails, ok_json, snapshot

from idp.cli import main


@pytest.fixture
def initialised(monkeypatch, instance_dir, capsys):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    assert main(["init", "--admin-password", "pw-for-tests-0", "--json"]) == 0
    capsys.readouterr()
    return instance_dir


def test_assignment_commands_and_explain(initialised, capsys):
    ok_json(capsys, "users", "create", "--username", "ann", "--email", "ann@example.org")
    assert ok_json(capsys, "groups", "create", "staff")["path"] == "staff"
    assert ok_json(capsys, "groups", "create", "it", "--parent", "staff")["path"] == "staff/it"
    role = ok_json(capsys, "roles", "create", "Reader", "--permission", "users:*:read")
    assert role["permissions"] == ["users:*:read"]
    ok_json(capsys, "roles", "create", "Desk", "--permission", "users:password:reset")
    ok_json(capsys, "roles", "add-composite", "Desk", "Reader")
    ok_json(capsys, "roles", "add-permission", "Reader", "audit:log:read")
    ok_json(capsys, "groups", "add-role", "staff", "Desk")
    member = ok_json(capsys, "groups", "add-member", "staff/it", "ann", "--expires", "30d")
    assert member["expires_at"]
    out = ok_json(capsys, "users", "explain", "ann", "users:accounts:read")
    assert out["granted"] is True
    assert out["paths"] == [
        "member of group staff/it until " + member["expires_at"] + " (inside staff) -> role Desk "
        "-> includes role Reader -> users:*:read"
    ]
    perms = ok_json(capsys, "users", "permissions", "ann")
    assert perms["permissions"] == ["audit:log:read", "users:*:read", "users:password:reset"]
    claims = ok_json(capsys, "users", "claims", "ann", "--scope", "openid groups roles")
    assert claims["claims"] == {"groups": ["it"], "roles": ["Desk", "Reader"]}
    assert not ok_json(capsys, "users", "explain", "ann", "audit:export:run")["granted"]


def test_scoped_and_temporary_role_assignment(initialised, capsys):
    ok_json(capsys, "org", "company-create", "acme", "Acme", "--name-in", "de=Acme AG")
    eng = ok_json(capsys, "org", "department-create", "acme", "Engineering")
    plat = ok_json(
        capsys, "org", "department-create", "acme", "Platform", "--parent", str(eng["id"])
    )
    assert plat["path"] == f"/{eng['id']}/{plat['id']}/"
    ok_json(capsys, "org", "position-create", "acme", "Lead")
    ok_json(capsys, "users", "create", "--username", "lead", "--email", "lead@example.org")
    ok_json(
        capsys, "org", "place", "lead", "--department", "acme/Engineering", "--position", "Lead"
    )
    out = ok_json(
        capsys,
        "users",
        "add-role",
        "lead",
        "User Manager",
        "--scope-department",
        "acme/Engineering",
        "--expires",
        "2099-01-01T00:00:00+00:00",
    )
    assert out["scope_department_id"] == eng["id"]
    assert out["expires_at"] == "2099-01-01T00:00:00+00:00"
    perms = ok_json(capsys, "users", "permissions", "lead")
    assert perms["permissions"] == []
    assert {"permission": "users:*:*", "scope": "department", "scope_id": eng["id"]} in perms[
        "scoped"
    ]


def test_refusals_change_nothing(initialised, capsys):
    ok_json(capsys, "roles", "create", "A")
    ok_json(capsys, "roles", "create", "B")
    ok_json(capsys, "roles", "add-composite", "A", "B")
    ok_json(capsys, "users", "create", "--username", "ann", "--email", "ann@example.org")
    ok_json(capsys, "users", "add-role", "ann", "B")
    ok_json(capsys, "groups", "create", "top")
    ok_json(capsys, "groups", "create", "sub", "--parent", "top")
    ok_json(capsys, "org", "company-create", "acme", "Acme")
    ok_json(capsys, "org", "department-create", "acme", "Eng")
    ok_json(capsys, "org", "department-create", "acme", "Sub", "--parent", "acme/Eng")
    before = snapshot(initialised)
    assert "cycle" in fails(capsys, "roles", "add-composite", "B", "A")
    assert "cycle" in fails(capsys, "groups", "move", "top", "--parent", "top/sub")
    assert "cycle" in fails(
        capsys, "org", "department-move", "acme/Eng", "--parent", "acme/Eng/Sub"
    )
    err = fails(capsys, "roles", "delete", "B")
    assert "in use" in err and "ann" in err and "A" in err
    assert "registered" in fails(
        capsys,
        "claims",
        "add",
        json.dumps({"target": "sub", "source": {"type": "static", "value": "x"}}),
    )
    assert "template" in fails(
        capsys,
        "claims",
        "add",
        json.dumps(
            {"target": "x", "source": {"type": "template", "template": "{{ ''.__class__ }}"}}
        ),
    )
    assert "past" in fails(capsys, "users", "add-role", "ann", "A", "--expires", "2000-01-01")
    fails(capsys, "users", "add-role", "ann", "A", "--expires", "soon")
    fails(capsys, "roles", "add-permission", "A", "Bad:Perm")
    assert snapshot(initialised) == before
    # With --force the role goes, with what used it.
    out = ok_json(capsys, "roles", "delete", "B", "--force")
    assert out["was_used_by"]["users"] == ["ann"]


def test_claim_rule_commands(initialised, capsys):
    rules = ok_json(capsys, "claims", "list")["rules"]
    assert any(r["rule"].get("seed") == "email" for r in rules)
    rule = {"target": "department", "source": {"type": "department_path"}}
    rid = ok_json(capsys, "claims", "add", json.dumps(rule), "--scope", "org")["id"]
    assert any(r["id"] == rid for r in ok_json(capsys, "claims", "list")["rules"])
    ok_json(capsys, "claims", "delete", str(rid))
    assert not any(r["id"] == rid for r in ok_json(capsys, "claims", "list")["rules"])
