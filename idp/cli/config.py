"""``idp config``: configuration as code (docs/configuration.md, "Configuration as code").

``export`` prints the configuration as YAML; ``apply FILE`` prints the diff and makes the
changes in one transaction (``--dry-run``: the diff only, nothing written).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..manage import config_code
from .base import CliFailure, as_operator, emit, ready


@click.group("config")
def config() -> None:
    """Configuration as code: export and apply clients, SPs, roles, groups and policies."""


@config.command("export")
@click.option("--json", "as_json", is_flag=True, help="The same document as one JSON object.")
def config_export(as_json: bool) -> None:
    """Print the configuration as YAML (client secrets as ${env:NAME} references)."""
    with as_operator(ready()) as ctx:
        document = config_code.export(ctx, os.environ)
        comments = config_code.header(ctx)
    if as_json:
        emit(True, document, "")
        return
    click.echo(config_code.dump_yaml(document, comments), nl=False)


class _DryRun(Exception):
    """Raised inside the transaction after the diff is printed: it rolls everything back."""


@config.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
@click.option(
    "--prune",
    is_flag=True,
    help="Also delete what a section of the file does not name (only sections in the file).",
)
@click.option("--json", "as_json", is_flag=True)
def config_apply(file: Path, dry_run: bool, prune: bool, as_json: bool) -> None:
    """Make the IdP match FILE: prints the diff, then applies it in one transaction."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliFailure(f"{file} does not exist") from None
    except UnicodeDecodeError:
        raise CliFailure(f"{file} is not UTF-8 text") from None
    doc = config_code.parse(config_code.load_yaml(text))
    svc = ready()
    try:
        with as_operator(svc) as ctx:
            plan = config_code.apply(ctx, doc, environ=os.environ, prune=prune)
            # Printed before the commit: the diff comes first, and an error has printed none.
            emit(as_json, plan.as_dict(dry_run), "\n".join(plan.lines(dry_run)))
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
