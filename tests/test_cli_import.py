"""``idp users import`` and ``idp users export``: the CLI's conventions (``--json`` prints one
object, one line on stderr and a non-zero exit on failure), a dry run and an atomic import
that write nothing, a refused file that changes nothing, and an export that imports again
unchanged."""

from __future__ import annotations

import csv
import io
import json
import sys

import openpyxl
import pytest
from sqlalchemy import func, select

from idp.cli import main
from idp.manage import Actor, transaction
from idp.storage.models import AuditEvent, User


@pytest.fixture
def svc(app, instance_dir, monkeypatch):
    """An initialised instance the CLI runs against, with a company and two groups."""
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    svc = app.extensions["idp"]
    with transaction(svc, Actor.operator("test")) as ctx:
        d = ctx.directory
        acme = d.create_company("acme", "Acme")
        d.create_department(acme, "Sales")
        d.create_group("staff")
    return svc


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def users_file(tmp_path, rows: list[list[str]], name: str = "users.csv"):
    path = tmp_path / name
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def counts(svc) -> tuple[int, int]:
    with svc.sessions() as db:
        return (
            db.scalar(select(func.count(User.id))),
            db.scalar(select(func.count(AuditEvent.id))),
        )


GOOD = [
    ["username", "email", "company", "department", "groups"],
    ["ann", "ann@example.org", "acme", "Sales", "staff"],
    ["bob", "bob@example.org", "", "", ""],
]


def test_import_json_prints_one_object_and_creates(svc, capsys, tmp_path):
    code, out, err = run(capsys, "users", "import", str(users_file(tmp_path, GOOD)), "--json")
    assert code == 0, err
    assert err == "" and out.count("\n") == 1
    report = json.loads(out)
    assert (report["created"], report["failed"], report["committed"]) == (2, 0, True)
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.username == "ann"))
        assert ann.department.name == "Sales"
        actor = db.scalar(select(AuditEvent.actor).where(AuditEvent.action == "users.imported"))
    assert actor == "cli"


def test_dry_run_writes_nothing(svc, capsys, tmp_path):
    before = counts(svc)
    code, out, err = run(capsys, "users", "import", str(users_file(tmp_path, GOOD)), "--dry-run")
    assert code == 0, err
    assert "dry run, nothing written: 2 created" in out
    assert counts(svc) == before


def test_atomic_with_a_bad_row_writes_nothing_and_exits_1(svc, capsys, tmp_path):
    before = counts(svc)
    rows = [*GOOD, ["eve", "eve@example.org", "no-such-company", "", ""]]
    path = users_file(tmp_path, rows)
    code, out, err = run(capsys, "users", "import", str(path), "--atomic", "--json")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("idp: 1 of 3 rows failed"), err
    report = json.loads(out)
    assert report["committed"] is False
    assert report["rows"][2]["errors"] == ["company: no company 'no-such-company'"]
    assert counts(svc) == before


def test_without_atomic_the_good_rows_are_written(svc, capsys, tmp_path):
    rows = [*GOOD, ["eve", "not-an-address", "", "", ""]]
    code, out, err = run(capsys, "users", "import", str(users_file(tmp_path, rows)))
    assert code == 1 and err.startswith("idp: 1 of 3 rows failed")
    assert "row 4: email: 'not-an-address' is not an e-mail address" in out
    assert "2 created, 0 updated, 0 unchanged, 1 failed" in out
    with svc.sessions() as db:
        assert sorted(db.scalars(select(User.username))) == ["ann", "bob"]


def test_match_username_updates(svc, capsys, tmp_path):
    run(capsys, "users", "import", str(users_file(tmp_path, GOOD)))
    rows = [["username", "email", "family_name"], ["ANN", "ann@new.example", "Lee"]]
    code, out, err = run(
        capsys, "users", "import", str(users_file(tmp_path, rows)), "--match", "username"
    )
    assert code == 0, err
    assert "0 created, 1 updated" in out
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.username == "ann"))
        assert (ann.email, ann.family_name) == ("ann@new.example", "Lee")


@pytest.mark.parametrize(
    ("content", "name", "said"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "users.xlsx", "PNG"),
        (b"username,email,is_admin\nx,x@example.org,1\n", "users.csv", "unknown column"),
        (b"", "users.csv", "empty"),
    ],
)
def test_refused_file_is_one_line_and_changes_nothing(svc, capsys, tmp_path, content, name, said):
    before = counts(svc)
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run(capsys, "users", "import", str(path), "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("idp: ") and said in err, err
    assert counts(svc) == before


def test_a_workbook_of_a_million_shared_strings_is_one_line_at_once(svc, capsys, tmp_path):
    import time

    from xlsx_kit import shared_strings_workbook

    path = tmp_path / "users.xlsx"
    path.write_bytes(shared_strings_workbook(1_000_000))
    before = counts(svc)
    started = time.monotonic()
    code, out, err = run(capsys, "users", "import", str(path))
    assert time.monotonic() - started < 5
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("idp: ") and "shared strings" in err, err
    assert counts(svc) == before


def test_file_over_the_limit_is_refused_before_reading(svc, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_API_IMPORT_MAX_BYTES", "100")
    rows = [["username", "email"]] + [[f"u{i}", f"u{i}@example.org"] for i in range(20)]
    code, out, err = run(capsys, "users", "import", str(users_file(tmp_path, rows)))
    assert code == 1 and "api.import_max_bytes" in err and err.count("\n") == 1


def test_progress_bar_on_stderr_unless_json(svc, capsys, tmp_path, monkeypatch):
    path = str(users_file(tmp_path, GOOD))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "users", "import", path, "--dry-run")
    assert code == 0 and "importing" in err
    code, out, err = run(capsys, "users", "import", path, "--dry-run", "--json")
    assert code == 0 and err == ""


def test_export_to_a_file_and_back_unchanged(svc, capsys, tmp_path):
    run(capsys, "users", "import", str(users_file(tmp_path, GOOD)))
    target = tmp_path / "out.xlsx"
    code, out, err = run(capsys, "users", "export", "--output", str(target), "--json")
    assert code == 0, err
    assert json.loads(out) == {"rows": 2, "output": str(target), "format": "xlsx"}
    sheet = openpyxl.load_workbook(target).active
    assert [c.value for c in sheet[1]][:3] == ["username", "email", "email_verified"]
    assert sheet.max_row == 3
    code, out, err = run(capsys, "users", "import", str(target), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["unchanged"] == 2 and report["created"] == report["updated"] == 0
    with svc.sessions() as db:
        exported = db.scalars(select(AuditEvent).where(AuditEvent.action == "users.exported")).one()
    assert exported.details == {"format": "xlsx", "filter": {"sort": "username"}, "rows": 2}


def test_export_csv_on_stdout_with_a_filter(svc, capsys, tmp_path):
    run(capsys, "users", "import", str(users_file(tmp_path, GOOD)))
    code, out, err = run(capsys, "users", "export", "--company", "acme")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.lstrip("\ufeff"))))
    assert [r["username"] for r in rows] == ["ann"]
    assert rows[0]["department"] == "Sales" and rows[0]["groups"] == "staff"


def test_export_json_needs_output(svc, capsys):
    code, out, err = run(capsys, "users", "export", "--json")
    assert code == 2 and out == "" and "--output" in err
