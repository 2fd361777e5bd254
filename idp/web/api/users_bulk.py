"""``/api/v1/users/import`` and ``/api/v1/users/export``: the user directory in and out as CSV or
XLSX (``idp.manage.user_import`` / ``user_export``; ``docs/api.md``, "Import and export")."""

from __future__ import annotations

import tempfile
from copy import copy
from datetime import date
from typing import Any, Literal

from flask import Response, request
from pydantic import Field
from werkzeug.wsgi import FileWrapper

from ...manage import user_export, user_import
from ...manage.user_sheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, FileRefused, FileTooLarge
from .common import ApiModel, Strict
from .framework import ApiProblem, Call, Reply, operation
from .users import Sort, UsersQuery, user_query

# Room for the multipart envelope and the form fields around the file itself.
_ENVELOPE = 64 * 1024


class ImportForm(Strict):
    """The form fields beside the file (``multipart/form-data``)."""

    dry_run: bool = Field(False, description="true: check and report every row, write nothing")
    match: Literal["email", "username"] = Field(
        "email", description="the column that finds an existing user to update"
    )
    atomic: bool = Field(False, description="true: any failed row and nothing is written")


class ImportUpload(ImportForm):
    """``multipart/form-data``: the file and the options."""

    file: bytes = Field(
        description="the CSV (UTF-8) or XLSX file; the header row names the columns",
        json_schema_extra={"format": "binary", "contentMediaType": "application/octet-stream"},
    )


class ImportRowOut(ApiModel):
    row: int = Field(description="the row as a spreadsheet shows it (the header is row 1)")
    status: Literal["created", "updated", "unchanged", "failed"]
    errors: list[str]


class ImportResultOut(ApiModel):
    created: int
    updated: int
    unchanged: int
    failed: int
    dry_run: bool
    committed: bool = Field(description="false: nothing was written (a dry run, or atomic)")
    rows: list[ImportRowOut]


def _same_as_list(name: str) -> Any:
    """The field of the user list's query (``GET /users``): the same filters, checked alike."""
    return copy(UsersQuery.model_fields[name])


class ExportQuery(Strict):
    """The filters of ``GET /api/v1/users`` (without the pages), and the format."""

    format: Literal["csv", "xlsx"] = Field("csv", description="csv (UTF-8) or xlsx")
    q: str | None = _same_as_list("q")
    company: str | None = _same_as_list("company")
    department: str | None = _same_as_list("department")
    group: str | None = _same_as_list("group")
    position: str | None = _same_as_list("position")
    status: Literal["active", "inactive", "locked", "pending", "expired"] | None = _same_as_list(
        "status"
    )
    employment: Literal["current", "future", "past", "none"] | None = _same_as_list("employment")
    start_from: date | None = _same_as_list("start_from")
    start_to: date | None = _same_as_list("start_to")
    end_from: date | None = _same_as_list("end_from")
    end_to: date | None = _same_as_list("end_to")
    sort: Sort = _same_as_list("sort")


def _refused(exc: FileRefused) -> ApiProblem:
    """A file refused as a whole. Its content is data the schema cannot describe (what makes a
    workbook importable is its columns and cells), so, as everywhere in this API, a request
    that matches the document is refused by its data with 409 (413: over the size limit),
    never 400; the problem names the column, or ``file``."""
    if isinstance(exc, FileTooLarge):
        return ApiProblem(
            413,
            "Content too large",
            str(exc),
            kind="content-too-large",
            errors=[{"field": exc.field, "message": str(exc)}],
        )
    return ApiProblem(
        409,
        "File refused",
        f"{exc.field}: {exc}",
        kind="file-refused",
        errors=[{"field": exc.field, "message": str(exc)}],
    )


def _form_problem(field: str, message: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Invalid request",
        f"{field}: {message}",
        kind="invalid-request",
        errors=[{"field": field, "message": message}],
    )


@operation(
    "POST",
    "/users/import",
    tag="users",
    summary="Import users from a CSV or XLSX file",
    body=ImportUpload,
    body_media="multipart/form-data",
    response=ImportResultOut,
    errors=(409, 413, 415),
    description=(
        "Creates the users the file does not have yet and updates the others (found by the "
        "`match` column), each row checked against the caller's permissions and audited. "
        "Every row is reported; a dry run, or an atomic import with a failed row, writes "
        "nothing. A file that is not CSV or XLSX, empty, with an unknown column or without the "
        "username or match column is refused as a whole: 409 naming the column or `file` "
        "(413 over `[api] import_max_bytes`); a malformed form is 400."
    ),
)
def import_users(call: Call) -> Reply:
    limits = call.svc.settings.api
    if request.mimetype != "multipart/form-data":
        raise ApiProblem(
            415,
            "Unsupported media type",
            "Send the file as multipart/form-data with a field named file.",
            kind="unsupported-media-type",
        )
    # Bigger than the app-wide limit: a workbook may be 10 MB. Werkzeug answers 413 beyond it.
    request.max_content_length = limits.import_max_bytes + _ENVELOPE
    files = request.files
    unknown = sorted(set(files) - {"file"})
    if unknown:
        raise _form_problem(unknown[0], "unknown file field")
    uploads = files.getlist("file")
    if len(uploads) != 1:
        raise _form_problem("file", "send exactly one file")
    upload = uploads[0]
    form = {}
    for key in request.form:
        values = request.form.getlist(key)
        if len(values) > 1:
            raise _form_problem(key, "give it once")
        form[key] = values[0]
    options = ImportForm.model_validate(form)
    data = upload.stream.read(limits.import_max_bytes + 1)
    with call.transaction() as ctx:
        try:
            result = user_import.import_users(
                ctx,
                data,
                filename=upload.filename,
                options=user_import.ImportOptions(
                    dry_run=options.dry_run, match=options.match, atomic=options.atomic
                ),
                max_bytes=limits.import_max_bytes,
                max_rows=limits.import_max_rows,
            )
        except FileRefused as exc:
            raise _refused(exc) from None
    return Reply(body=ImportResultOut.model_validate(result.as_dict()))


@operation(
    "GET",
    "/users/export",
    tag="users",
    summary="Export users as CSV or XLSX",
    query=ExportQuery,
    produces=(CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE),
    description=(
        "The users the caller may read that match the filters (those of the user list), with "
        "the columns the import reads (no passwords). Cells that a spreadsheet would take for "
        "a formula are escaped with a leading '. In XLSX each row has the user's colour."
    ),
)
def export_users(call: Call) -> Reply:
    q: ExportQuery = call.query
    query = user_query(q)
    # Written whole before the answer starts: a refusal is still a problem+json, and the
    # audit row says how many rows left.
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    try:
        with call.transaction() as ctx:
            user_export.export_users(ctx, query, q.format, out)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    stamp = call.svc.clock.utcnow().strftime("%Y%m%d-%H%M%S")
    media = CSV_MEDIA_TYPE + "; charset=utf-8" if q.format == "csv" else XLSX_MEDIA_TYPE
    resp = Response(
        FileWrapper(out, 64 * 1024), mimetype=None, content_type=media, direct_passthrough=True
    )
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="users-{stamp}.{q.format}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.call_on_close(out.close)
    return Reply(raw=resp)
