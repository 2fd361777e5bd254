"""`idp` commands never print a secret, but for the one showing when it is made (issue 22,
"Secrets"; docs/security.md "Secrets at rest and in output").

Every command that makes or touches a secret runs in-process (click, as ``idp`` would): the
generated administrator password, a user's password (``users create``, ``users set-password``),
an authenticator seed and backup codes (``users mfa enroll-totp``), client secrets (``clients
create``, ``config apply`` with a secret from the environment and with a generated one), an RFC
7591 initial access token, an upstream's client secret (``upstreams add``), the signing keys
(``keys rotate``). Each secret is shown once by the command that made it; afterwards no output
of any listing, showing, exporting or repeated command holds it (nor the stored hash, nor the
private key material). Every secret is also registered with tests/secret_watch.py, so the
session's logs are checked for it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import secret_watch
from sqlalchemy import create_engine, select

from idp.cli import main

PASSWORD = "Sekret-Pass-word-77"
NEW_PASSWORD = "Other-Sekret-Pass-88"
UPSTREAM_SECRET = "upstream-secret-value-1234567890"
APPLIED_SECRET = "app2-secret-value-0123456789abcdef"


def run(capsys, *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out + err


def run_json(capsys, *args: str) -> dict:
    out = run(capsys, *args, "--json")
    return json.loads(out)


@pytest.fixture
def instance(monkeypatch, instance_dir) -> Path:
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    return instance_dir


def _listings(capsys, tmp_path: Path) -> str:
    """Everything the read-only commands print, in text and JSON."""
    sheet = tmp_path / "users.xlsx"
    outputs = [
        run(capsys, "clients", "list"),
        run(capsys, "clients", "list", "--json"),
        run(capsys, "clients", "show", "app1"),
        run(capsys, "clients", "show", "app1", "--json"),
        run(capsys, "clients", "show", "app2", "--json"),
        run(capsys, "clients", "show", "app3", "--json"),
        run(capsys, "users", "export"),
        run(capsys, "upstreams", "list"),
        run(capsys, "upstreams", "list", "--json"),
        run(capsys, "keys", "list"),
        run(capsys, "keys", "list", "--json"),
        run(capsys, "config", "export"),
        run(capsys, "config", "export", "--json"),
        run(capsys, "users", "permissions", "ann"),
        run(capsys, "audit", "verify", "--json"),
    ]
    run(capsys, "users", "export", "-o", str(sheet))
    from openpyxl import load_workbook

    cells = [
        str(c.value)
        for row in load_workbook(sheet).active.iter_rows()
        for c in row
        if c.value is not None
    ]
    return "\n".join(outputs + cells)


def _stored_secrets(instance: Path) -> list[str]:
    """What the database keeps in place of the secrets (hashes, sealed values): no command
    prints those either."""
    from idp.storage.models import Client, User
    from idp.storage.models_broker import UpstreamProvider
    from idp.storage.models_mfa import MfaBackupCode, MfaTotp

    engine = create_engine(f"sqlite:///{instance / 'idp.db'}")
    with engine.connect() as conn:
        out = [
            *conn.execute(select(User.password_hash)).scalars(),
            *conn.execute(select(Client.secret_hash)).scalars(),
            *conn.execute(select(Client.secret_enc)).scalars(),
            *conn.execute(select(MfaTotp.secret_sealed)).scalars(),
            *conn.execute(select(MfaBackupCode.code_hash)).scalars(),
            *conn.execute(select(UpstreamProvider.secret_enc)).scalars(),
        ]
    engine.dispose()
    return [v for v in out if v]


def _private_keys(instance: Path) -> list[str]:
    """The body lines of every private key PEM the instance keeps."""
    lines = []
    for pem in (instance / "keys").glob("*"):
        text = pem.read_text(errors="replace")
        if "PRIVATE KEY" in text:
            lines += [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    return lines


def _assert_real_client_secrets(shown: dict[str, str]) -> None:
    """The values taken from the outputs are the clients' secrets (so the checks below look
    for the right strings)."""
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.storage.models import Client

    svc = build_services(load_settings())
    try:
        with svc.sessions() as db:
            for client_id in ("app1", "jwt1", "app2", "app3"):
                row = db.get(Client, client_id)
                assert svc.hasher.verify(shown[f"{client_id} secret"], row.secret_hash), client_id
    finally:
        svc.engine.dispose()


def test_cli_shows_each_secret_once_and_never_again(instance, capsys, monkeypatch, tmp_path):
    shown: dict[str, str] = {}

    # The administrator's generated password: once, by init.
    made = run_json(capsys, "init")
    shown["admin password"] = made["admin"]["password"]
    again = run(capsys, "init") + run(capsys, "init", "--json")
    assert shown["admin password"] not in again

    # A user's passwords: given on the command line, never echoed.
    out = run(
        capsys,
        "users",
        "create",
        "--username",
        "ann",
        "--email",
        "ann@example.org",
        "--password",
        PASSWORD,
        "--json",
    )
    out += run(
        capsys,
        "users",
        "create",
        "--username",
        "bob",
        "--email",
        "bob@example.org",
        "--password",
        PASSWORD,
    )
    out += run(capsys, "users", "set-password", "ann", "--password", NEW_PASSWORD)
    out += run(capsys, "users", "set-password", "bob", "--password", NEW_PASSWORD, "--json")
    assert PASSWORD not in out and NEW_PASSWORD not in out

    # The authenticator seed and backup codes: once, by enroll-totp; a second enrolment shows
    # only its own.
    first = run_json(capsys, "users", "mfa", "enroll-totp", "ann")
    second_text = run(capsys, "users", "mfa", "enroll-totp", "bob")
    assert first["secret"] and len(first["backup_codes"]) >= 5
    assert first["secret"] not in second_text
    assert not any(code in second_text for code in first["backup_codes"])
    bob_seed = next(
        ln.split(": ", 1)[1] for ln in second_text.splitlines() if ln.startswith("secret: ")
    )
    bob_codes = [
        ln.split(": ", 1)[1] for ln in second_text.splitlines() if ln.startswith("backup code: ")
    ]
    assert bob_seed in second_text and len(bob_codes) >= 5  # the one showing happened
    shown["ann's seed"], shown["bob's seed"] = first["secret"], bob_seed
    for i, code in enumerate(first["backup_codes"] + bob_codes):
        shown[f"backup code {i}"] = code

    # Client secrets: once, by clients create (text and JSON) and by config apply (generated).
    made = run_json(
        capsys,
        "clients",
        "create",
        "--client-id",
        "app1",
        "--redirect-uri",
        "https://app1.example.org/cb",
    )
    shown["app1 secret"] = made["client_secret"]
    text_out = run(
        capsys,
        "clients",
        "create",
        "--client-id",
        "jwt1",
        "--auth-method",
        "client_secret_jwt",
        "--redirect-uri",
        "https://jwt1.example.org/cb",
    )
    jwt_secret = next(w for w in text_out.split() if len(w) >= 32 and "/" not in w)
    shown["jwt1 secret"] = jwt_secret
    spec = tmp_path / "clients.yaml"
    spec.write_text(
        "version: 1\nclients:\n"
        "  app2:\n    client_secret: ${env:APP2_SECRET}\n"
        "    metadata:\n      redirect_uris: [https://app2.example.org/cb]\n"
        "  app3:\n    metadata:\n      redirect_uris: [https://app3.example.org/cb]\n"
    )
    monkeypatch.setenv("APP2_SECRET", APPLIED_SECRET)
    applied = run(capsys, "config", "apply", str(spec))
    assert APPLIED_SECRET not in applied  # given by the operator: never printed
    generated = [
        w
        for w in applied.split()
        if len(w) >= 32 and w.isascii() and "/" not in w and ":" not in w and "{" not in w
    ]
    assert generated, applied  # app3's secret, made by apply: its one showing
    shown["app2 secret"], shown["app3 secret"] = APPLIED_SECRET, generated[0]
    reapplied = run(capsys, "config", "apply", str(spec))
    assert generated[0] not in reapplied and APPLIED_SECRET not in reapplied

    # An RFC 7591 initial access token: once.
    shown["initial access token"] = run_json(capsys, "clients", "initial-access-token")["token"]

    # An upstream's client secret: read from the environment, never printed.
    monkeypatch.setenv("UPSEC", UPSTREAM_SECRET)
    out = run(
        capsys,
        "upstreams",
        "add",
        "gh",
        "--kind",
        "oauth2",
        "--display-name",
        "GH",
        "--client-id",
        "ours",
        "--client-secret-env",
        "UPSEC",
        "--authorization-endpoint",
        "https://up.example.org/auth",
        "--token-endpoint",
        "https://up.example.org/token",
        "--userinfo-endpoint",
        "https://up.example.org/user",
        "--json",
    )
    assert UPSTREAM_SECRET not in out and json.loads(out)["has_secret"] is True
    shown["upstream secret"] = UPSTREAM_SECRET
    shown["password"], shown["new password"] = PASSWORD, NEW_PASSWORD

    # Signing keys: a rotation prints kids and states, never key material.
    rotated = run(capsys, "keys", "rotate") + run(capsys, "keys", "rotate", "--json")
    secret_watch.register(list(shown.values()))

    _assert_real_client_secrets(shown)

    everything = _listings(capsys, tmp_path) + rotated
    leaked = [name for name, value in shown.items() if value in everything]
    assert leaked == [], f"printed again: {leaked}"
    stored = _stored_secrets(instance)
    assert len(stored) >= 10
    assert [v for v in stored if v in everything] == []
    private = _private_keys(instance)
    assert private, "the keys kept as files (no encryption key set) were read"
    assert not any(line in everything for line in private)
    assert "PRIVATE KEY" not in everything
    for obj in (json.loads(run(capsys, "keys", "list", "--json")),):
        for key in obj["keys"]:
            assert not {"d", "p", "q", "dp", "dq", "qi", "private_enc"} & set(key)
    # The export names where a secret comes from instead of the secret.
    assert "${env:IDP_CLIENT_APP1_SECRET}" in run(capsys, "config", "export")
