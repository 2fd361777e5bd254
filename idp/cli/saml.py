"""``idp saml ...``: service providers and federation metadata sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .base import CliFailure, as_operator, out, ready


@click.group()
def saml() -> None:
    """SAML 2.0 service providers and federations."""


@saml.group()
def sp() -> None:
    """Service providers."""


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliFailure(f"--setting must be KEY=VALUE, not {pair!r}", 2)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@sp.command("add")
@click.option("--metadata", "metadata_file", type=click.Path(dir_okay=False), default=None)
@click.option("--url", default=None, help="Fetch the SP's metadata from this URL.")
@click.option(
    "--setting",
    "settings",
    multiple=True,
    help="Per-SP setting KEY=VALUE (JSON values), e.g. name_id_format=email; repeatable.",
)
@click.option("--replace", is_flag=True, help="Replace the metadata of an SP already registered.")
@click.option(
    "--allow-http",
    is_flag=True,
    help="Lab only: accept http:// endpoint Locations (https only otherwise).",
)
@click.option(
    "--logout-unsigned-ok",
    is_flag=True,
    help="Accept unsigned LogoutRequests/LogoutResponses from this SP (want_logout_signed=false).",
)
@click.option(
    "--allow-sha1", is_flag=True, help="Accept RSA-SHA1 / SHA-1 signatures from this legacy SP."
)
@click.option(
    "--encryption-algorithm",
    default=None,
    help="Block cipher of its encrypted assertions: aes128-gcm, aes256-gcm, or aes128-cbc / "
    "aes256-cbc for SPs whose xmlsec lacks AES-GCM.",
)
@click.option("--json", "as_json", is_flag=True)
def sp_add(
    metadata_file,
    url,
    settings,
    replace,
    allow_http,
    logout_unsigned_ok,
    allow_sha1,
    encryption_algorithm,
    as_json,
) -> None:
    """Register an SP from its metadata file or URL."""
    from federation.aggregate import AggregateError, fetch

    from ..manage import service_providers

    chosen = _parse_settings(settings)
    if allow_http:
        chosen["allow_http"] = True
    if logout_unsigned_ok:
        chosen["want_logout_signed"] = False
    if allow_sha1:
        chosen["allow_sha1"] = True
    if encryption_algorithm:
        chosen["encryption_algorithm"] = encryption_algorithm

    if bool(metadata_file) == bool(url):
        raise CliFailure("give exactly one of --metadata FILE or --url URL", 2)
    svc = ready()
    cfg = svc.settings.saml
    if metadata_file:
        path = Path(metadata_file)
        try:
            if path.stat().st_size > cfg.max_metadata_bytes:
                raise CliFailure(f"{path} is larger than {cfg.max_metadata_bytes} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise CliFailure(f"{path} does not exist") from None
        origin = "manual"
    else:
        try:
            data = fetch(url, max_bytes=cfg.max_metadata_bytes, timeout=cfg.fetch_timeout)
        except AggregateError as exc:
            raise CliFailure(str(exc)) from None
        origin = f"url:{url}"[:300]
    with as_operator(svc) as ctx:
        row = service_providers.add(ctx, data, origin=origin, settings=chosen, replace=replace)
        entity_id = row.entity_id
    out(as_json, {"entity_id": entity_id}, f"registered service provider {entity_id}")


@sp.command("list")
@click.option("--json", "as_json", is_flag=True)
def sp_list(as_json) -> None:
    from ..manage import service_providers

    with as_operator(ready()) as ctx:
        rows = service_providers.list_all(ctx)
    items = [
        {"entity_id": r.entity_id, "name": r.name, "origin": r.origin, "enabled": r.enabled}
        for r in rows
    ]
    out(
        as_json,
        {"service_providers": items},
        "\n".join(
            f"{i['entity_id']}  {i['origin']}" + ("" if i["enabled"] else "  (disabled)")
            for i in items
        )
        or "no service providers",
    )


@sp.command("remove")
@click.argument("entity_id")
@click.option("--json", "as_json", is_flag=True)
def sp_remove(entity_id, as_json) -> None:
    from ..manage import service_providers

    with as_operator(ready()) as ctx:
        service_providers.remove(ctx, entity_id)
    out(as_json, {"entity_id": entity_id, "removed": True}, f"removed {entity_id}")


@sp.command("set")
@click.argument("entity_id")
@click.option("--setting", "settings", multiple=True, required=True)
@click.option("--json", "as_json", is_flag=True)
def sp_set(entity_id, settings, as_json) -> None:
    """Change per-SP settings (attribute release, NameID format, signing, encryption)."""
    from ..manage import service_providers

    with as_operator(ready()) as ctx:
        row = service_providers.update_settings(ctx, entity_id, _parse_settings(settings))
        result = {"entity_id": row.entity_id, "settings": dict(row.settings)}
    out(as_json, result, json.dumps(result["settings"]))


@saml.group()
def federation() -> None:
    """Federation metadata aggregates."""


@federation.command("add")
@click.argument("name")
@click.option("--url", required=True, help="Where the signed aggregate is published.")
@click.option("--cert", "cert_file", required=True, type=click.Path(dir_okay=False))
@click.option("--include", multiple=True, help="entityID or /regex/ to accept; repeatable.")
@click.option("--exclude", multiple=True, help="entityID or /regex/ to refuse; repeatable.")
@click.option("--registration-authority", "authorities", multiple=True)
@click.option("--entity-category", "categories", multiple=True)
@click.option("--refresh-seconds", type=click.IntRange(60, None), default=3600, show_default=True)
@click.option("--no-refresh", is_flag=True, help="Do not fetch it now.")
@click.option("--json", "as_json", is_flag=True)
def federation_add(
    name,
    url,
    cert_file,
    include,
    exclude,
    authorities,
    categories,
    refresh_seconds,
    no_refresh,
    as_json,
) -> None:
    """Add a federation and import its SPs."""
    from ..storage.models_saml import SamlFederation

    svc = ready()
    try:
        cert = Path(cert_file).read_text()
    except FileNotFoundError:
        raise CliFailure(f"{cert_file} does not exist") from None
    if "BEGIN CERTIFICATE" not in cert:
        raise CliFailure(f"{cert_file} is not a PEM certificate")
    with svc.sessions.begin() as db:
        if db.get(SamlFederation, name) is not None:
            raise CliFailure(f"federation {name!r} already exists")
        db.add(
            SamlFederation(
                name=name,
                url=url,
                cert_pem=cert,
                filters={
                    "include": list(include),
                    "exclude": list(exclude),
                    "registration_authority": list(authorities),
                    "entity_category": list(categories),
                },
                refresh_seconds=refresh_seconds,
            )
        )
    result: dict[str, Any] = {"federation": name}
    if not no_refresh:
        result = _refresh_one(svc, name)
    out(as_json, result, json.dumps(result))


def _refresh_one(svc, name: str) -> dict[str, Any]:
    from federation.aggregate import AggregateError, refresh

    cfg = svc.settings.saml
    try:
        return refresh(
            svc.sessions,
            name,
            svc.clock.utcnow(),
            max_bytes=cfg.max_metadata_bytes,
            timeout=cfg.fetch_timeout,
            min_refresh=cfg.min_refresh_seconds,
        )
    except AggregateError as exc:
        raise CliFailure(f"federation {name}: {exc}") from None


@federation.command("refresh")
@click.argument("name", required=False)
@click.option("--due", "only_due", is_flag=True, help="Only those whose refresh time has come.")
@click.option("--json", "as_json", is_flag=True)
def federation_refresh(name, only_due, as_json) -> None:
    """Re-fetch and re-verify one federation, or every one (run it from cron/systemd)."""
    from federation.aggregate import due

    from ..storage.models_saml import SamlFederation

    svc = ready()
    _sync_configured_sources(svc)
    if name:
        names = [name]
    elif only_due:
        names = due(svc.sessions, svc.clock.utcnow())
    else:
        with svc.sessions() as db:
            names = [f.name for f in db.query(SamlFederation).all()]
    results = [_refresh_one(svc, n) for n in names]
    out(
        as_json,
        {"refreshed": results},
        "\n".join(json.dumps(r) for r in results) or "nothing to do",
    )


def _sync_configured_sources(svc) -> None:
    """Federations listed in saml.federation_sources ("NAME URL CERT_FILE [REFRESH_SECONDS]")
    are created or updated in the table before a refresh."""
    from ..storage.models_saml import SamlFederation

    for entry in svc.settings.saml.federation_sources:
        parts = entry.split()
        refresh = parts[3] if len(parts) == 4 else "0"
        if len(parts) not in (3, 4) or not (refresh.isascii() and refresh.isdigit()):
            raise CliFailure(f"saml.federation_sources entry {entry!r} is not NAME URL CERT_FILE")
        try:
            cert = Path(parts[2]).read_text()
        except OSError:
            raise CliFailure(f"saml.federation_sources: cannot read {parts[2]}") from None
        with svc.sessions.begin() as db:
            fed = db.get(SamlFederation, parts[0])
            if fed is None:
                fed = SamlFederation(name=parts[0], filters={})
                db.add(fed)
            fed.url = parts[1]
            fed.cert_pem = cert
            fed.refresh_seconds = int(parts[3]) if len(parts) == 4 else 3600


@federation.command("list")
@click.option("--json", "as_json", is_flag=True)
def federation_list(as_json) -> None:
    from ..storage.models_saml import SamlFederation

    svc = ready()
    with svc.sessions() as db:
        items = [
            {
                "name": f.name,
                "url": f.url,
                "entities": f.entity_count,
                "valid_until": f.valid_until.isoformat() if f.valid_until else None,
                "next_refresh": f.next_refresh.isoformat() if f.next_refresh else None,
                "last_error": f.last_error,
            }
            for f in db.query(SamlFederation).order_by(SamlFederation.name)
        ]
    out(as_json, {"federations": items}, "\n".join(json.dumps(i) for i in items) or "none")
