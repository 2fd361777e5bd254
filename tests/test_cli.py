"""The ``idp`` command line: init is idempotent, ``--json`` prints exactly one object, the create
commands really create, and bad input exits non-zero with one line on stderr and changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from support import database_url

from idp.cli import main


@pytest.fixture
def idp_env(monkeypatch, instance_dir):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    return instance_dir


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ok_json(capsys, *args: str) -> dict:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    assert err == ""
    assert out.count("\n") == 1, out  # exactly one JSON object, one line
    obj = json.loads(out)
    assert isinstance(obj, dict)
    return obj


def fails(capsys, *args: str, code: int | None = None) -> str:
    got, out, err = run(capsys, *args)
    assert got != 0, out
    if code is not None:
        assert got == code, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("idp: "), err
    assert "Traceback" not in err
    return err


def snapshot(instance: Path) -> dict[str, list]:
    """Every row of every table: compared before and after a refused command."""
    from sqlalchemy import inspect

    engine = create_engine(database_url(instance))
    with engine.connect() as conn:
        tables = sorted(inspect(conn).get_table_names())
        # Table names come from the database's catalogue, not from input.
        out = {
            t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"'))))  # noqa: S608
            for t in tables
        }
    engine.dispose()
    return out


@pytest.fixture
def initialised(idp_env, capsys) -> Path:
    ok_json(capsys, "init", "--admin-password", "Admin-pass-123", "--admin-email", "a@example.org")
    return idp_env


# --- init ----------------------------------------------------------------------------------------


def test_init_json_and_idempotent(idp_env, capsys):
    first = ok_json(capsys, "init", "--demo")
    assert first["admin"]["created"] is True and first["admin"]["password"]
    assert len(first["keys_created"]) == 5  # 3 signing, 2 request-object encryption keys
    assert first["demo"]["user"]["username"] == "demo"
    assert first["demo"]["client"]["client_id"]
    key_files = sorted(p.name for p in (idp_env / "keys").iterdir())
    secret = (idp_env / "secret_key").read_text()
    before = snapshot(idp_env)

    second = ok_json(capsys, "init", "--demo")
    assert second["admin"] == {"username": "admin", "created": False}
    assert second["keys_created"] == [] and second["role_templates_created"] == []
    assert "demo" not in second or second["demo"] == {}
    assert snapshot(idp_env) == before  # same keys, same rows
    assert sorted(p.name for p in (idp_env / "keys").iterdir()) == key_files
    assert (idp_env / "secret_key").read_text() == secret


def test_init_text_output_prints_the_admin_login(idp_env, capsys):
    code, out, err = run(capsys, "init", "--admin-username", "root")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("Administrator: root / "))
    password = line.split(" / ", 1)[1]
    from idp.backends.passwords import PasswordHasher
    from idp.storage.models import User

    engine = create_engine(f"sqlite:///{idp_env / 'idp.db'}")
    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash).where(User.username == "root")).scalar()
    engine.dispose()
    assert PasswordHasher().verify(password, stored)


def test_secret_key_file_is_private(initialised):
    assert ((initialised / "secret_key").stat().st_mode & 0o777) == 0o600


def test_db_upgrade(idp_env, capsys):
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    from idp.storage.migrate import head_revision

    assert out.strip() == f"database at revision {head_revision()}"
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and head_revision() in out


# --- create commands, end to end -----------------------------------------------------------------


def test_groups_roles_users_clients_created_for_real(initialised, capsys):
    staff = ok_json(capsys, "groups", "create", "staff")
    it = ok_json(capsys, "groups", "create", "it", "--parent", "staff")
    assert it["path"] == "staff/it" and staff["path"] == "staff"
    role = ok_json(capsys, "roles", "create", "editor", "--permission", "app:docs:*")
    assert role["permissions"] == ["app:docs:*"]
    user = ok_json(
        capsys,
        "users",
        "create",
        "--username",
        "alice",
        "--email",
        "Alice@Example.org",
        "--password",
        "Alice-pass-123",
        "--given-name",
        "Alice",
        "--group",
        "staff/it",
        "--role",
        "editor",
        "--start-date",
        "2024-01-01",
        "--end-date",
        "2030-12-31",
        "--require-mfa",
    )
    assert set(user) == {"id", "username"} and user["username"] == "alice"
    client = ok_json(
        capsys,
        "clients",
        "create",
        "--client-id",
        "app1",
        "--redirect-uri",
        "https://app.example.org/cb",
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid email",
    )
    assert client["client_id"] == "app1" and len(client["client_secret"]) >= 32
    public = ok_json(
        capsys,
        "clients",
        "create",
        "--client-id",
        "spa",
        "--auth-method",
        "none",
        "--redirect-uri",
        "http://127.0.0.1:8080/cb",
    )
    assert "client_secret" not in public

    from idp.backends.passwords import PasswordHasher
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.storage.models import Client, Group, GroupMember, Role, User, UserRole

    svc = build_services(load_settings())
    with svc.sessions() as db:
        u = db.scalar(select(User).where(User.username == "alice"))
        assert u.uuid == user["id"] and u.email == "alice@example.org"
        assert u.require_mfa and str(u.start_date) == "2024-01-01"
        assert PasswordHasher().verify("Alice-pass-123", u.password_hash)
        groups = db.scalars(
            select(Group.path).join(GroupMember).where(GroupMember.user_id == u.id)
        ).all()
        assert groups == ["staff/it"]
        roles = db.scalars(select(Role.name).join(UserRole).where(UserRole.user_id == u.id)).all()
        assert roles == ["editor"]
        c = db.get(Client, "app1")
        assert c.meta["redirect_uris"] == ["https://app.example.org/cb"]
        assert svc.hasher.verify(client["client_secret"], c.secret_hash)
    svc.engine.dispose()


def test_keys_list_json(initialised, capsys):
    rows = ok_json(capsys, "keys", "list")["keys"]
    assert sorted(r["kty"] for r in rows if r["use"] == "sig") == ["EC", "OKP", "RSA"]
    assert sorted(r["alg"] for r in rows if r["use"] == "enc") == ["ECDH-ES", "RSA-OAEP-256"]
    assert all(r["status"] == "active" for r in rows)


# --- bad input: non-zero, one line, nothing changed ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["users", "create", "--username", "admin", "--email", "x@example.org"], "already exists"),
        (["users", "create", "--username", "bob", "--email", "a@example.org"], "already used"),
        (
            ["users", "create", "--username", "bob", "--email", "b@example.org", "--group", "nope"],
            "no group 'nope'",
        ),
        (
            ["users", "create", "--username", "bob", "--email", "b@example.org", "--role", "nope"],
            "no role 'nope'",
        ),
        (
            ["users", "create", "--username", "bob", "--email", "b@example.org"]
            + ["--start-date", "2024-13-01"],
            "--start-date must be a date",
        ),
        (
            ["users", "create", "--username", "bob", "--email", "b@example.org"]
            + ["--start-date", "2025-01-01", "--end-date", "2024-01-01"],
            "end date is before start date",
        ),
        (["users", "create", "--username", "bad name", "--email", "b@example.org"], "username"),
        (["users", "create", "--username", "bob", "--email", "not-mail"], "not an e-mail"),
        (["users", "create", "--username", "bob"], "Missing option '--email'"),
        (["groups", "create", "child", "--parent", "nope"], "no group 'nope'"),
        (["groups", "create", "a/b"], "group name"),
        (["roles", "create", "Administrator"], "already exists"),
        (["roles", "create", "r1", "--permission", "Not A Permission"], "is not of the form"),
        (
            ["clients", "create", "--client-id", "c1", "--redirect-uri", "http://evil.example/cb"],
            "must use https",
        ),
        (
            ["clients", "create", "--client-id", "c1", "--redirect-uri", "https://a.example/#f"],
            "fragment",
        ),
        (
            ["clients", "create", "--client-id", "c1", "--redirect-uri", "javascript:alert(1)"],
            "forbidden scheme",
        ),
        (["clients", "create", "--client-id", "c1"], "needs at least one redirect URI"),
        (
            ["clients", "create", "--client-id", "c1", "--auth-method", "magic"],
            "Invalid value for '--auth-method'",
        ),
        (
            ["clients", "create", "--client-id", "c1", "--redirect-uri", "https://a.example/cb"]
            + ["--role", "nope"],
            "no role 'nope'",
        ),
        (["users", "frobnicate"], "No such command"),
    ],
)
def test_bad_input_changes_nothing(initialised, capsys, args, fragment):
    before = snapshot(initialised)
    err = fails(capsys, *args)
    assert fragment in err
    assert snapshot(initialised) == before


def test_duplicate_client_changes_nothing(initialised, capsys):
    args = ["clients", "create", "--client-id", "dup", "--redirect-uri", "https://a.example/cb"]
    ok_json(capsys, *args)
    before = snapshot(initialised)
    assert "already exists" in fails(capsys, *args)
    assert snapshot(initialised) == before


def test_commands_before_init_say_so(idp_env, capsys):
    err = fails(capsys, "users", "create", "--username", "bob", "--email", "b@example.org", code=1)
    assert "run `idp init`" in err


def test_unreachable_database(monkeypatch, idp_env, capsys):
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql+psycopg://idp:s3cret-pw@127.0.0.1:9/idp")
    monkeypatch.setenv("IDP_DATABASE_CONNECT_TIMEOUT", "2")
    create = ["users", "create", "--username", "b", "--email", "b@x.org"]
    for args in (["init"], ["db", "upgrade"], create):
        err = fails(capsys, *args, code=1)
        assert "is not reachable" in err
        assert "s3cret-pw" not in err  # the URL is shown redacted
    assert not (idp_env / "keys").exists()


def test_unwritable_instance_dir(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(blocker / "instance"))
    err = fails(capsys, "init", code=1)
    assert "is not writable" in err and str(blocker) in err
    assert blocker.read_text() == "not a directory"


def test_read_only_instance_dir(monkeypatch, tmp_path, capsys):
    """A directory the process may not write to (checked by a probe, works even as root
    when the file system refuses; here: a path below /proc)."""
    monkeypatch.setenv("IDP_INSTANCE_DIR", "/proc/idp-instance")
    err = fails(capsys, "init", code=1)
    assert "is not writable" in err


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and "0.1.0" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("init", "serve", "db", "keys", "users", "groups", "roles", "clients"):
        assert command in out


def test_row_counts_helper_sees_changes(initialised, capsys):
    """The snapshot used above does notice a change (so 'nothing changed' means something)."""
    before = snapshot(initialised)
    ok_json(capsys, "groups", "create", "visible-change")
    after = snapshot(initialised)
    assert after != before and len(after["groups"]) == len(before["groups"]) + 1
    engine = create_engine(f"sqlite:///{initialised / 'idp.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(text("groups"))).scalar() >= 1
    engine.dispose()


def test_port_check_ignores_connections_left_in_time_wait():
    """A server stopped a moment ago leaves its accepted connections in TIME_WAIT; restarting
    on the same port must not fail as "in use". A listening socket still counts."""
    import socket

    from idp.cli import CliFailure, _check_port

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    with pytest.raises(CliFailure, match="already in use"):
        _check_port("127.0.0.1", port)
    accepted.close()  # the server side closes first: its end of the connection is in TIME_WAIT
    client.close()
    listener.close()
    _check_port("127.0.0.1", port)  # free to serve again
