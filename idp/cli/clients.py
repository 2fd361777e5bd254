"""`idp clients update|show|list`: per-client OIDC settings for operators (the same keys a
client can register through RFC 7591)."""

from __future__ import annotations

import json

import click

from .core.client_metadata import SIGNING_ALGS
from .errors import NotFound, ValidationError


def register(clients: click.Group) -> None:
    clients.add_command(update)
    clients.add_command(show)
    clients.add_command(list_clients)


def _load(db, client_id: str):
    from .storage.models import Client

    row = db.get(Client, client_id)
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return row


def _bump(svc) -> None:
    from .oidc.clients import client_cache

    client_cache(svc).bump()


def _public(row) -> dict:
    return {"client_id": row.client_id, "name": row.name, "enabled": row.enabled,
            "first_party": row.first_party, **row.meta}


@click.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--access-token-format", type=click.Choice(["jwt", "opaque"]), default=None)
@click.option("--access-token-alg", type=click.Choice(SIGNING_ALGS), default=None,
              help="Signs JWT access tokens.")
@click.option("--id-token-alg", type=click.Choice(SIGNING_ALGS), default=None)
@click.option("--userinfo-alg", type=click.Choice(SIGNING_ALGS + ("none",)), default=None,
              help="Sign userinfo responses (none: plain JSON).")
@click.option("--access-token-lifetime", type=click.IntRange(30, 86400), default=None)
@click.option("--id-token-lifetime", type=click.IntRange(30, 86400), default=None)
@click.option("--refresh-rotation/--no-refresh-rotation", default=None,
              help="Rotate refresh tokens on use (FAPI clients want no rotation).")
@click.option("--require-pkce/--no-require-pkce", default=None)
@click.option("--first-party/--third-party", default=None, help="First party: no consent.")
@click.option("--enable/--disable", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Replaces the registered redirect URIs (repeat for several).")
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True,
              help="Replaces the post-logout redirect URIs (repeat; '' for none).")
@click.option("--frontchannel-logout-uri", default=None, help="'' removes it.")
@click.option("--backchannel-logout-uri", default=None, help="'' removes it.")
@click.option("--jwks-uri", default=None, help="'' removes it.")
@click.option("--resource", "resources", multiple=True,
              help="Replaces the RFC 8707 resource servers it may name (repeat; '' for none).")
@click.option("--json", "as_json", is_flag=True)
def update(client_id, name, access_token_format, access_token_alg, id_token_alg, userinfo_alg,
           access_token_lifetime, id_token_lifetime, refresh_rotation, require_pkce,
           first_party, enable, redirect_uris, post_logout, frontchannel_logout_uri,
           backchannel_logout_uri, jwks_uri, resources, as_json) -> None:
    """Change a client's OIDC settings; every worker picks the change up within a second.
    The whole resulting metadata passes the same validator as RFC 7591 registration."""
    from .cli import _require_migrated, _services
    from .core.client_metadata import Policy, check_client_metadata

    svc = _services()
    _require_migrated(svc)
    uris = {
        "redirect_uris": list(redirect_uris) or None,
        "post_logout_redirect_uris": [u for u in post_logout if u] if post_logout else None,
        "frontchannel_logout_uri": frontchannel_logout_uri,
        "backchannel_logout_uri": backchannel_logout_uri,
        "jwks_uri": jwks_uri,
        "resources": [u for u in resources if u] if resources else None,
    }
    uris = {k: v for k, v in uris.items() if v is not None}
    changes = {
        "access_token_format": access_token_format,
        "access_token_signed_response_alg": access_token_alg,
        "id_token_signed_response_alg": id_token_alg,
        "access_token_lifetime": access_token_lifetime,
        "id_token_lifetime": id_token_lifetime,
        "refresh_token_rotation": refresh_rotation,
        "require_pkce": require_pkce,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes and not uris and all(
            v is None for v in (name, userinfo_alg, first_party, enable)):
        raise ValidationError("nothing to change: give at least one option")
    with svc.sessions.begin() as db:
        row = _load(db, client_id)
        meta = dict(row.meta)
        meta.update(changes)
        for key, value in uris.items():
            if value == "":
                meta.pop(key, None)
            else:
                meta[key] = value
        if userinfo_alg == "none":
            meta.pop("userinfo_signed_response_alg", None)
        elif userinfo_alg:
            meta["userinfo_signed_response_alg"] = userinfo_alg
        if name is not None:
            meta["client_name"] = name
        check_client_metadata(meta, Policy.from_settings(svc.settings))
        row.meta = meta
        if name is not None:
            row.name = name
        if first_party is not None:
            row.first_party = first_party
        if enable is not None:
            row.enabled = enable
        result = _public(row)
    _bump(svc)
    click.echo(json.dumps(result) if as_json else f"updated client {client_id}")


@click.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def show(client_id: str, as_json: bool) -> None:
    """A client's settings (never its secret)."""
    from .cli import _require_migrated, _services

    svc = _services()
    _require_migrated(svc)
    with svc.sessions() as db:
        result = _public(_load(db, client_id))
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key}: {value}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_clients(as_json: bool) -> None:
    from sqlalchemy import select

    from .cli import _require_migrated, _services
    from .storage.models import Client

    svc = _services()
    _require_migrated(svc)
    with svc.sessions() as db:
        rows = [_public(r) for r in db.scalars(select(Client).order_by(Client.client_id))]
    if as_json:
        click.echo(json.dumps({"clients": rows}))
        return
    for r in rows:
        click.echo(f"{r['client_id']}  {r.get('token_endpoint_auth_method', '')}  "
                   f"{' '.join(r.get('grant_types', []))}"
                   + ("" if r["enabled"] else "  (disabled)"))
