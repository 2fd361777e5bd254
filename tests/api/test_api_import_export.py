"""``POST /api/v1/users/import`` and ``GET /api/v1/users/export``: CSV and XLSX round trips,
dry runs and atomic imports that write nothing, upserts by e-mail and by username, formula
injection escaped in both formats, the user's colour on XLSX rows, a delegated admin kept to
their company, and hostile files refused with nothing written (409 naming the column or the
file: the request matches the API document, its data is refused; 413 over the size limit;
a malformed form is 400)."""

from __future__ import annotations

import csv
import io
import zipfile

import openpyxl
import pytest
from api_kit import api, service_token, user_token
from login_kit import make_user
from sqlalchemy import func, select

from idp.manage import Actor, transaction
from idp.manage import users as manage_users
from idp.storage.directory import Directory, NewUser
from idp.storage.models import (
    AuditEvent,
    Group,
    GroupMember,
    RbacState,
    Role,
    User,
    UserRole,
)

PROBLEM = "application/problem+json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["username", "email", "given_name", "family_name", "company", "department", "groups"]


@pytest.fixture
def token(app):
    return service_token(app)


def csv_file(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def xlsx_file(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def upload(client, token, data: bytes, filename: str = "users.csv", **form):
    fields = {k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()}
    fields["file"] = (io.BytesIO(data), filename)
    return api(
        client,
        "POST",
        "/api/v1/users/import",
        token,
        data=fields,
        content_type="multipart/form-data",
    )


def export(client, token, **query):
    return api(client, "GET", "/api/v1/users/export", token, query_string=query)


def state(svc) -> dict:
    """What an import could change: every user's columns and memberships, and the audit log."""
    with svc.sessions() as db:
        users = sorted(
            repr(
                (
                    u.username,
                    u.email,
                    u.email_verified,
                    u.given_name,
                    u.middle_name,
                    u.family_name,
                    u.display_name,
                    u.phone,
                    u.locale,
                    u.timezone,
                    u.color,
                    u.status,
                    u.start_date,
                    u.end_date,
                    u.company_id,
                    u.department_id,
                    u.position_id,
                    u.manager_id,
                    u.custom,
                    u.password_hash,
                    u.updated_at,
                )
            )
            for u in db.scalars(select(User))
        )
        members = sorted(db.execute(select(GroupMember.user_id, GroupMember.group_id)).all())
        audit = db.scalar(select(func.count(AuditEvent.id)))
        generation = db.scalar(select(RbacState.generation))
    return {"users": users, "members": members, "audit": audit, "rbac": generation}


def org(svc) -> None:
    """Companies acme (Engineering/Platform, Sales) and globex (Ops), groups staff and staff/it,
    a custom field, and a few users with every kind of value."""
    with transaction(svc, Actor.operator("test")) as ctx:
        d = ctx.directory
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        eng = d.create_department(acme, "Engineering")
        d.create_department(acme, "Platform", eng)
        d.create_department(acme, "Sales")
        d.create_department(globex, "Ops")
        d.create_position(acme, "Engineer")
        d.create_group("staff")
        d.create_group("it", "staff")
        d.define_field("cost_centre", "Cost centre", type="integer")
        d.define_field("badge", "Badge", type="string")


def people(svc) -> None:
    org(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        d = ctx.directory
        boss = manage_users.create(
            ctx,
            NewUser("boss", "boss@example.org", given_name="Bo", family_name="Ss"),
            roles=["Auditor"],
        )
        d.place_user(boss, department=d.department("acme/Engineering"))
        ann = manage_users.create(
            ctx,
            NewUser("ann", "ann@example.org", given_name="Ann", family_name="Lee"),
            groups=["staff/it"],
            email_verified=True,
        )
        manage_users.update(
            ctx,
            ann,
            {
                "display_name": '=HYPERLINK("http://evil")',
                "middle_name": "'quoted",
                "phone": "+49 30 1234",
                "locale": "de-DE",
                "timezone": "Europe/Berlin",
                "color": "#336699",
                "start_date": "2024-01-01",
                "custom": {"cost_centre": -42, "badge": "@SUM(A1)"},
            },
        )
        d.place_user(
            ann,
            department=d.department("acme/Engineering/Platform"),
            position=d.position(d.company("acme"), "Engineer"),
            manager=boss,
        )
        gx = manage_users.create(ctx, NewUser("gx", "gx@example.org", family_name="Globe"))
        d.place_user(gx, department=d.department("globex/Ops"))
        manage_users.update(ctx, gx, {"active": False, "color": "#ffee00"})


def rows_of(resp) -> list[dict]:
    if resp.mimetype == XLSX:
        sheet = openpyxl.load_workbook(io.BytesIO(resp.data)).active
        values = [[c.value for c in row] for row in sheet.iter_rows()]
    else:
        text = resp.data.decode("utf-8-sig")
        values = list(csv.reader(io.StringIO(text)))
    header, *rest = values
    return [dict(zip(header, row, strict=False)) for row in rest]


# --- import ------------------------------------------------------------------------------------


def test_csv_import_creates_users_with_organization_groups_and_roles(app, client, token, svc):
    org(svc)
    data = csv_file(
        [
            [*HEADER, "roles", "custom.cost_centre", "start_date", "color", "active"],
            ["nia", "Nia@Example.org", "Nia", "Ng", "acme", "Engineering", "staff;staff/it",
             "Auditor", "7", "2025-03-01", "#AA0000", "true"],
            ["olu", "olu@example.org", "Olu", "", "", "", "", "", "", "", "", "false"],
        ]
    )  # fmt: skip
    resp = upload(client, token, data)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["created"], body["updated"], body["failed"]) == (2, 0, 0)
    assert body["committed"] is True and body["dry_run"] is False
    assert [r["status"] for r in body["rows"]] == ["created", "created"]
    assert [r["row"] for r in body["rows"]] == [2, 3]
    with svc.sessions() as db:
        nia = db.scalar(select(User).where(User.username == "nia"))
        assert nia.email == "nia@example.org" and nia.company.slug == "acme"
        assert nia.department.name == "Engineering" and nia.custom == {"cost_centre": 7}
        assert str(nia.start_date) == "2025-03-01" and nia.color == "#aa0000"
        paths = Directory(db).group_members(Directory(db).group_by_path("staff"))
        assert [u.username for u in paths] == ["nia"]
        olu = db.scalar(select(User).where(User.username == "olu"))
        assert olu.status == "inactive" and olu.family_name is None
        actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("user.created") == 2 and actions[-1] == "users.imported"


def test_dry_run_reports_but_writes_nothing(app, client, token, svc):
    people(svc)
    before = state(svc)
    data = csv_file(
        [
            ["username", "email", "given_name"],
            ["new1", "new1@example.org", "New"],
            ["ann", "ann@example.org", "Annie"],
            ["bad", "not-an-address", "X"],
        ]
    )
    resp = upload(client, token, data, dry_run=True)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert [r["status"] for r in body["rows"]] == ["created", "updated", "failed"]
    assert body["dry_run"] is True and body["committed"] is False
    assert "email" in body["rows"][2]["errors"][0]
    assert state(svc) == before


def test_atomic_import_with_a_bad_row_writes_nothing(app, client, token, svc):
    people(svc)
    before = state(svc)
    data = csv_file(
        [
            ["username", "email", "start_date"],
            ["new1", "new1@example.org", "2025-01-01"],
            ["new2", "new2@example.org", "31.12.2025"],
        ]
    )
    resp = upload(client, token, data, atomic=True)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["failed"] == 1 and body["committed"] is False
    assert body["rows"][1] == {
        "row": 3,
        "status": "failed",
        "errors": ["start_date: '31.12.2025' is not a date YYYY-MM-DD"],
    }
    assert state(svc) == before


def test_without_atomic_the_good_rows_stay_and_the_bad_one_is_reported(app, client, token, svc):
    people(svc)
    data = csv_file(
        [
            ["username", "email", "groups"],
            ["new1", "new1@example.org", "staff"],
            ["new2", "new2@example.org", "no-such-group"],
            ["new3", "boss@example.org", ""],  # boss's address: boss is renamed new3
            ["new4", "new4@example.org", ""],
        ]
    )
    resp = upload(client, token, data)
    body = resp.json
    assert [r["status"] for r in body["rows"]] == ["created", "failed", "updated", "created"]
    assert "no group 'no-such-group'" in body["rows"][1]["errors"][0]
    assert body["committed"] is True
    with svc.sessions() as db:
        names = set(db.scalars(select(User.username)))
    assert {"new1", "new4", "new3"} <= names and "new2" not in names and "boss" not in names


def test_upsert_by_email_updates_the_user_that_address_belongs_to(app, client, token, svc):
    people(svc)
    data = csv_file(
        [
            ["username", "email", "family_name", "company", "department", "manager"],
            ["ann.lee", "ann@example.org", "Lee-Smith", "acme", "Sales", ""],
        ]
    )
    body = upload(client, token, data, match="email").json
    assert body["rows"] == [{"row": 2, "status": "updated", "errors": []}]
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.email == "ann@example.org"))
        assert ann.username == "ann.lee" and ann.family_name == "Lee-Smith"
        assert ann.department.name == "Sales" and ann.manager_id is None
        assert ann.display_name.startswith("=HYPERLINK")  # a column not in the file: kept
        fields = db.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "user.updated")
        ).all()
    assert {"username", "family_name"} <= set(fields[-1]["fields"])


def test_upsert_by_username_changes_the_address(app, client, token, svc):
    people(svc)
    data = csv_file([["username", "email", "email_verified"], ["ANN", "ann@new.example", "yes"]])
    body = upload(client, token, data, match="username").json
    assert body["rows"][0]["status"] == "updated", body
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.username == "ann"))
        assert ann.email == "ann@new.example" and ann.email_verified is True
    again = upload(client, token, data, match="username").json
    assert again["rows"][0]["status"] == "unchanged" and again["unchanged"] == 1


def test_a_row_with_a_formula_cell_fails(app, client, token, svc):
    org(svc)
    data = xlsx_file(
        [
            ["username", "email", "given_name"],
            ["ok", "ok@example.org", "Fine"],
            ["calc", "calc@example.org", "=1+1"],
        ]
    )
    resp = upload(client, token, data, "users.xlsx")
    body = resp.json
    assert resp.status_code == 200, body
    assert body["rows"][1] == {
        "row": 3,
        "status": "failed",
        "errors": ["given_name: formulas are not accepted"],
    }
    with svc.sessions() as db:
        assert not db.scalar(select(User.id).where(User.username == "calc"))


def test_the_password_column_is_hashed_and_kept_to_the_policy(app, client, token, svc):
    org(svc)
    data = csv_file(
        [
            ["username", "email", "password"],
            ["pw1", "pw1@example.org", "Correct-Horse-Battery-9"],
            ["pw2", "pw2@example.org", "short"],
        ]
    )
    body = upload(client, token, data).json
    assert [r["status"] for r in body["rows"]] == ["created", "failed"]
    assert "password" in body["rows"][1]["errors"][0]
    with svc.sessions() as db:
        stored = db.scalar(select(User.password_hash).where(User.username == "pw1"))
    assert stored.startswith("$argon2id$")


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_export_then_import_changes_nothing(app, client, token, svc, kind):
    people(svc)
    resp = export(client, token, format=kind)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == ("text/csv" if kind == "csv" else XLSX)
    assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
    assert resp.headers["Content-Disposition"].endswith(f'.{kind}"')
    assert "password" not in resp.data.decode("latin-1").split("\n")[0]
    before = state(svc)
    for match in ("email", "username"):
        body = upload(client, token, resp.data, f"users.{kind}", match=match).json
        assert body["failed"] == 0, body
        assert {r["status"] for r in body["rows"]} == {"unchanged"}, body
    after = state(svc)
    assert after["users"] == before["users"] and after["members"] == before["members"]
    assert after["rbac"] == before["rbac"] + 2  # SQLite: a committed import ends cached grants
    # Only the two imports' own summary rows (and the export's) were added.
    assert after["audit"] == before["audit"] + 2


# --- the export ---------------------------------------------------------------------------------


def test_export_escapes_formulas_in_csv(app, client, token, svc):
    people(svc)
    resp = export(client, token, format="csv", q="ann")
    assert resp.data.startswith("\ufeff".encode())
    (ann,) = rows_of(resp)
    assert ann["display_name"] == '\'=HYPERLINK("http://evil")'
    assert ann["phone"] == "'+49 30 1234"
    assert ann["custom.cost_centre"] == "'-42"
    assert ann["custom.badge"] == "'@SUM(A1)"
    assert ann["middle_name"] == "''quoted"  # so that reading strips exactly one
    assert ann["department"] == "Engineering/Platform" and ann["manager"] == "boss"


def test_export_escapes_formulas_in_xlsx_and_fills_rows_with_the_users_colour(
    app, client, token, svc
):
    people(svc)
    resp = export(client, token, format="xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(resp.data)).active
    header = [c.value for c in sheet[1]]
    rows = {r[0].value: r for r in sheet.iter_rows(min_row=2)}
    ann = rows["ann"]
    display = ann[header.index("display_name")]
    assert display.value == '\'=HYPERLINK("http://evil")' and display.data_type == "s"
    assert ann[header.index("phone")].value == "'+49 30 1234"
    assert all(c.fill.fill_type == "solid" and c.fill.fgColor.rgb == "FF336699" for c in ann)
    assert ann[0].font.color.rgb == "FFFFFFFF"  # white on a dark colour
    assert {c.fill.fgColor.rgb for c in rows["gx"]} == {"FFFFEE00"}
    assert rows["boss"][0].fill.fill_type is None  # no colour, no fill
    assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)


def test_export_honours_the_filters_and_is_audited(app, client, token, svc):
    people(svc)
    names = lambda resp: sorted(r["username"] for r in rows_of(resp))  # noqa: E731
    assert names(export(client, token, company="globex")) == ["gx"]
    assert names(export(client, token, status="inactive")) == ["gx"]
    assert names(export(client, token, department="acme/Engineering")) == ["ann", "boss"]
    assert names(export(client, token, group="staff")) == ["ann"]
    assert names(export(client, token, q="LEE")) == ["ann"]
    everyone = [r["username"] for r in rows_of(export(client, token, sort="-username"))]
    assert everyone == sorted(everyone, reverse=True) and len(everyone) == 3
    with svc.sessions() as db:
        row = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "users.exported")
            .order_by(AuditEvent.id.desc())
        ).first()
    assert row.details["rows"] == 3 and row.details["filter"] == {"sort": "-username"}
    assert row.actor.startswith("client:")


@pytest.mark.parametrize(
    "query", [{"format": "pdf"}, {"status": "gone"}, {"sort": "password_hash"}, {"bogus": "1"}]
)
def test_bad_export_query_is_400_naming_the_field(app, client, token, query):
    resp = export(client, token, **query)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    assert any(e["field"] == next(iter(query)) for e in resp.json["errors"]), resp.json


# --- permissions ---------------------------------------------------------------------------------


def _delegated_admin(app, svc) -> str:
    """A User Manager over company acme only (plus the right to obtain the admin scope)."""
    make_user(svc, "acme_admin", "Good-Password-123")
    with transaction(svc, Actor.operator("test")) as ctx:
        d = ctx.directory
        d.create_role("API caller", ["oauth:scope:admin"])
        admin = d.user_by_username("acme_admin")
        d.assign_role(admin, d.role_by_name("API caller"))
        d.assign_role(admin, d.role_by_name("User Manager"), scope_company=d.company("acme"))
        d.place_user(admin, company=d.company("acme"))
    return user_token(app, "acme_admin", "Good-Password-123")


def test_delegated_admin_exports_and_imports_only_their_company(app, client, svc):
    people(svc)
    token = _delegated_admin(app, svc)
    seen = sorted(r["username"] for r in rows_of(export(client, token)))
    assert seen == ["acme_admin", "ann", "boss"]
    assert rows_of(export(client, token, company="globex")) == []
    with svc.sessions() as db:
        gx_before = repr(
            [
                (u.username, u.family_name, u.company_id)
                for u in db.scalars(select(User).where(User.username == "gx"))
            ]
        )
    before_count = state(svc)["audit"]
    data = csv_file(
        [
            ["username", "email", "family_name", "company", "department"],
            ["ann", "ann@example.org", "Updated", "acme", "Sales"],
            ["gx", "gx@example.org", "Taken", "globex", "Ops"],
            ["boss", "boss@example.org", "Ss", "globex", "Ops"],
        ]
    )
    body = upload(client, token, data).json
    assert [r["status"] for r in body["rows"]] == ["updated", "failed", "failed"], body
    # gx is not theirs to see: the row would create a user, which needs a global grant.
    assert "users:accounts:create" in body["rows"][1]["errors"][0]
    assert "users:accounts:update" in body["rows"][2]["errors"][0]
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.username == "ann"))
        assert ann.family_name == "Updated" and ann.department.name == "Sales"
        boss = db.scalar(select(User).where(User.username == "boss"))
        assert boss.company.slug == "acme"
        gx_after = repr(
            [
                (u.username, u.family_name, u.company_id)
                for u in db.scalars(select(User).where(User.username == "gx"))
            ]
        )
    assert gx_after == gx_before
    assert state(svc)["audit"] > before_count


def test_caller_who_may_not_change_users_is_403_and_nothing_written(app, client, svc):
    people(svc)
    token = service_token(app, roles=("Helpdesk",))
    before = state(svc)
    resp = upload(client, token, csv_file([["username", "email"], ["x", "x@example.org"]]))
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert state(svc) == before
    reader = service_token(app, roles=("Auditor",))
    assert export(client, reader).status_code == 200
    with transaction(svc, Actor.operator("test")) as ctx:
        ctx.directory.create_role("Scope only", ["oauth:scope:admin"])
    nobody = service_token(app, roles=("Scope only",))
    refused = export(client, nobody)
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert "users:accounts:read" in refused.json["detail"]


# --- hostile and broken files ---------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


def _zip(parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return buf.getvalue()


DOCX = _zip(
    {
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.'
        b'openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.'
        b'main+xml"/></Types>',
        "word/document.xml": b"<w:document/>",
    }
)


def _with_doctype() -> bytes:
    good = xlsx_file([["username", "email"], ["a", "a@example.org"]])
    src = zipfile.ZipFile(io.BytesIO(good))
    parts = {n: src.read(n) for n in src.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    doctype = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    parts[sheet] = b'<?xml version="1.0"?><!-- padding -->' + doctype + parts[sheet]
    return _zip(parts)


def _zip_bomb() -> bytes:
    good = xlsx_file([["username", "email"], ["a", "a@example.org"]])
    src = zipfile.ZipFile(io.BytesIO(good))
    parts = {n: src.read(n) for n in src.namelist()}
    parts["xl/padding.xml"] = b" " * (200 * 1024 * 1024)  # 200 MB of spaces, ~200 KB zipped
    return _zip(parts)


@pytest.mark.parametrize(
    ("data", "filename", "said"),
    [
        (PNG, "users.xlsx", "PNG"),
        (PNG, "users.csv", "PNG"),
        (DOCX, "users.xlsx", "not an XLSX"),
        (b"PK\x03\x04 broken", "users.xlsx", "damaged"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "users.xls", "97-2003"),
        (b"username,email\nann,ann@example.org\n", "users.xlsx", "not an XLSX"),
        (b"", "users.csv", "empty"),
        (b"username,email\n", "users.csv", "no rows"),
        ("username,email\nzoë,z@example.org\n".encode("latin-1"), "u.csv", "UTF-8"),
        (b"username,email,is_admin\nx,x@example.org,true\n", "u.csv", "'is_admin'"),
        (b"username,email,custom.nope\nx,x@example.org,1\n", "u.csv", "'custom.nope'"),
        (b"email,given_name\nx@example.org,X\n", "u.csv", "'username'"),
        (b"username,email,email\nx,x@example.org,y@example.org\n", "u.csv", "twice"),
    ],
    ids=[
        "png-as-xlsx",
        "png-as-csv",
        "docx-as-xlsx",
        "broken-zip",
        "xls",
        "csv-as-xlsx",
        "empty",
        "header-only",
        "latin-1",
        "unknown-column",
        "unknown-custom-field",
        "no-username-column",
        "repeated-column",
    ],
)
def test_hostile_or_broken_file_is_409_and_nothing_is_written(
    app, client, token, svc, data, filename, said
):
    org(svc)
    before = state(svc)
    resp = upload(client, token, data, filename)
    assert resp.status_code == 409, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM and resp.json["type"].endswith("/file-refused")
    assert said in resp.json["detail"], resp.json
    assert resp.json["errors"][0]["field"]
    assert state(svc) == before


def test_the_problem_names_the_unknown_column(app, client, token, svc):
    resp = upload(client, token, b"username,email,password_hash\nx,x@example.org,h\n")
    assert resp.status_code == 409
    assert resp.json["detail"] == "password_hash: unknown column 'password_hash'"
    assert resp.json["errors"] == [
        {"field": "password_hash", "message": "unknown column 'password_hash'"}
    ]


def test_no_match_column_is_409(app, client, token, svc):
    resp = upload(client, token, b"username,given_name\nx,X\n", match="email")
    assert resp.status_code == 409 and resp.json["errors"][0]["field"] == "email"


def test_xml_with_a_doctype_is_refused(app, client, token, svc):
    before = state(svc)
    resp = upload(client, token, _with_doctype(), "users.xlsx")
    assert resp.status_code == 409 and "DOCTYPE" in resp.json["detail"]
    assert state(svc) == before


def test_a_zip_bomb_is_refused(app, client, token, svc):
    before = state(svc)
    resp = upload(client, token, _zip_bomb(), "users.xlsx")
    assert resp.status_code == 409 and "unpacks to too much" in resp.json["detail"]
    assert state(svc) == before


def test_a_file_over_the_size_limit_is_413_and_nothing_written(make_app, clock):
    app = make_app(clock=clock, api={"import_max_bytes": 2048})
    svc = app.extensions["idp"]
    client = app.test_client()
    token = service_token(app)
    before = state(svc)
    rows = [["username", "email"]] + [[f"u{i}", f"u{i}@example.org"] for i in range(200)]
    resp = upload(client, token, csv_file(rows))
    assert resp.status_code == 413 and resp.mimetype == PROBLEM
    assert "import_max_bytes" in resp.json["detail"]
    # Far over it: the upload itself is cut off before it is read whole.
    big = upload(client, token, b"username,email\n" + b"x" * 200_000)
    assert big.status_code == 413 and big.mimetype == PROBLEM
    assert state(svc) == before


def test_more_rows_than_allowed_is_409(make_app, clock):
    app = make_app(clock=clock, api={"import_max_rows": 3})
    svc = app.extensions["idp"]
    token = service_token(app)
    before = state(svc)
    rows = [["username", "email"]] + [[f"u{i}", f"u{i}@example.org"] for i in range(4)]
    resp = upload(app.test_client(), token, csv_file(rows))
    assert resp.status_code == 409 and "import_max_rows" in resp.json["detail"]
    assert state(svc) == before


def test_form_problems_are_400_or_415(app, client, token):
    no_file = api(
        client,
        "POST",
        "/api/v1/users/import",
        token,
        data={"dry_run": "true"},
        content_type="multipart/form-data",
    )
    assert no_file.status_code == 400 and no_file.json["errors"][0]["field"] == "file"
    bad_match = upload(client, token, b"username,email\nx,x@example.org\n", match="phone")
    assert bad_match.status_code == 400 and bad_match.json["errors"][0]["field"] == "match"
    extra = upload(client, token, b"username,email\nx,x@example.org\n", is_admin="true")
    assert extra.status_code == 400 and extra.json["errors"][0]["field"] == "is_admin"
    as_json = api(client, "POST", "/api/v1/users/import", token, json={"file": "x"})
    assert as_json.status_code == 415 and as_json.mimetype == PROBLEM


# --- the batched lane writes what the one-at-a-time path writes ----------------------------------


def _app_in(tmp_path, name: str, clock):
    from support import base_overrides, init_database

    from idp.app import create_app

    instance = tmp_path / name
    instance.mkdir()
    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides, clock=clock)
    app.config["TESTING"] = True
    return app


def _outcome(app, token) -> dict:
    """Import the same mixed file; return everything it wrote, ids replaced by names."""
    svc = app.extensions["idp"]
    people(svc)
    rows = [
        ["username", "email", "email_verified", "given_name", "middle_name", "family_name",
         "display_name", "phone", "locale", "timezone", "color", "status", "start_date",
         "end_date", "company", "department", "position", "manager", "groups", "roles",
         "custom.cost_centre", "custom.badge"],
        ["n1", "n1@example.org", "true", "N", "M", "One", "=N One", "+1 555", "de_DE",
         "Europe/Berlin", "#AB00CD", "active", "2024-01-01", "2026-12-31", "acme",
         "Engineering/Platform", "Engineer", "boss", "staff;staff/it", "Auditor", "12", "b1"],
        ["n2", "n2@example.org", "", "", "", "Two", "", "", "", "", "", "inactive", "", "",
         "globex", "Ops", "", "n1", "", "", "", ""],  # manager created just above
        ["n3", "n3@example.org", "no", "", "", "", "", "not a phone", "", "", "", "", "", "",
         "", "", "", "", "", "", "", ""],  # refused by the update's phone rule
        ["n1", "n1b@example.org", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "",
         "", "", "", "", ""],  # the username is taken by row 2
        ["ann", "ann@example.org", "true", "Ann", "'quoted", "Lee", "=HYPERLINK(\"http://evil\")",
         "+49 30 1234", "de-DE", "Europe/Berlin", "#336699", "active", "2024-01-01", "",
         "acme", "Engineering/Platform", "Engineer", "boss", "staff/it", "", "-42",
         "@SUM(A1)"],  # an existing user, unchanged
        ["n4", "n4@example.org", "", "", "", "", "", "", "", "", "", "", "2025-05-05",
         "2025-01-01", "", "", "", "", "", "", "", ""],  # ends before it starts
        ["n5", "n5@example.org", "", "", "", "", "", "", "", "Mars/Olympus", "", "", "", "",
         "", "", "", "", "nope", "", "", ""],  # no such group
        ["n6", "N6@Example.org", "", "Six", "", "", "", "", "", "", "", "", "", "", "acme",
         "Sales", "", "", "staff", "", "7", ""],
    ]  # fmt: skip
    client = app.test_client()
    body = upload(client, token, csv_file(rows)).json
    with svc.sessions() as db:
        users = {u.id: u for u in db.scalars(select(User))}
        uuids = {u.uuid: u.username for u in users.values()}
        name = lambda uid: users[uid].username if uid in users else uid  # noqa: E731
        d = Directory(db)
        companies = {c.id: c.slug for c in d.db.scalars(select(d.company("acme").__class__))}
        people_rows = sorted(
            (
                u.username, u.email, u.email_verified, u.given_name, u.middle_name,
                u.family_name, u.display_name, u.phone, u.phone_verified, u.locale,
                u.timezone, u.color, u.status, u.start_date, u.end_date,
                companies.get(u.company_id), u.department.name if u.department else None,
                u.position.name if u.position else None, name(u.manager_id) if u.manager_id
                else None, u.custom, u.require_mfa, u.must_change_password, u.password_hash,
            )
            for u in users.values()
        )  # fmt: skip
        members = sorted(
            (name(uid), path)
            for uid, path in db.execute(
                select(GroupMember.user_id, Group.path).join(
                    Group, Group.id == GroupMember.group_id
                )
            )
        )
        roles = sorted(
            (name(uid), role)
            for uid, role in db.execute(
                select(UserRole.user_id, Role.name).join(Role, Role.id == UserRole.role_id)
            )
        )
        audit = []
        for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id)):
            details = dict(e.details or {})
            if "manager_id" in details:
                details["manager_id"] = name(details["manager_id"])
            if "company_id" in details:
                details["company_id"] = companies.get(details["company_id"])
            audit.append((e.action, uuids.get(e.target, e.target), details, e.actor is not None))
    # The caller's own set-up (its client, its token) is not the import's work.
    setup = ("client.created", "token.issued")
    return {"result": body, "users": people_rows, "members": members, "roles": roles,
            "audit": [a for a in audit if a[0] not in setup]}  # fmt: skip


def test_the_batched_lane_writes_what_one_row_at_a_time_writes(tmp_path, clock, monkeypatch):
    from idp.manage.user_import_batch import Lane

    written = []
    real_write = Lane.write

    def counting(self):
        out = real_write(self)
        written.extend(status for _, status in out)
        return out

    monkeypatch.setattr(Lane, "write", counting)
    batched = _app_in(tmp_path, "batched", clock)
    fast = _outcome(batched, service_token(batched, client_id="importer"))
    assert written.count("created") >= 2, "the batched lane was not used"
    written.clear()
    monkeypatch.setattr(Lane, "open", lambda self: False)
    single = _app_in(tmp_path, "single", clock)
    slow = _outcome(single, service_token(single, client_id="importer"))
    assert written == []
    statuses = [r["status"] for r in fast["result"]["rows"]]
    assert statuses == [
        "created", "created", "failed", "failed", "unchanged", "failed", "failed", "created"
    ], fast["result"]  # fmt: skip
    for part in ("result", "users", "members", "roles", "audit"):
        assert fast[part] == slow[part], part
    for app in (batched, single):
        app.extensions["idp"].engine.dispose()
