"""``idp db``: the database schema."""

from __future__ import annotations

import click

from .base import services


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from ..storage.migrate import current_revision, upgrade

    svc = services()
    upgrade(svc.engine)
    click.echo(f"database at revision {current_revision(svc.engine)}")
