"""``idp users erase`` (GDPR erasure of one person) and ``idp gdpr purge`` (the retention job);
docs/gdpr.md says what is erased and what is kept."""

from __future__ import annotations

import click

from ..manage import gdpr as manage_gdpr
from .base import as_operator, drain, emit, ready, with_logout


@click.command("erase")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_erase(username: str, as_json: bool) -> None:
    """Erase USERNAME's personal data everywhere (GDPR art. 17): the account, sessions,
    tokens, consents, second factors, devices and the personal fields of their audit rows."""
    svc = with_logout(ready())
    try:
        with as_operator(svc) as ctx:
            user = ctx.directory.user_by_username(username)
            erasure = manage_gdpr.erase(ctx, user, sessions=svc.sso_sessions)
    finally:
        drain(svc)
    text = f"erased {username} ({erasure.uuid}): {erasure.sessions_ended} session(s) ended"
    if erasure.directory_kept:
        text += "; the LDAP directory still holds the person (only the local copy was erased)"
    emit(as_json, erasure.report(), text)


@click.group()
def gdpr() -> None:
    """GDPR retention."""


@gdpr.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def gdpr_purge(dry_run: bool, as_json: bool) -> None:
    """Remove what outlived its retention ([gdpr] settings): long-inactive accounts, ended
    deletion requests, expired refresh tokens, index rows of ended sessions."""
    svc = with_logout(ready())
    try:
        with as_operator(svc) as ctx:
            report = manage_gdpr.purge(ctx, sessions=svc.sso_sessions, dry_run=dry_run)
    finally:
        drain(svc)
    counts = report.counts()
    verb = "would remove" if dry_run else "removed"
    text = (
        f"{verb}: {counts['inactive_erased']} inactive account(s) erased, "
        f"{counts['requests_removed']} ended deletion request(s), "
        f"{counts['refresh_tokens_removed']} expired refresh token(s), "
        f"{counts['session_index_rows_removed']} ended session index row(s)"
    )
    if counts["inactive_kept_last_admin"]:
        text += f"; kept {counts['inactive_kept_last_admin']} (the last administrator)"
    emit(as_json, counts, text)
