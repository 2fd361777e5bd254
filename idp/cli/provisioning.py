"""``idp provisioning``: push the outbound SCIM queue to the downstream targets."""

from __future__ import annotations

import click

from ..provisioning.worker import drain, run_forever
from .base import out, ready


@click.group()
def provisioning() -> None:
    """Outbound SCIM provisioning (docs/provisioning.md)."""


@provisioning.command("run")
@click.option("--once", is_flag=True, help="Push what is due now, then exit.")
@click.option("--json", "as_json", is_flag=True)
def provisioning_run(once: bool, as_json: bool) -> None:
    """Push due items to their targets; without --once keep doing so every
    [provisioning] interval_seconds. Several pushers (on one node or many) may run at once:
    each item is claimed by one of them."""
    svc = ready()
    if once:
        report = drain(svc)
        out(
            as_json,
            report.as_dict(),
            f"pushed {report.pushed}, to retry {report.retried}, failed {report.failed}",
        )
        return
    run_forever(svc, lambda: True)
