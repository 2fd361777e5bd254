"""``idp ip-rules show`` / ``set`` for a role, a client role, a group, a client, an SP and the
global rules: canonical lists, audited; bad entries, unknown or several scopes, an environment
that sets the global rules: one line on stderr, a non-zero exit, no row changed."""

from __future__ import annotations

import json

import pytest
from ip_rules_kit import sp_metadata
from test_cli import fails, ok_json, run, snapshot

from idp.cli import main

SP = "https://wiki.example.org/sp"


@pytest.fixture
def initialised(monkeypatch, instance_dir, capsys, tmp_path):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    assert main(["init", "--admin-password", "pw-for-tests-0", "--json"]) == 0
    metadata = tmp_path / "sp.xml"
    metadata.write_text(sp_metadata(SP))
    for args in [
        ["roles", "create", "Contractor"],
        ["groups", "create", "staff"],
        ["groups", "create", "it", "--parent", "staff"],
        ["clients", "create", "--client-id", "web", "--redirect-uri", "https://rp.example.org/cb"],
        ["saml", "sp", "add", "--metadata", str(metadata)],
    ]:
        assert main([*args, "--json"]) == 0, args
    capsys.readouterr()
    return instance_dir


SCOPES = [
    (["--role", "Contractor"], "role", "Contractor"),
    (["--group", "staff/it"], "group", "staff/it"),
    (["--client", "web"], "client", "web"),
    (["--sp", SP], "sp", SP),
    ([], "global", "global"),
]


@pytest.mark.parametrize(("scope", "kind", "name"), SCOPES)
def test_set_and_show_each_scope(initialised, capsys, scope, kind, name):
    empty = ok_json(capsys, "ip-rules", "show", *scope)
    assert empty == {"scope": kind, "name": name, "allow": [], "deny": []}
    got = ok_json(
        capsys,
        "ip-rules", "set", *scope,
        "--allow", "10.0.0.0/8", "--allow", "2001:DB8::/32", "--deny", "10.66.0.5",
    )  # fmt: skip
    want = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.5/32"]}
    assert got == {"scope": kind, "name": name, **want}
    assert ok_json(capsys, "ip-rules", "show", *scope) == got
    code, out, err = run(capsys, "ip-rules", "show", *scope)
    assert code == 0 and err == ""
    assert out == f"{kind} {name}\nallow: 10.0.0.0/8, 2001:db8::/32\ndeny:  10.66.0.5/32\n"
    cleared = ok_json(capsys, "ip-rules", "set", *scope, "--clear")
    assert (cleared["allow"], cleared["deny"]) == ([], [])
    assert ok_json(capsys, "ip-rules", "show", *scope) == empty


def test_changes_are_audited(initialised, capsys):
    from sqlalchemy import create_engine, text

    ok_json(capsys, "ip-rules", "set", "--client", "web", "--deny", "192.0.2.0/24")
    ok_json(capsys, "ip-rules", "set", "--deny", "192.0.2.0/24")
    engine = create_engine(f"sqlite:///{initialised / 'idp.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT action, target, actor, details FROM audit_events ORDER BY id")
        ).all()
    mine = [(r.action, r.target, r.actor) for r in rows if r.action != "login.success"][-2:]
    assert mine == [
        ("ip_rules.set", "client:web", "cli"),
        ("config.policy_set", "ip_rules.deny", "cli"),
    ]
    assert json.loads(rows[-2].details)["new"] == {"allow": [], "deny": ["192.0.2.0/24"]}


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["set", "--role", "Contractor", "--allow", "nope"], "allow: 'nope' is not", 2),
        (["set", "--group", "staff", "--deny", "10.1.2.3/8"], "did you mean 10.0.0.0/8", 2),
        (["set", "--allow", "10.0.0.0/33"], "10.0.0.0/33", 2),
        (["set", "--role", "Nobody", "--allow", "10.0.0.0/8"], "no role 'Nobody'", 1),
        (["set", "--client", "nope", "--allow", "10.0.0.0/8"], "no client 'nope'", 1),
        (["set", "--sp", "https://x.example/sp", "--allow", "10.0.0.0/8"], "no sp", 1),
        (["set", "--group", "missing", "--allow", "10.0.0.0/8"], "no group 'missing'", 1),
        (["set", "--role", "Contractor", "--client", "web", "--clear"], "name one scope", 2),
        (["set", "--client-id", "web", "--clear"], "--client-id goes with --role", 2),
        (["set", "--role", "Contractor", "--client-id", "web", "--clear"], "no role", 1),
        (["set", "--role", "Contractor"], "give --allow / --deny networks, or --clear", 2),
        (["set", "--clear", "--allow", "10.0.0.0/8"], "--clear takes no", 2),
        (["show", "--role", "Nobody"], "no role 'Nobody'", 1),
    ],
)
def test_refusals_are_one_line_non_zero_and_change_nothing(initialised, capsys, args, needle, code):
    before = snapshot(initialised)
    err = fails(capsys, "ip-rules", *args, code=code)
    assert needle in err
    assert snapshot(initialised) == before


def test_global_rules_set_by_the_environment_are_refused(initialised, capsys, monkeypatch):
    monkeypatch.setenv("IDP_IP_RULES_DENY", '["192.0.2.0/24"]')
    assert ok_json(capsys, "ip-rules", "show")["deny"] == ["192.0.2.0/24"]
    before = snapshot(initialised)
    err = fails(capsys, "ip-rules", "set", "--deny", "198.51.100.0/24", code=1)
    assert "environment variable" in err
    assert snapshot(initialised) == before
