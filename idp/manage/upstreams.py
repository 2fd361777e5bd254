"""Upstream identity providers as admin operations (CLI, REST API, console; docs/brokering.md):
add, list, read, change, remove, and the links of a user.

The client secret is sealed at rest (``Services.sealer``, bound to the alias) and never shown
back, logged or written into audit rows: views say only ``has_secret``. A provider's protocol
settings are checked by its protocol (``idp.broker.protocol(kind).check_config``), mapping
rules and home-realm domains by ``idp.core.broker``. Each change is audited as
``upstream.created`` / ``upstream.updated`` / ``upstream.deleted`` (``upstream.unlinked`` for a
link), with the changed fields (never the secret's value).

Permissions: ``broker:upstreams:read`` / ``create`` / ``update`` / ``delete``; reading or removing
a user's links also needs ``users:users:read`` / ``update`` over that user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from ..broker import UpstreamError, callback_url, protocol
from ..core.broker import ALIAS_RE, KINDS, SYNC_MODES, parse_domains, parse_rules
from ..errors import Conflict, NotFound, ValidationError
from ..storage.models import User
from ..storage.models_broker import UpstreamLink, UpstreamProvider
from .context import Context

FIELDS = ("display_name", "enabled", "hide_on_login", "config", "mapping", "hrd_domains",
          "sync_mode", "create_users", "link_by_email")
_FLAGS = ("enabled", "hide_on_login", "create_users", "link_by_email")


def view(ctx: Context, prov: UpstreamProvider) -> dict[str, Any]:
    return {
        "alias": prov.alias,
        "kind": prov.kind,
        "display_name": prov.display_name,
        "enabled": prov.enabled,
        "hide_on_login": prov.hide_on_login,
        "config": dict(prov.config or {}),
        "has_secret": bool(prov.secret_enc),
        "mapping": list(prov.mapping or []),
        "hrd_domains": list(prov.hrd_domains or []),
        "sync_mode": prov.sync_mode,
        "create_users": prov.create_users,
        "link_by_email": prov.link_by_email,
        "redirect_uri": callback_url(ctx.svc, prov.alias),
        **(_saml_endpoints(ctx, prov.alias) if prov.kind == "saml" else {}),
    }


def _saml_endpoints(ctx: Context, alias: str) -> dict[str, str]:
    """What to register at a SAML upstream: our SP's metadata URL (its entityID), ACS, SLS."""
    # Imported here: pysaml2 loads only when a SAML upstream is handled (the CLI starts without).
    from ..broker.saml_metadata import sp_endpoints

    ends = sp_endpoints(ctx.svc, alias)
    return {"sp_metadata_url": ends.entity_id, "acs_url": ends.acs, "sls_url": ends.sls}


def _with_metadata(ctx: Context, kind: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """A SAML upstream's config naming ``metadata_url`` and no ``metadata_xml``: the metadata
    fetched there (under the outbound policy of ``[broker]``)."""
    config = values.get("config")
    if (
        kind != "saml"
        or not isinstance(config, Mapping)
        or not config.get("metadata_url")
        or config.get("metadata_xml")
    ):
        return values
    from ..broker.saml_metadata import fetch_idp_metadata

    xml = fetch_idp_metadata(ctx.svc, str(config["metadata_url"]))
    return {**values, "config": {**config, "metadata_xml": xml}}


def _row(ctx: Context, alias: str) -> UpstreamProvider:
    row = ctx.db.scalar(select(UpstreamProvider).where(UpstreamProvider.alias == alias))
    if row is None:
        raise NotFound(f"no upstream identity provider {alias!r}")
    return row


def list_all(ctx: Context) -> list[dict[str, Any]]:
    ctx.require("broker:upstreams:read")
    rows = ctx.db.scalars(select(UpstreamProvider).order_by(UpstreamProvider.alias)).all()
    return [view(ctx, r) for r in rows]


def get(ctx: Context, alias: str) -> dict[str, Any]:
    ctx.require("broker:upstreams:read")
    return view(ctx, _row(ctx, alias))


def _checked(kind: str, values: Mapping[str, Any], has_secret: bool) -> dict[str, Any]:
    """The settings among ``values``, each checked; ValidationError naming the problem."""
    out: dict[str, Any] = {}
    try:
        if "display_name" in values:
            name = str(values["display_name"] or "").strip()
            if not name or len(name) > 200:
                raise ValueError("display_name must be 1-200 characters")
            out["display_name"] = name
        for flag in _FLAGS:
            if flag in values:
                if not isinstance(values[flag], bool):
                    raise ValueError(f"{flag} must be true or false")
                out[flag] = values[flag]
        if "sync_mode" in values:
            if values["sync_mode"] not in SYNC_MODES:
                raise ValueError(f"sync_mode must be one of {', '.join(SYNC_MODES)}")
            out["sync_mode"] = values["sync_mode"]
        if "mapping" in values:
            out["mapping"] = [r.as_dict() for r in parse_rules(values["mapping"])]
        if "hrd_domains" in values:
            out["hrd_domains"] = parse_domains(values["hrd_domains"])
        if "config" in values:
            if not isinstance(values["config"], Mapping):
                raise ValueError("config must be an object")
            out["config"] = protocol(kind).check_config(values["config"], has_secret)
    except (ValueError, UpstreamError) as exc:
        raise ValidationError(str(exc)) from None
    return out


def _seal(ctx: Context, alias: str, secret: str) -> str:
    return ctx.svc.sealer.seal(secret.encode(), f"upstream:{alias}")


def create(ctx: Context, alias: str, kind: str, values: Mapping[str, Any],
           secret: str | None = None) -> dict[str, Any]:
    ctx.require("broker:upstreams:create")
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise ValidationError(
            "alias must be 1-63 lower-case letters, digits, - or _, starting with a letter or digit"
        )
    try:
        protocol(kind)
    except UpstreamError:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}") from None
    if ctx.db.scalar(select(UpstreamProvider.id).where(UpstreamProvider.alias == alias)):
        raise Conflict(f"upstream identity provider {alias!r} already exists")
    if "config" not in values or "display_name" not in values:
        raise ValidationError("display_name and config are required")
    checked = _checked(kind, _with_metadata(ctx, kind, values), has_secret=bool(secret))
    row = UpstreamProvider(alias=alias, kind=kind, **checked)
    if secret:
        row.secret_enc = _seal(ctx, alias, secret)
    ctx.db.add(row)
    ctx.db.flush()
    ctx.audit("upstream.created", alias, kind=kind, **{k: v for k, v in checked.items()},
              has_secret=bool(secret))
    return view(ctx, row)


def update(ctx: Context, alias: str, values: Mapping[str, Any],
           secret: str | None = None) -> dict[str, Any]:
    """Change the given settings (``config`` is replaced whole); ``secret`` replaces the
    client secret when given."""
    ctx.require("broker:upstreams:update")
    row = _row(ctx, alias)
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValidationError(f"unknown field {sorted(unknown)[0]!r}")
    checked = _checked(
        row.kind, _with_metadata(ctx, row.kind, values), has_secret=bool(secret or row.secret_enc)
    )
    changed = {k: v for k, v in checked.items() if getattr(row, k) != v}
    for name, value in changed.items():
        setattr(row, name, value)
    if secret:
        row.secret_enc = _seal(ctx, alias, secret)
    if changed or secret:
        ctx.db.flush()
        ctx.audit("upstream.updated", alias, fields=sorted(changed), secret_changed=bool(secret))
    return view(ctx, row)


def delete(ctx: Context, alias: str) -> None:
    """Remove the provider and every link to it (its people keep their local accounts)."""
    ctx.require("broker:upstreams:delete")
    row = _row(ctx, alias)
    links = len(ctx.db.scalars(
        select(UpstreamLink.id).where(UpstreamLink.provider_id == row.id)).all())
    ctx.db.delete(row)
    ctx.db.flush()
    ctx.audit("upstream.deleted", alias, links=links)


def links_of(ctx: Context, user_id: int) -> list[dict[str, Any]]:
    ctx.require("users:users:read", user_id)
    rows = ctx.db.execute(
        select(UpstreamLink, UpstreamProvider.alias)
        .join(UpstreamProvider, UpstreamProvider.id == UpstreamLink.provider_id)
        .where(UpstreamLink.user_id == user_id)
        .order_by(UpstreamProvider.alias)
    ).all()
    return [{"provider": alias, "subject": link.subject, "linked_at": link.linked_at,
             "last_login_at": link.last_login_at} for link, alias in rows]


def unlink(ctx: Context, user_id: int, alias: str) -> None:
    ctx.require("users:users:update", user_id)
    row = _row(ctx, alias)
    user = ctx.db.get(User, user_id)
    link = ctx.db.scalar(select(UpstreamLink).where(
        UpstreamLink.provider_id == row.id, UpstreamLink.user_id == user_id))
    if user is None or link is None:
        raise NotFound(f"the user has no link to {alias!r}")
    ctx.db.delete(link)
    ctx.db.flush()
    ctx.audit("upstream.unlinked", user.uuid, provider=alias)
