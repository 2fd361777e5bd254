"""SAML service providers: register from metadata, change per-SP settings, remove, list.

Permissions: ``saml:providers:create`` / ``saml:providers:update`` / ``saml:providers:delete``
/ ``saml:providers:read``. The metadata is checked by ``idp.saml.registry.SpRegistry``
(entity, endpoints, pysaml2's own reading) before anything is stored.
"""

from __future__ import annotations

from typing import Any

from ..saml.registry import (
    SpRegistry,
    SpSummary,
    check_locations,
    parse_entity,
    validate_settings,
)
from ..storage.models import SamlServiceProvider
from .context import Context


def add(
    ctx: Context,
    metadata: bytes | str,
    *,
    origin: str = "manual",
    settings: dict[str, Any] | None = None,
    replace: bool = False,
) -> SamlServiceProvider:
    """Register an SP from its metadata (``replace``: an SP already registered)."""
    ctx.require("saml:providers:create")
    if replace:
        ctx.require("saml:providers:update")
    row = SpRegistry(ctx.db).add(metadata, origin=origin, settings=settings, replace=replace)
    ctx.audit(
        "saml.sp_added",
        row.entity_id,
        origin=origin,
        settings=dict(settings or {}),
        replace=replace,
    )
    return row


def list_all(ctx: Context) -> list[SpSummary]:
    ctx.require("saml:providers:read")
    return SpRegistry(ctx.db).list()


def remove(ctx: Context, entity_id: str) -> None:
    ctx.require("saml:providers:delete")
    SpRegistry(ctx.db).remove(entity_id)
    ctx.audit("saml.sp_removed", entity_id)


def update_settings(ctx: Context, entity_id: str, values: dict[str, Any]) -> SamlServiceProvider:
    """Change per-SP settings (attribute release, NameID format, signing, encryption)."""
    ctx.require("saml:providers:update")
    row = SpRegistry(ctx.db).update_settings(entity_id, values)
    ctx.audit("saml.sp_updated", entity_id, settings=dict(values))
    return row


def set_settings(ctx: Context, entity_id: str, values: dict[str, Any]) -> SamlServiceProvider:
    """Replace the per-SP settings as a whole (keys left out fall back to the [saml] ones)."""
    ctx.require("saml:providers:update")
    row = SpRegistry(ctx.db).get(entity_id)
    values = validate_settings(values)
    check_locations(parse_entity(row.metadata_xml), bool(values.get("allow_http")))
    row.settings = values
    ctx.db.flush()
    ctx.audit("saml.sp_updated", entity_id, settings=dict(values), replaced=True)
    return row
