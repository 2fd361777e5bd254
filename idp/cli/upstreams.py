"""``idp upstreams add`` / ``list`` / ``remove``: upstream identity providers people may sign in
with (docs/brokering.md), through ``idp.manage.upstreams``. The client secret is read from an
environment variable or stdin, never from the command line (process lists and shell history
would show it), and never printed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..manage import upstreams
from .base import CliFailure, as_operator, out, ready


def _text(view: dict[str, Any]) -> str:
    state = "enabled" if view["enabled"] else "disabled"
    return f"{view['alias']}  {view['kind']}  {state}  {view['display_name']}"


def _secret(env: str | None, stdin: bool) -> str | None:
    if env and stdin:
        raise CliFailure("give --client-secret-env or --client-secret-stdin, not both", 2)
    if env:
        value = os.environ.get(env)
        if not value:
            raise CliFailure(f"the environment variable {env} is not set", 2)
        return value
    if stdin:
        value = sys.stdin.readline().strip()
        if not value:
            raise CliFailure("no client secret on stdin", 2)
        return value
    return None


def _json_file(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CliFailure(f"{what}: cannot read {path}: {exc}", 2) from None


@click.group("upstreams")
def upstreams_group() -> None:
    """Upstream identity providers (identity brokering)."""


@upstreams_group.command("add")
@click.argument("alias")
@click.option("--kind", type=click.Choice(["oidc", "oauth2", "saml"]), default="oidc",
              show_default=True)
@click.option("--display-name", required=True, help='shown as "Sign in with NAME"')
@click.option("--issuer", help="OIDC: the upstream's issuer (discovery is read from it)")
@click.option("--client-id", help="OIDC / OAuth 2: our client id there")
@click.option("--client-secret-env", metavar="VAR", help="read the client secret from VAR")
@click.option("--client-secret-stdin", is_flag=True, help="read the client secret from stdin")
@click.option("--scopes", default="", help="space-separated scopes to ask for")
@click.option("--authorization-endpoint", help="OAuth 2: the authorization endpoint")
@click.option("--token-endpoint", help="OAuth 2: the token endpoint")
@click.option("--userinfo-endpoint", help="OAuth 2: the user-info endpoint")
@click.option("--emails-endpoint", help="OAuth 2: an e-mails endpoint (GitHub /user/emails)")
@click.option("--metadata", "metadata_file", metavar="FILE", help="SAML: the IdP's metadata file")
@click.option("--metadata-url", help="SAML: fetch the IdP's metadata from this URL")
@click.option("--name-id-format", help="SAML: NameID format to ask for (persistent, email...)")
@click.option("--subject-attribute", help="SAML: attribute holding the subject (not the NameID)")
@click.option("--email-attribute", help="SAML: attribute holding the e-mail address (mail)")
@click.option("--trust-email", is_flag=True, help="SAML: the IdP's e-mail addresses are verified")
@click.option("--allow-unsolicited", is_flag=True, help="SAML: accept IdP-initiated sign-in")
@click.option("--config", "config_file", metavar="FILE", help="more settings as a JSON object")
@click.option("--mapping", "mapping_file", metavar="FILE", help="mapping rules (JSON list)")
@click.option("--hrd-domain", "domains", multiple=True, help="home-realm domain; repeatable")
@click.option("--create-users", is_flag=True, help="create accounts at first sign-in (JIT)")
@click.option("--no-link-by-email", is_flag=True,
              help="never offer to link an existing account by its verified e-mail")
@click.option("--sync-mode", type=click.Choice(["import", "force"]), default="import",
              show_default=True)
@click.option("--hidden", is_flag=True, help="no button on the login page")
@click.option("--disabled", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def upstreams_add(alias, kind, display_name, issuer, client_id, client_secret_env,
                  client_secret_stdin, scopes, authorization_endpoint, token_endpoint,
                  userinfo_endpoint, emails_endpoint, metadata_file, metadata_url, name_id_format,
                  subject_attribute, email_attribute, trust_email, allow_unsolicited,
                  config_file, mapping_file, domains, create_users, no_link_by_email, sync_mode,
                  hidden, disabled, as_json) -> None:
    """Add an upstream identity provider."""
    secret = _secret(client_secret_env, client_secret_stdin)
    config = _json_file(config_file, "--config") or {}
    if not isinstance(config, dict):
        raise CliFailure("--config: the file must hold a JSON object", 2)
    given = {
        "issuer": issuer, "client_id": client_id, "scopes": scopes or None,
        "authorization_endpoint": authorization_endpoint, "token_endpoint": token_endpoint,
        "userinfo_endpoint": userinfo_endpoint, "emails_endpoint": emails_endpoint,
    }
    if metadata_file:
        try:
            given["metadata_xml"] = Path(metadata_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliFailure(f"--metadata: cannot read {metadata_file}: {exc}", 2) from None
    given.update({
        "metadata_url": metadata_url, "name_id_format": name_id_format,
        "subject_attribute": subject_attribute, "email_attribute": email_attribute,
        "trust_email": trust_email or None, "allow_unsolicited": allow_unsolicited or None,
    })
    config.update({k: v for k, v in given.items() if v is not None})
    values: dict[str, Any] = {
        "display_name": display_name, "config": config, "hrd_domains": list(domains),
        "create_users": create_users, "link_by_email": not no_link_by_email,
        "sync_mode": sync_mode, "hide_on_login": hidden, "enabled": not disabled,
    }
    mapping = _json_file(mapping_file, "--mapping")
    if mapping is not None:
        values["mapping"] = mapping
    with as_operator(ready()) as ctx:
        view = upstreams.create(ctx, alias, kind, values, secret)
    if kind == "saml":
        register = f"our SP metadata to register there: {view['sp_metadata_url']}"
    else:
        register = f"redirect URI to register there: {view['redirect_uri']}"
    out(as_json, view, f"{_text(view)}\n{register}")


@upstreams_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def upstreams_list(as_json) -> None:
    """The upstream identity providers."""
    with as_operator(ready()) as ctx:
        items = upstreams.list_all(ctx)
    out(as_json, {"items": items}, "\n".join(_text(v) for v in items) or "(none)")


@upstreams_group.command("remove")
@click.argument("alias")
@click.option("--json", "as_json", is_flag=True)
def upstreams_remove(alias, as_json) -> None:
    """Remove an upstream identity provider and its links (local accounts stay)."""
    with as_operator(ready()) as ctx:
        upstreams.delete(ctx, alias)
    out(as_json, {"removed": alias}, f"removed {alias}")
