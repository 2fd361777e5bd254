"""``idp ldap``: check the directory connection, sync users, refresh one user."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..services import Services
from .base import CliFailure, require_migrated, services


def _ldap_services() -> Services:
    svc = services()
    if not svc.settings.ldap.enabled:
        raise CliFailure("LDAP is not enabled: set ldap.enabled = true (IDP_LDAP_ENABLED)", 2)
    return svc


def _unavailable(exc: Exception) -> CliFailure:
    return CliFailure(f"the directory cannot be reached: {exc}")


@click.group()
def ldap() -> None:
    """LDAP / Active Directory."""


@ldap.command("test")
@click.option("--json", "as_json", is_flag=True)
def ldap_test(as_json: bool) -> None:
    """Connect to every configured server: TLS, service-account bind, user search."""
    from ..backends.ldap_sync import check_servers

    result = check_servers(_ldap_services())
    if as_json:
        click.echo(json.dumps(result))
    else:
        for server in result["servers"]:
            state = "ok" if server["ok"] else f"FAILED: {server['error']}"
            click.echo(f"{server['url']}: {state}")
    if not result["ok"]:
        failed = [s["url"] for s in result["servers"] if not s["ok"]] or ["no server configured"]
        raise CliFailure(f"LDAP check failed for {', '.join(failed)}")


def _run_sync(svc: Services, full: bool) -> dict[str, Any]:
    from ..backends.ldap import DirectoryUnavailable
    from ..backends.ldap_sync import sync

    try:
        return sync(svc, full=full).as_dict()
    except DirectoryUnavailable as exc:
        raise _unavailable(exc) from None


def _sync_line(report: dict[str, Any]) -> str:
    return (
        f"{report['mode']} sync: {report['seen']} seen, {report['created']} created, "
        f"{report['updated']} updated, {report['unchanged']} unchanged, "
        f"{report['deactivated']} deactivated, {report['skipped']} skipped, "
        f"{len(report['conflicts'])} conflicts"
    )


@ldap.command("sync")
@click.option(
    "--full", is_flag=True, help="Every user; also marks users gone from the directory inactive."
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running: incremental every ldap.sync_interval_minutes, full every "
    "ldap.full_sync_interval_minutes.",
)
@click.option("--json", "as_json", is_flag=True)
def ldap_sync(full: bool, watch: bool, as_json: bool) -> None:
    """Import directory users (incremental unless --full; the first sync is always full)."""
    svc = _ldap_services()
    require_migrated(svc)
    if not watch:
        report = _run_sync(svc, full)
        click.echo(json.dumps(report) if as_json else _sync_line(report))
        for conflict in report["conflicts"] if not as_json else []:
            click.echo(f"  conflict: {conflict}", err=True)
        return
    cfg = svc.settings.ldap
    if not cfg.sync_interval_minutes and not cfg.full_sync_interval_minutes:
        raise CliFailure(
            "--watch needs ldap.sync_interval_minutes or full_sync_interval_minutes", 2
        )
    next_full = time.monotonic() if (full or cfg.full_sync_interval_minutes) else float("inf")
    while True:
        now = time.monotonic()
        run_full = now >= next_full
        try:
            report = _run_sync(svc, run_full)
            click.echo(json.dumps(report) if as_json else _sync_line(report))
        except CliFailure as exc:  # an outage must not end the watcher: try again next time
            click.echo(f"idp: {exc}", err=True)
        if run_full and cfg.full_sync_interval_minutes:
            next_full = now + cfg.full_sync_interval_minutes * 60
        step = cfg.sync_interval_minutes * 60 if cfg.sync_interval_minutes else next_full - now
        time.sleep(max(1.0, min(step, next_full - time.monotonic())))


@ldap.command("refresh")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def ldap_refresh(username: str, as_json: bool) -> None:
    """Re-read one directory user now (attributes, groups, removed -> inactive)."""
    from ..backends.ldap import DirectoryUnavailable
    from ..backends.ldap_sync import refresh

    svc = _ldap_services()
    require_migrated(svc)
    try:
        result = refresh(svc, username)
    except DirectoryUnavailable as exc:
        raise _unavailable(exc) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"{result['username']}: {result['change']}, status {result['status']}, "
            f"groups: {', '.join(result['groups']) or '-'}"
        )
