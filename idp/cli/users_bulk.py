"""``idp users import`` and ``idp users export``: the user directory in and out as CSV or XLSX
(``idp.manage.user_import`` / ``user_export``; ``docs/api.md``, "Import and export")."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from ..manage import user_export, user_import
from ..manage.users import EMPLOYMENT, SORTS, STATUSES, UserQuery
from .base import CliFailure, as_operator, ready


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and report every row; write nothing.")
@click.option(
    "--match",
    type=click.Choice(["email", "username"]),
    default="email",
    show_default=True,
    help="The column that finds an existing user to update.",
)
@click.option("--atomic", is_flag=True, help="Any failed row and nothing is written.")
@click.option("--json", "as_json", is_flag=True)
def users_import(file: Path, dry_run: bool, match: str, atomic: bool, as_json: bool) -> None:
    """Create and update users from a CSV (UTF-8) or XLSX FILE.

    Exits 0 when every row went in (or would have, with --dry-run); 1 with one line on
    stderr when the file is refused as a whole (nothing written), or when a row failed (the
    report on stdout still lists every row)."""
    svc = ready()
    limits = svc.settings.api
    if file.stat().st_size > limits.import_max_bytes:
        raise CliFailure(
            f"{file} is {file.stat().st_size} bytes, more than the limit of "
            f"{limits.import_max_bytes} (setting api.import_max_bytes)"
        )
    data = file.read_bytes()
    bar = _Progress(enabled=not as_json and sys.stderr.isatty())
    options = user_import.ImportOptions(dry_run=dry_run, match=match, atomic=atomic)
    try:
        with as_operator(svc) as ctx:
            result = user_import.import_users(
                ctx,
                data,
                filename=file.name,
                options=options,
                max_bytes=limits.import_max_bytes,
                max_rows=limits.import_max_rows,
                progress=bar.update,
            )
    finally:
        bar.close()
    report = result.as_dict()
    if as_json:
        click.echo(json.dumps(report))
    else:
        for row in result.rows:
            if row.status == "failed":
                click.echo(f"row {row.row}: {'; '.join(row.errors)}")
        what = (
            "dry run, nothing written: "
            if dry_run
            else "atomic, nothing written: "
            if not result.committed
            else ""
        )
        click.echo(
            f"{what}{report['created']} created, {report['updated']} updated, "
            f"{report['unchanged']} unchanged, {report['failed']} failed"
        )
    if report["failed"]:
        raise CliFailure(f"{report['failed']} of {len(result.rows)} rows failed")


class _Progress:
    """click's progress bar on stderr, made once the number of rows is known."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.done = 0

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="importing", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command("export")
@click.option(
    "--format",
    "kind",
    type=click.Choice(["csv", "xlsx"]),
    default=None,
    help="Default: from the --output name, else csv.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here (replaced only once complete); default: standard output.",
)
@click.option("--query", "-q", "q", default=None, help="Contains, over names, e-mail, phone.")
@click.option("--company", default=None, help="Company slug or id.")
@click.option("--department", default=None, help="Department id or company/Dept/Sub.")
@click.option("--group", default=None, help="Group path (with its subgroups).")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--employment", type=click.Choice(EMPLOYMENT), default=None)
@click.option(
    "--sort",
    type=click.Choice([*SORTS, *(f"-{s}" for s in SORTS)]),
    default="username",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="With --output: print {rows, output}.")
def users_export(kind, output, q, company, department, group, status, employment, sort, as_json):
    """Export users (the import's columns, no passwords) as CSV or XLSX."""
    if kind is None:
        kind = "xlsx" if output is not None and output.suffix.lower() == ".xlsx" else "csv"
    if output is None and as_json:
        raise click.UsageError("--json needs --output (standard output carries the file)")
    if output is None and kind == "xlsx" and sys.stdout.isatty():
        raise click.UsageError("XLSX is binary: give --output FILE or redirect the output")
    query = UserQuery(
        q=q,
        company=company,
        department=department,
        group=group,
        status=status,
        employment=employment,
        sort=sort,
    )
    svc = ready()
    if output is None:
        with as_operator(svc) as ctx:
            user_export.export_users(ctx, query, kind, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    fd, tmp = tempfile.mkstemp(dir=output.parent or ".", prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, as_operator(svc) as ctx:
            rows = user_export.export_users(ctx, query, kind, fh)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if as_json:
        click.echo(json.dumps({"rows": rows, "output": str(output), "format": kind}))
    else:
        click.echo(f"exported {rows} users to {output}", err=True)
