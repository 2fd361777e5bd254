"""The audit log export, streamed as CSV or JSON lines, shared by the console and the API.
Rows come from ``idp.manage.audit.export`` in chunks; nothing is built in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, stream_with_context

from ..manage.user_sheet import escape_formula
from .events import event_label

FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"), "jsonl": ("application/x-ndjson", "jsonl")}
COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "event",
    "target",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "seq",
    "row_hash",
)


def _record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "event": event_label(row.action),
        "target": row.target,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "seq": row.seq,
        "row_hash": row.row_hash,
        "details": row.details or {},
    }


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading ' (the same rule
    as the user export, full-width forms included)."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value or "")
    return escape_formula(text)


def _csv(rows: Iterable[Any]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in rows:
        record = _record(row)
        writer.writerow([_cell(record[c]) for c in COLUMNS])
        if buf.tell() > 16384:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _jsonl(rows: Iterable[Any]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(_record(row), ensure_ascii=False) + "\n"


def stream(rows: Iterable[Any], fmt: str, filename: str = "audit-log") -> Response:
    mimetype, ext = FORMATS[fmt]
    body = _csv(rows) if fmt == "csv" else _jsonl(rows)
    return Response(
        stream_with_context(body),
        content_type=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.{ext}"',
            "Cache-Control": "no-store",
        },
    )
