"""``idp audit``: verify the audit log's hash chain; prune old rows behind a checkpoint."""

from __future__ import annotations

import json

import click

from ..errors import Conflict, ValidationError
from ..manage import audit as audit_ops
from .base import CliFailure, as_operator, out, parse_date, ready


@click.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(as_json: bool) -> None:
    """Exit 0 when the chain is intact; 1 with one line on stderr naming the first edited,
    deleted, inserted or moved row (or a cut tail); --json prints the report on stdout too."""
    svc = ready()
    with as_operator(svc) as ctx:
        report = audit_ops.verify(ctx)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    if not report.ok:
        where = f"row {report.bad_id} (seq {report.bad_seq})" if report.bad_id else "the tail"
        raise CliFailure(f"audit chain broken at {where}: {report.reason}")
    if as_json:
        return
    since = f" after the checkpoint at seq {report.checkpoint_seq}" if report.checkpoint_seq else ""
    click.echo(f"audit chain intact: {report.rows} rows{since}, head at seq {report.head_seq}")


@audit.command("prune")
@click.option("--before", help="Delete rows written before this day (YYYY-MM-DD, UTC).")
@click.option("--dry-run", is_flag=True, help="Only count the rows that would go.")
@click.option("--json", "as_json", is_flag=True)
def audit_prune(before: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete old audit rows ([audit] retention_days, or --before) behind a chained checkpoint,
    so `idp audit verify` still passes."""
    day = parse_date(before, "--before")
    svc = ready()
    try:
        with as_operator(svc) as ctx:
            result = audit_ops.prune_before(ctx, day, dry_run=dry_run)
    except (ValidationError, Conflict) as exc:
        raise CliFailure(str(exc), 2) from None
    verb = "would delete" if dry_run else "deleted"
    out(
        as_json,
        result.as_dict(),
        f"{verb} {result.pruned.rows} audit rows written before {result.before.date().isoformat()}",
    )
