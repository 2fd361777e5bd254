"""Hostile workbooks for the import's XLSX reader, built by hand (openpyxl would not write
them): a shared-strings table of a million entries behind a sheet of two rows, and the same
table "justified" by a second worksheet of a million empty cells. Each is built in well under
a second and is a few KB."""

from __future__ import annotations

import io
import zipfile

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _content_types(sheets: int) -> str:
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT}.worksheet+xml"/>'
        for i in range(1, sheets + 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
        f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CT}.sharedStrings+xml"/>'
        f"{overrides}</Types>"
    )


def shared_strings_workbook(strings: int, empty_cells: int = 0, on_sheet: int = 2) -> bytes:
    """A workbook whose first sheet is a header and the user "mallory" (both as shared
    strings 0-3), whose shared-strings table holds ``strings`` entries, and (``empty_cells``)
    a row of that many empty cells on worksheet ``on_sheet`` (the first, or a second one)."""
    sheets = 2 if empty_cells and on_sheet == 2 else 1
    cell = '<c r="{ref}" t="s"><v>{i}</v></c>'
    rows = (
        f'<row r="1">{cell.format(ref="A1", i=0)}{cell.format(ref="B1", i=1)}</row>'
        f'<row r="2">{cell.format(ref="A2", i=2)}{cell.format(ref="B2", i=3)}</row>'
    )
    if empty_cells and on_sheet == 1:
        rows += f'<row r="3">{"<c/>" * empty_cells}</row>'
    table = (
        "<si><t>username</t></si><si><t>email</t></si><si><t>mallory</t></si>"
        "<si><t>m@example.org</t></si>" + "<si><t>x</t></si>" * max(0, strings - 4)
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _content_types(sheets))
        z.writestr(
            "_rels/.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_MAIN}" '
            f'xmlns:r="{_REL}"><sheets>'
            + "".join(
                f'<sheet name="s{i}" sheetId="{i}" r:id="rId{i}"/>' for i in range(1, sheets + 1)
            )
            + "</sheets></workbook>",
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG_REL}">'
            + "".join(
                f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" '
                f'Target="worksheets/sheet{i}.xml"/>'
                for i in range(1, sheets + 1)
            )
            + f'<Relationship Id="rSst" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/worksheets/sheet1.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}">'
            f"<sheetData>{rows}</sheetData></worksheet>",
        )
        if sheets == 2:
            z.writestr(
                "xl/worksheets/sheet2.xml",
                f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}"><sheetData>'
                f'<row r="1">{"<c/>" * empty_cells}</row></sheetData></worksheet>',
            )
        z.writestr(
            "xl/sharedStrings.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}" count="{strings}" '
            f'uniqueCount="{strings}">{table}</sst>',
        )
    return buf.getvalue()
