"""The user import (``POST /api/v1/users/import``, idp.manage.user_import / user_sheet) on
generated CSV files: any columns (known, unknown, custom, repeated, blank), cells with formulas
(OWASP "CSV injection": ``= + - @``, tab, CR and their full-width forms), quotes, line breaks,
NULs, huge fields; UTF-8 with and without a BOM, UTF-16, Latin-1; three delimiters; any form
fields. Each answer is a row report or a 4xx problem+json, never a 5xx; a refused file, a dry
run and an atomic import with a failed row write nothing; a row with a formula cell fails and
no stored value starts a formula.

The export (``GET /api/v1/users/export?format=csv``) of users with generated values: no cell
starts a formula when a spreadsheet program opens it, and stripping the escape gives the value
back (what the import does, so an export imports again unchanged)."""

from __future__ import annotations

import csv
import io
import itertools

import pytest
from api_kit import api, service_token
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support import base_overrides, init_database

from idp.errors import ValidationError
from idp.manage.user_sheet import COLUMNS, FORMULA_START, unescape_formula
from idp.storage.models import AuditEvent, User

PROBLEM = "application/problem+json"
_BOUNDED = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
FORMULAS = [
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    "\uff1d1+1",
    "\uff20x",
    "'=already",
    '=HYPERLINK("http://evil.example")',
]
TEXT_COLUMNS = (
    "username",
    "email",
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "phone",
    "company",
    "position",
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.app import create_app

    instance = tmp_path_factory.mktemp("import-fuzz") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, api={"import_max_bytes": 200_000})
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    yield app, app.test_client(), service_token(app)
    app.extensions["idp"].engine.dispose()


def state(app) -> tuple:
    """What an import could change: the users' columns and the audit log's length."""
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        users = sorted(
            repr(
                [
                    getattr(u, c)
                    for c in (*TEXT_COLUMNS[:7], "custom", "updated_at", "password_hash", "status")
                ]
            )
            for u in db.scalars(select(User))
        )
        return users, db.scalar(select(func.count(AuditEvent.id)))


_CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "ann",
            "Ann Lee",
            "ann@example.org",
            "true",
            "2026-01-01",
            "x;y",
            'a "quoted" b',
            "line\nbreak",
            "\x00",
            "caf\u00e9",
            "\u4e2d\u6587",
        ]
    ),
    st.sampled_from(FORMULAS),
    st.text(max_size=10),
    st.builds(lambda n: "a" * n, st.sampled_from([300, 5000, 70_000])),
)
_NAMES = itertools.count()
_COLUMN = st.sampled_from([*COLUMNS, "active", "password", "custom.badge", "nope", "", "email"])


@st.composite
def imports(draw) -> tuple[bytes, str, dict[str, str]]:
    """(file, file name, form fields): half of them a well-formed upload whose cells are
    hostile, half hostile throughout (columns, encoding, name, form)."""
    good = draw(st.booleans())

    def pick(fine, *other):
        return fine if good else draw(st.sampled_from([fine, *other]))

    extra = draw(
        st.lists(
            _COLUMN.filter(lambda c: c not in ("username", "email")),
            max_size=3,
            unique=not good or None,
        )
    )
    header = ["username", "email", *extra] if good or draw(st.booleans()) else extra
    rows = draw(
        st.lists(
            st.lists(_CELL, min_size=len(header), max_size=len(header) + 1),
            min_size=1 if good else 0,
            max_size=4,
        )
    )
    for i, row in enumerate(rows):
        if header[:2] == ["username", "email"] and len(row) >= 2 and draw(st.booleans()):
            row[:2] = [f"u{next(_NAMES)}", f"u{i}@example.org"]  # a row that can be created
    buf = io.StringIO()
    csv.writer(
        buf,
        delimiter=pick(",", ";", "\t"),
        lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])),
    ).writerows([header, *rows])
    encoding = (
        draw(st.sampled_from(["utf-8", "utf-8-sig"]))
        if good
        else draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    )
    data = buf.getvalue().encode(encoding, errors="replace")
    form = {
        "dry_run": draw(st.sampled_from(["true", "false"])) if good else pick("false", "maybe"),
        "match": draw(st.sampled_from(["email", "username"])) if good else pick("email", "phone"),
        "atomic": draw(st.sampled_from(["true", "false"])),
    }
    return data, pick("users.csv", "users.xlsx", "users", "u.txt"), form


@settings(max_examples=80, **_BOUNDED)
@given(upload=imports())
@example(
    upload=(
        b"username,email\r\n=cmd,a@example.org\r\n",
        "users.csv",
        {"dry_run": "false", "match": "email", "atomic": "false"},
    )
)
@example(
    upload=(
        "username,email,given_name\r\nbom,bom@example.org,\uff1d1\r\n".encode("utf-8-sig"),
        "users.csv",
        {"dry_run": "false", "match": "email", "atomic": "false"},
    )
)
def test_an_import_answers_a_report_or_a_problem_and_stores_no_formula(env, upload):
    app, client, token = env
    data, name, form = upload
    dry_run, atomic = form["dry_run"], form["atomic"]
    before = state(app)
    r = api(
        client,
        "POST",
        "/api/v1/users/import",
        token,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(data), name), **form},
    )
    event(str(r.status_code) + " " + str((r.json or {}).get("detail", ""))[:60])
    assert r.status_code in (200, 400, 409, 413, 415), r.get_data(as_text=True)[:300]
    if r.status_code != 200:
        assert r.mimetype == PROBLEM
        assert r.json["status"] == r.status_code and r.json["title"] and r.json["type"]
        assert state(app) == before
        return
    body = r.json
    statuses = [row["status"] for row in body["rows"]]
    for kind in ("created", "updated", "failed"):
        assert body[kind] == statuses.count(kind), body
    if dry_run == "true" or (atomic == "true" and body["failed"]):
        assert state(app)[0] == before[0]
    # CSV has no formulas, only text: "=1+1" is kept as written; what matters is that no
    # spreadsheet program evaluates it when the directory is exported.
    assert_export_is_neutral(client, token)


def assert_export_is_neutral(client, token, q: str | None = None) -> list[dict[str, str]]:
    """The CSV export (of the users matching ``q``): no cell starts a formula."""
    query = {"format": "csv", **({"q": q} if q else {})}
    r = api(client, "GET", "/api/v1/users/export", token, query_string=query)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"), newline="")))
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in FORMULA_START, row
    return rows


_PHONES = ["+49 30 1234", "-1 555 0100", "+1 (555) 010-0199", "030 1234"]
_VALUE = st.one_of(
    st.sampled_from(FORMULAS),
    st.text(min_size=1, max_size=12),
    st.sampled_from(["'", "''=x", "-", "plain"]),
)


@settings(max_examples=25, **_BOUNDED)
@given(
    values=st.fixed_dictionaries(
        {"display_name": _VALUE, "middle_name": _VALUE, "phone": st.sampled_from(_PHONES)}
    )
)
def test_every_exported_cell_is_neutralised_and_reads_back(env, values):
    from idp.manage import Actor, transaction
    from idp.manage import users as manage_users
    from idp.storage.directory import NewUser

    app, client, token = env
    svc = app.extensions["idp"]
    username = f"x{next(_NAMES)}"
    with transaction(svc, Actor.operator("test")) as ctx:
        user = manage_users.create(ctx, NewUser(username, f"{username}@example.org"))
        for column, value in values.items():
            try:
                manage_users.update(ctx, user, {column: value})
            except ValidationError:  # refused by the directory (control characters, a shape)
                event(f"refused {column}")
        stored = {column: getattr(user, column) or "" for column in values}  # as normalised
    r = api(
        client, "GET", "/api/v1/users/export", token, query_string={"format": "csv", "q": username}
    )
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
    (row,) = [x for x in rows if x["username"] == username]
    for cell in row.values():
        assert not cell or cell[0] not in FORMULA_START, row
    for column, value in stored.items():
        assert unescape_formula(row[column]) == value, (column, row[column])
