"""``idp init``: migrate, create keys, role templates and the administrator (idempotent)."""

from __future__ import annotations

import json

import click

from ..services import Services, build_services
from ..settings import load_settings


@click.command()
@click.option("--admin-username", default="admin", show_default=True)
@click.option("--admin-email", default=None)
@click.option("--admin-password", default=None, help="Generated and printed when omitted.")
@click.option("--demo", is_flag=True, help="Also seed a demo user, groups, roles and a client.")
@click.option("--json", "as_json", is_flag=True)
def init(
    admin_username: str,
    admin_email: str | None,
    admin_password: str | None,
    demo: bool,
    as_json: bool,
) -> None:
    """Migrate the database, create signing keys, role templates and the administrator.
    Safe to run again: it only adds what is missing."""
    from ..storage.migrate import upgrade
    from ..storage.seed import ensure_admin, seed_demo, seed_role_templates

    svc = build_services(load_settings())
    svc.check_database()
    upgrade(svc.engine)
    new_keys = svc.keys.ensure()
    hasher = _password_hasher()
    with svc.sessions.begin() as db:
        templates = seed_role_templates(db)
        created, generated = ensure_admin(db, hasher, admin_username, admin_email, admin_password)
        demo_out = (
            seed_demo(db, svc, hasher, svc.settings.demo.user_password or None) if demo else None
        )
        if demo:
            from ..saml.demo import seed_demo_sp

            demo_sp = seed_demo_sp(db, svc)
            if demo_sp:
                demo_out["saml_sp"] = demo_sp
    result = {
        "issuer": svc.settings.issuer,
        "database": _safe_db(svc),
        "keys_created": new_keys,
        "role_templates_created": templates,
        "admin": {"username": admin_username, "created": created},
    }
    if generated:
        result["admin"]["password"] = generated
    if demo_out is not None:
        result["demo"] = demo_out
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"Initialised the IdP at {svc.settings.issuer} ({result['database']}).")
    if new_keys:
        click.echo(f"Created {len(new_keys)} signing keys.")
    if created:
        pw = generated or "(the password you gave)"
        click.echo(f"Administrator: {admin_username} / {pw}")
        if generated:
            click.echo("  This password is shown once: keep it, then change it.")
    else:
        click.echo(f"Administrator {admin_username!r} already exists (password unchanged).")
    if demo_out:
        if "user" in demo_out:
            u = demo_out["user"]
            click.echo(f"Demo user: {u['username']} / {u['password']}")
        if "client" in demo_out:
            c = demo_out["client"]
            click.echo(
                f"Demo OIDC client: {c['client_id']} / {c['client_secret']} "
                f"(redirect {c['redirect_uri']})"
            )
        if "saml_sp" in demo_out:
            click.echo(f"Demo SAML SP: {demo_out['saml_sp']['entity_id']}")
    elif demo:
        click.echo("Demo realm already present.")


def _safe_db(svc: Services) -> str:
    from ..settings import redact_url

    return redact_url(svc.settings.database_url)


def _password_hasher():
    from ..backends.passwords import PasswordHasher

    return PasswordHasher()
