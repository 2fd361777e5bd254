"""``idp users mfa ...``: administrators enrol a user's authenticator app or reset all of the
user's second factors (audited; the user is told by e-mail)."""

from __future__ import annotations

import json

import click
from sqlalchemy import func, or_, select

from ..errors import IdPError, NotFound


def _app():
    from ..app import create_app
    from ..storage.migrate import current_revision, head_revision

    app = create_app()
    svc = app.extensions["idp"]
    svc.check_database()
    if current_revision(svc.engine) != head_revision():
        raise IdPError("the database is not initialised or not up to date: run `idp init`")
    return app, svc


def _find(db, login: str):
    from ..storage.directory import username_key
    from ..storage.models import User

    login = login.strip()
    user = db.scalar(
        select(User).where(
            or_(
                func.lower(User.username) == username_key(login),
                User.email == login.lower(),
                User.uuid == login,
            )
        )
    )
    if user is None:
        raise NotFound(f"no user {login!r}")
    return user


@click.group("mfa")
def mfa() -> None:
    """Second factors of a user."""


@mfa.command("enroll-totp")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def enroll_totp(user: str, as_json: bool) -> None:
    """Give USER (username, e-mail or id) a new authenticator app seed and a new set of backup
    codes; prints the seed, its otpauth:// URI and the codes (shown this once)."""
    from ..backends import backup_codes, totp
    from ..web.requestinfo import audit

    app, svc = _app()
    with app.test_request_context(), svc.sessions() as db:
        row = _find(db, user)
        secret = totp.new_secret()
        totp.save(svc, db, row.id, secret)
        codes = backup_codes.regenerate(svc, db, row.id) if svc.settings.mfa.backup_codes else []
        audit(db, "mfa.totp_enrolled", actor="cli", target=row.uuid, by_admin=True)
        uri = totp.provisioning_uri(svc, row.email or row.username, secret)
        db.commit()
    result = {"secret": secret, "otpauth_uri": uri, "backup_codes": codes}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"secret: {secret}\notpauth_uri: {uri}")
        for code in codes:
            click.echo(f"backup code: {code}")


@mfa.command("reset")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
def reset(user: str, as_json: bool) -> None:
    """Remove every second factor and remembered device of USER (after identity proofing,
    when the user lost them); the user sets up new ones at the next login."""
    from flask_babel import lazy_gettext as _l

    from ..manage import Actor, transaction
    from ..manage import users as manage_users
    from ..web.mailing import send_mail

    app, svc = _app()
    told: dict = {}

    def notify(row, removed: list[str]) -> None:
        told["removed"] = removed
        told["mailed"] = send_mail(
            row.email, "mfa_reset", _l("Your second factors were reset"), user=row
        )

    with app.test_request_context(), transaction(svc, Actor.operator("cli")) as ctx:
        row = _find(ctx.db, user)
        username = row.username
        manage_users.reset_mfa(ctx, row, notify=notify)
    removed = told.get("removed", [])
    result = {"username": username, "removed": removed, "mailed": bool(told.get("mailed"))}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"reset the second factors of {username}: " + (", ".join(removed) or "none"))
