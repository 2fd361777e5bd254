"""``idp clients``: OAuth 2.0 / OpenID Connect clients (create, update, show, list) and RFC 7591
initial access tokens; per-client OIDC settings are the keys a client can register itself."""

from __future__ import annotations

import json
from typing import Any

import click

from ..core.client_metadata import (
    AUTHORIZATION_ENCRYPTION_ALGS,
    AUTHORIZATION_ENCRYPTION_ENCS,
    GRANT_TYPES,
    SIGNING_ALGS,
    SUBJECT_TYPES,
)
from ..errors import ValidationError
from ..manage import clients as manage_clients
from .base import as_operator, out, ready


@click.group()
def clients() -> None:
    """OAuth 2.0 / OpenID Connect clients."""


@clients.command("create")
@click.option("--client-id", required=True)
@click.option("--name", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(GRANT_TYPES),
)
@click.option(
    "--auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(
        [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]
    ),
)
@click.option("--scope", default="openid profile email", show_default=True)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option("--frontchannel-logout-uri", default=None)
@click.option("--jwks-uri", default=None)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="A resource server (RFC 8707) the client may ask tokens for (repeat for several).",
)
@click.option("--subject-type", type=click.Choice(SUBJECT_TYPES), default=None,
              help="pairwise: a sub of its own per sector (OIDC Core §8.1).")
@click.option("--sector-identifier-uri", default=None,
              help="A JSON array listing the redirect URIs; its host is the pairwise sector.")
@click.option("--role", "roles", multiple=True, help="Roles of the client's service account.")
@click.option("--first-party", is_flag=True, help="Skip the consent screen for this client.")
@click.option("--json", "as_json", is_flag=True)
def clients_create(
    client_id,
    name,
    redirect_uris,
    grant_types,
    auth_method,
    scope,
    post_logout,
    backchannel_logout_uri,
    frontchannel_logout_uri,
    jwks_uri,
    resources,
    subject_type,
    sector_identifier_uri,
    roles,
    first_party,
    as_json,
) -> None:
    extra = {
        "resources": list(resources) or None,
        "subject_type": subject_type,
        "sector_identifier_uri": sector_identifier_uri,
    }
    with as_operator(ready()) as ctx:
        client, secret = manage_clients.create(
            ctx,
            client_id,
            name=name,
            redirect_uris=list(redirect_uris),
            grant_types=list(grant_types),
            auth_method=auth_method,
            scope=scope,
            post_logout_redirect_uris=list(post_logout),
            backchannel_logout_uri=backchannel_logout_uri,
            frontchannel_logout_uri=frontchannel_logout_uri,
            jwks_uri=jwks_uri,
            roles=list(roles),
            first_party=first_party,
            extra={k: v for k, v in extra.items() if v is not None} or None,
        )
        result: dict[str, Any] = {"client_id": client.client_id}
    if secret:
        result["client_secret"] = secret
    out(
        as_json,
        result,
        f"created client {client_id}"
        + (f"\nclient secret (shown once): {secret}" if secret else ""),
    )


@clients.command("initial-access-token")
@click.option("--expires-in", type=int, default=86400, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def clients_iat(expires_in: int, as_json: bool) -> None:
    """A one-use token for RFC 7591 dynamic client registration."""
    with as_operator(ready()) as ctx:
        token = manage_clients.new_initial_access_token(ctx, expires_in)
    out(as_json, {"token": token}, token)


@clients.command("update")
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
@click.option("--dpop-bound/--no-dpop-bound", default=None,
              help="Refuse token requests without a DPoP proof (RFC 9449).")
@click.option("--cert-bound/--no-cert-bound", default=None,
              help="Bind access tokens to the client's TLS certificate (RFC 8705).")
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
@click.option("--subject-type", type=click.Choice(SUBJECT_TYPES), default=None,
              help="pairwise: a sub of its own per sector (OIDC Core §8.1).")
@click.option("--sector-identifier-uri", default=None, help="'' removes it.")
@click.option("--authorization-alg", type=click.Choice(SIGNING_ALGS), default=None,
              help="Signs JARM authorization responses (response_mode *.jwt).")
@click.option("--authorization-encryption-alg",
              type=click.Choice(AUTHORIZATION_ENCRYPTION_ALGS + ("none",)), default=None,
              help="Encrypts JARM responses to the client's key (none: not encrypted).")
@click.option("--authorization-encryption-enc", type=click.Choice(AUTHORIZATION_ENCRYPTION_ENCS),
              default=None)
@click.option("--token-exchange", "token_exchange", default=None, metavar="JSON",
              help="The RFC 8693 token exchange policy as a JSON object ('' removes it), e.g. "
                   '\'{"accept_from": ["web"], "audiences": ["https://api.example.org/"], '
                   '"delegation": true}\'.')
@click.option("--json", "as_json", is_flag=True)
def update(client_id, name, access_token_format, access_token_alg, id_token_alg, userinfo_alg,
           access_token_lifetime, id_token_lifetime, refresh_rotation, require_pkce,
           dpop_bound, cert_bound, first_party, enable, redirect_uris, post_logout,
           frontchannel_logout_uri, backchannel_logout_uri, jwks_uri, resources, token_exchange,
           subject_type, sector_identifier_uri, authorization_alg, authorization_encryption_alg,
           authorization_encryption_enc,
           as_json) -> None:
    """Change a client's OIDC settings; every worker picks the change up within a second.
    The whole resulting metadata passes the same validator as RFC 7591 registration."""
    uris = {
        "redirect_uris": list(redirect_uris) or None,
        "post_logout_redirect_uris": [u for u in post_logout if u] if post_logout else None,
        "frontchannel_logout_uri": frontchannel_logout_uri,
        "backchannel_logout_uri": backchannel_logout_uri,
        "jwks_uri": jwks_uri,
        "resources": [u for u in resources if u] if resources else None,
        "token_exchange": _policy(token_exchange),
        "sector_identifier_uri": sector_identifier_uri,
    }
    if authorization_encryption_alg == "none":
        uris["authorization_encrypted_response_alg"] = ""
        uris["authorization_encrypted_response_enc"] = ""
    elif authorization_encryption_alg:
        uris["authorization_encrypted_response_alg"] = authorization_encryption_alg
    changes = {
        "access_token_format": access_token_format,
        "access_token_signed_response_alg": access_token_alg,
        "id_token_signed_response_alg": id_token_alg,
        "access_token_lifetime": access_token_lifetime,
        "id_token_lifetime": id_token_lifetime,
        "refresh_token_rotation": refresh_rotation,
        "require_pkce": require_pkce,
        "dpop_bound_access_tokens": dpop_bound,
        "tls_client_certificate_bound_access_tokens": cert_bound,
        "subject_type": subject_type,
        "authorization_signed_response_alg": authorization_alg,
        "authorization_encrypted_response_enc": authorization_encryption_enc,
    }
    with as_operator(ready()) as ctx:
        row = manage_clients.update(
            ctx,
            client_id,
            name=name,
            changes=changes,
            uris=uris,
            userinfo_alg=userinfo_alg,
            first_party=first_party,
            enabled=enable,
        )
        result = manage_clients.public(row)
    click.echo(json.dumps(result) if as_json else f"updated client {client_id}")


def _policy(raw: str | None) -> Any:
    """``--token-exchange``: None (unchanged), "" (removed) or the parsed JSON object; the
    metadata validator judges its members."""
    if raw is None or raw == "":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationError("--token-exchange must be a JSON object") from None


@clients.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
def show(client_id: str, as_json: bool) -> None:
    """A client's settings (never its secret)."""
    with as_operator(ready()) as ctx:
        result = manage_clients.public(manage_clients.get(ctx, client_id))
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key}: {value}")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_clients(as_json: bool) -> None:
    with as_operator(ready()) as ctx:
        rows = [manage_clients.public(r) for r in manage_clients.list_all(ctx)]
    if as_json:
        click.echo(json.dumps({"clients": rows}))
        return
    for r in rows:
        click.echo(f"{r['client_id']}  {r.get('token_endpoint_auth_method', '')}  "
                   f"{' '.join(r.get('grant_types', []))}"
                   + ("" if r["enabled"] else "  (disabled)"))
