"""The user spreadsheet: its columns, reading an uploaded CSV or XLSX file safely, and writing one.

Shared by the import (``user_import``) and the export (``user_export``), so that an export
imports again unchanged. No web framework here: the bytes come from whichever surface.

Reading refuses, before any row is looked at, what is not a plain workbook or UTF-8 text: the
kind is decided by the bytes (an XLSX is a zip whose ``[Content_Types].xml`` declares a
spreadsheet; a PNG or a Word file renamed ``.xlsx`` is not one), and a file name that says
``.xlsx`` or ``.csv`` must match what the bytes are. Zip bombs (parts that unpack to more than
``XLSX_UNPACK_FACTOR`` times the size limit), encrypted or macro-enabled workbooks and XML
with a DOCTYPE (entity expansion) are refused too, and so is a shared-strings table larger than
the first worksheet's cells could use (openpyxl reads the whole table before the first row, about
20 µs a string: a 300 KB workbook of a million strings was 20-100 s of one worker). Reading a
workbook has a wall-clock budget besides (``XLSX_READ_SECONDS``).

Formula injection (OWASP "CSV injection"): text that starts with ``= + - @``, a tab or a
carriage return (or their full-width forms) is written with a leading ``'``, so that no
spreadsheet program evaluates it; text that starts with ``'`` gets one more, so that reading
strips exactly one and an export round-trips.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..errors import ValidationError

# The columns in the order an export writes them; ``custom.<field>`` columns follow.
COLUMNS: tuple[str, ...] = (
    "username",
    "email",
    "email_verified",
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "phone",
    "locale",
    "timezone",
    "color",
    "status",
    "start_date",
    "end_date",
    "company",
    "department",
    "position",
    "manager",
    "groups",
    "roles",
)
# Accepted by the import only: ``active`` (true/false) instead of ``status``, and a password.
IMPORT_ONLY: tuple[str, ...] = ("active", "password")
CUSTOM_PREFIX = "custom."
LIST_SEPARATOR = ";"

CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
XLSM_MAIN = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
# The parts of an XLSX may unpack to at most this many times the upload size limit.
XLSX_UNPACK_FACTOR = 16
XLSX_MAX_PARTS = 10_000
# A row may have at most this many cells (the columns, custom fields included, are far fewer).
MAX_COLUMNS = 256
# Blank rows a worksheet may hold besides its header and ``import_max_rows`` data rows: a sheet
# whose row numbers run further is refused before the gap is walked (a 2 KB workbook with a row
# numbered 1048576 would otherwise be a million empty rows to read).
XLSX_BLANK_ROWS = 1000
# The shared-strings table may hold at most this many XML tags per cell of the first worksheet
# (the one imported), plus the slack: a plain string is four (<si><t>..</t></si>), rich text a
# few more per run. A table is written for the cells that use it; a larger one is work (openpyxl
# reads it whole before the first row) without rows.
XLSX_SHARED_TAGS_PER_CELL = 16
XLSX_SHARED_TAGS_SLACK = 10_000
# Seconds a workbook may take to read (openpyxl's parsing and the rows); past them the file is
# refused. A backstop for what the counts above let through (a first sheet of a million empty
# cells), above what the largest legitimate import takes to read.
XLSX_READ_SECONDS = 120.0
SHARED_STRINGS_TYPE = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
)
# A cell element, with or without a namespace prefix (<c r="A1">, <x:c/>).
_CELL_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,64}:)?c[\s/>]")

# OWASP: = + - @ tab CR start a formula in some spreadsheet program; and their full-width
# forms, which some programs normalise. "'" is escaped too so that unescaping is exact.
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_ESCAPED_START = FORMULA_START | {"'"}
# Characters XML 1.0 cannot carry (openpyxl refuses them in a cell).
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class FileRefused(ValidationError):
    """The whole file is refused (nothing is imported); ``field`` names the culprit: ``file``
    or the column."""

    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


class FileTooLarge(FileRefused):
    """The file is over ``[api] import_max_bytes`` (HTTP: 413)."""


def escape_formula(text: str) -> str:
    """Text made safe to open in a spreadsheet program: a leading ``'`` where it could start
    a formula (and where it starts with ``'`` already, so that unescaping is exact)."""
    return "'" + text if text and text[0] in _ESCAPED_START else text


def unescape_formula(text: str) -> str:
    """The inverse of :func:`escape_formula`: one leading ``'`` goes when what follows would
    have been escaped; any other text is left as it is."""
    if len(text) > 1 and text[0] == "'" and text[1] in _ESCAPED_START:
        return text[1:]
    return text


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One data row: its number as a spreadsheet program shows it (the header is row 1), the
    values by column, and the columns whose cell held a formula."""

    number: int
    values: dict[str, Any]
    formulas: list[str] = field(default_factory=list)
    extra: bool = False  # values beyond the last named column


@dataclass
class Table:
    kind: str  # "csv" | "xlsx"
    columns: list[str]
    rows: list[Row]


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 (.xls) or other OLE file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
)


def read_table(data: bytes, *, filename: str | None = None, max_bytes: int, max_rows: int) -> Table:
    """The header and the rows of an uploaded CSV or XLSX file, or :class:`FileRefused`."""
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"the file is {len(data)} bytes, more than the limit of {max_bytes} "
            "(setting api.import_max_bytes)"
        )
    if not data.strip():
        raise FileRefused("the file is empty")
    claimed = _extension(filename)
    if data.startswith(b"PK\x03\x04"):
        kind = "xlsx"
    else:
        for magic, what in _MAGIC:
            if data.startswith(magic):
                raise FileRefused(f"the file is {what}, not a CSV or XLSX file")
        kind = "csv"
    if claimed in ("xlsx", "xlsm", "xls") and kind != "xlsx":
        raise FileRefused(f"the file is named .{claimed} but is not an XLSX workbook")
    if claimed == "csv" and kind != "csv":
        raise FileRefused("the file is named .csv but is a zip archive, not CSV text")
    cells = _xlsx_cells(data, max_bytes, max_rows) if kind == "xlsx" else _csv_cells(data)
    return _table(kind, cells, max_rows)


def _extension(filename: str | None) -> str:
    if not filename or "." not in filename:
        return ""
    return filename.rsplit(".", 1)[1].strip().lower()


# A raw row: (row number, cell values, indexes of formula cells).
_Cells = Iterator[tuple[int, list[Any], set[int]]]


def _table(kind: str, cells: _Cells, max_rows: int) -> Table:
    header: list[str] | None = None
    rows: list[Row] = []
    for number, values, formula_idx in cells:
        if len(values) > MAX_COLUMNS:
            raise FileRefused(f"row {number} has more than {MAX_COLUMNS} columns")
        if header is None:
            if _blank(values):
                continue  # blank rows above the header
            if formula_idx:
                raise FileRefused("the header row holds a formula; formulas are not accepted")
            header = _header(values)
            continue
        if _blank(values) and not formula_idx:
            continue
        if len(rows) >= max_rows:
            raise FileRefused(
                f"the file has more than {max_rows} rows (setting api.import_max_rows)"
            )
        if kind == "xlsx" and len(values) < len(header):
            # A worksheet row ends at its last cell: the cells after it are empty ones.
            values = values + [None] * (len(header) - len(values))
        row = Row(number, {})
        for i, value in enumerate(values):
            if i >= len(header) or not header[i]:
                if value not in (None, ""):
                    row.extra = True
                continue
            row.values[header[i]] = value
            if i in formula_idx:
                row.formulas.append(header[i])
        rows.append(row)
    if header is None:
        raise FileRefused("the file is empty")
    if not rows:
        raise FileRefused("the file has a header but no rows to import")
    return Table(kind, [h for h in header if h], rows)


def _blank(values: list[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _header(values: list[Any]) -> list[str]:
    names = [str(v).lstrip("\ufeff").strip().lower() if v is not None else "" for v in values]
    while names and not names[-1]:
        names.pop()
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not name:
            raise FileRefused(f"column {i + 1} of the header has no name", field=f"column {i + 1}")
        if name in seen:
            raise FileRefused(f"column {name!r} appears twice", field=name)
        seen.add(name)
    return names


def _csv_cells(data: bytes) -> _Cells:
    if b"\x00" in data:
        raise FileRefused("the file is binary, not a CSV or XLSX file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"a CSV file must be UTF-8 (byte {exc.start} is not); save it as CSV UTF-8"
        ) from None
    first = text.split("\n", 1)[0]
    # The header names have no separators in them: the one the header uses is the file's.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def rows() -> _Cells:
        number = 0
        try:
            for number, record in enumerate(reader, start=1):  # noqa: B007
                yield number, record, set()
        except csv.Error as exc:
            raise FileRefused(f"row {number + 1} is not valid CSV: {exc}") from None

    return rows()


def _xlsx_cells(data: bytes, max_bytes: int, max_rows: int) -> _Cells:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise FileRefused("the file is a damaged zip archive, not an XLSX workbook") from None
    names = {i.filename for i in infos}
    if "[Content_Types].xml" not in names:
        raise FileRefused("the file is a zip archive but not an XLSX workbook")
    if len(infos) > XLSX_MAX_PARTS:
        raise FileRefused("the XLSX workbook has too many parts")
    if any(i.flag_bits & 0x1 for i in infos):
        raise FileRefused("encrypted workbooks are not accepted")
    if sum(i.file_size for i in infos) > XLSX_UNPACK_FACTOR * max_bytes:
        raise FileRefused("the XLSX workbook unpacks to too much data")
    try:
        types = archive.read("[Content_Types].xml")
        for info in infos:
            # Every part: [Content_Types].xml may declare any extension as XML.
            if _has_doctype(archive, info):
                raise FileRefused("the XLSX workbook holds XML with a DOCTYPE; refused")
        shared, sheet = _parts_of(archive, types)
        tags = _count(archive, shared, _TAG)
        cells = _count(archive, sheet, _CELL_TAG)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError):
        raise FileRefused("the file is a damaged zip archive, not an XLSX workbook") from None
    if XLSM_MAIN.encode() in types:
        raise FileRefused("macro-enabled workbooks (.xlsm) are not accepted; save as .xlsx")
    if XLSX_MAIN.encode() not in types:
        raise FileRefused("the file is a zip archive but not an XLSX workbook")
    if tags > XLSX_SHARED_TAGS_PER_CELL * cells + XLSX_SHARED_TAGS_SLACK:
        raise FileRefused(
            "the XLSX workbook's shared strings are far more than its cells use; refused "
            "(save the sheet again, or as CSV)"
        )

    import openpyxl

    source = _Budgeted(data, time.monotonic() + XLSX_READ_SECONDS)
    try:
        book = openpyxl.load_workbook(source, read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # openpyxl raises many kinds on a malformed workbook
        if source.spent:
            raise _too_slow() from None
        raise FileRefused(f"the XLSX workbook cannot be read ({type(exc).__name__})") from None
    if not book.worksheets:
        book.close()
        raise FileRefused("the XLSX workbook has no worksheet")

    sheet = book.worksheets[0]
    # The <dimension> a worksheet declares is the file's claim, not its content: read-only
    # openpyxl pads every row to its width and adds empty rows up to its height (A1:XFD1048576
    # is 17 billion cells from a 2 KB file). Forgotten, each row is as long as its cells.
    sheet.reset_dimensions()
    last_row = 1 + max_rows + XLSX_BLANK_ROWS

    def rows() -> _Cells:
        try:
            for number, cells in enumerate(sheet.iter_rows(), start=1):
                source.check()
                if number > last_row:
                    raise FileRefused(
                        f"the worksheet has rows beyond row {last_row}: more than {max_rows} "
                        "rows (setting api.import_max_rows) or a gap of empty rows"
                    )
                if len(cells) > MAX_COLUMNS:
                    raise FileRefused(f"row {number} has more than {MAX_COLUMNS} columns")
                values = [c.value for c in cells]
                formulas = {i for i, c in enumerate(cells) if c.data_type == "f"}
                yield number, values, formulas
        except FileRefused:
            raise
        except Exception as exc:
            if source.spent:
                raise _too_slow() from None
            raise FileRefused(f"the XLSX workbook cannot be read ({type(exc).__name__})") from None
        finally:
            book.close()

    return rows()


# "<!DOCTYPE" as UTF-8 and as the UTF-16 / UTF-32 an XML part may be written in (a parser
# reads a UTF-16 part whose DOCTYPE a search for the UTF-8 bytes would miss).
_DOCTYPES = tuple(
    "<!DOCTYPE".encode(codec)
    for codec in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)
_TAIL = max(len(d) for d in _DOCTYPES)


_TAG = re.compile(rb"<")  # any tag, in UTF-8 or UTF-16 alike


def _has_doctype(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    return _scan(archive, info, None)[0]


def _scan(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, pattern: re.Pattern[bytes] | None
) -> tuple[bool, int]:
    """Whether the part holds a DOCTYPE; and how often ``pattern`` occurs in it (a count for a
    bound: a match across two 64 KB chunks is not counted)."""
    tail = b""
    found = 0
    with archive.open(info) as fh:
        while chunk := fh.read(65536):
            window = (tail + chunk).upper()
            if any(d in window for d in _DOCTYPES):
                return True, found
            if pattern is not None:
                found += len(pattern.findall(chunk))
            tail = chunk[-_TAIL:]
    return False, found


def _count(archive: zipfile.ZipFile, name: str, pattern: re.Pattern[bytes]) -> int:
    if not name or name not in archive.namelist():
        return 0
    return _scan(archive, archive.getinfo(name), pattern)[1]


def _parts_of(archive: zipfile.ZipFile, types: bytes) -> tuple[str, str]:
    """The shared-strings part openpyxl reads (the first one ``[Content_Types].xml``
    declares) and the first worksheet (the one imported), as zip member names; "" for none.
    Every part read here was checked for a DOCTYPE first."""
    root = _xml(types)
    shared = next(
        (
            item.get("PartName", "")[1:]
            for item in root
            if item.tag.endswith("}Override") and item.get("ContentType") == SHARED_STRINGS_TYPE
        ),
        "",
    )
    book = _target(archive, "", "_rels/.rels", "/officeDocument")
    if not book:
        return shared, ""
    folder = book.rsplit("/", 1)[0] + "/" if "/" in book else ""
    first = next((e for e in _xml(archive.read(book)).iter() if e.tag.endswith("}sheet")), None)
    rid = first.get(f"{{{R_NS}}}id") if first is not None else None
    rels = f"{folder}_rels/{book.rsplit('/', 1)[-1]}.rels"
    return shared, _target(archive, folder, rels, "/worksheet", rid) if rid else ""


R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _target(
    archive: zipfile.ZipFile, folder: str, rels: str, kind: str, rid: str | None = None
) -> str:
    """The member a relationship of ``rels`` points to: the first of type ``kind``, or the one
    with the id ``rid``; "" when there is none."""
    if rels not in archive.namelist():
        return ""
    for rel in _xml(archive.read(rels)):
        if rel.get("Type", "").endswith(kind) and (rid is None or rel.get("Id") == rid):
            target = rel.get("Target", "")
            path = target.lstrip("/") if target.startswith("/") else folder + target
            return posixpath.normpath(path)
    return ""


def _xml(data: bytes) -> Any:
    from xml.etree.ElementTree import ParseError, fromstring

    try:
        return fromstring(data)  # noqa: S314 - no DOCTYPE (refused before), so no entities
    except ParseError:
        raise FileRefused("the file is a zip archive but not an XLSX workbook") from None


class _OutOfTime(Exception):
    """The wall-clock budget of reading a workbook is spent."""


class _Budgeted(io.BytesIO):
    """The upload as openpyxl reads it, refusing to be read past ``deadline``: openpyxl's
    parsing reads the zip as it goes, so a parse that takes too long stops at its next read."""

    def __init__(self, data: bytes, deadline: float) -> None:
        super().__init__(data)
        self.deadline = deadline
        self.spent = False

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            self.spent = True
            raise _OutOfTime

    def read(self, size: int | None = -1, /) -> bytes:
        self.check()
        return super().read(size)


def _too_slow() -> FileRefused:
    return FileRefused(
        f"the XLSX workbook took more than {XLSX_READ_SECONDS:g} s to read; refused "
        "(save it as CSV, or import it in parts)"
    )


# --- cell values ------------------------------------------------------------------------------


def cell_text(value: Any) -> str | None:
    """A cell as text (numbers as typed, without a trailing .0), stripped, unescaped; None
    when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, datetime):
        midnight = value.time() == datetime.min.time()
        text = value.date().isoformat() if midnight else value.isoformat()
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    text = unescape_formula(text.strip())
    return text or None


# --- writing -----------------------------------------------------------------------------------


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return escape_formula(str(value))


class CsvWriter:
    """UTF-8 with a byte order mark (so that Excel reads it as UTF-8), CRLF line ends."""

    def __init__(self, out) -> None:
        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self._text.write("\ufeff")
        self._csv = csv.writer(self._text)

    def header(self, names: list[str]) -> None:
        self._csv.writerow(names)

    def row(self, values: list[Any], color: str | None = None) -> None:
        self._csv.writerow([csv_value(v) for v in values])

    def close(self) -> None:
        self._text.flush()
        self._text.detach()


_HEX_COLOR = re.compile(r"^#([0-9A-Fa-f]{6})$")


class XlsxWriter:
    """A write-only (streaming) workbook; each row is filled with the user's colour, its text
    white on dark colours; text cells are escaped against formula injection."""

    def __init__(self, out, sheet: str = "users") -> None:
        import openpyxl

        self._out = out
        self._book = openpyxl.Workbook(write_only=True)
        self._sheet = self._book.create_sheet(sheet)
        self._sheet.freeze_panes = "A2"
        self._styles: dict[str, tuple[Any, Any]] = {}

    def _cell(self, value: Any):
        from openpyxl.cell import WriteOnlyCell

        if isinstance(value, str):
            value = escape_formula(_XML_ILLEGAL.sub("", value))
        cell = WriteOnlyCell(self._sheet, value=value)
        if isinstance(value, date):
            cell.number_format = "yyyy-mm-dd"
        return cell

    def header(self, names: list[str]) -> None:
        from openpyxl.styles import Font

        cells = []
        for name in names:
            cell = self._cell(name)
            cell.font = Font(bold=True)
            cells.append(cell)
        self._sheet.append(cells)

    def _style(self, color: str):
        if color not in self._styles:
            from openpyxl.styles import Font, PatternFill

            rgb = color[1:].upper()
            r, g, b = (int(rgb[i : i + 2], 16) for i in (0, 2, 4))
            dark = (0.299 * r + 0.587 * g + 0.114 * b) < 128
            fill = PatternFill(fill_type="solid", start_color="FF" + rgb, end_color="FF" + rgb)
            self._styles[color] = (fill, Font(color="FFFFFFFF") if dark else None)
        return self._styles[color]

    def row(self, values: list[Any], color: str | None = None) -> None:
        cells = [self._cell(v) for v in values]
        if color and _HEX_COLOR.match(color):
            fill, font = self._style(color)
            for cell in cells:
                cell.fill = fill
                if font is not None:
                    cell.font = font
        self._sheet.append(cells)

    def close(self) -> None:
        self._book.save(self._out)


def writer(kind: str, out, sheet: str = "users"):
    """A :class:`CsvWriter` or :class:`XlsxWriter` (its one sheet named ``sheet``) over the
    binary stream ``out``."""
    if kind == "csv":
        return CsvWriter(out)
    if kind == "xlsx":
        return XlsxWriter(out, sheet)
    raise ValidationError(f"format must be csv or xlsx, not {kind!r}")
