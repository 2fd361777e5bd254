"""SAML service providers: register from metadata, read, list, change per-SP settings, enable /
disable, remove.

Permissions: ``saml:providers:create`` / ``saml:providers:update`` / ``saml:providers:delete``
/ ``saml:providers:read``. The metadata is checked by ``idp.saml.registry.SpRegistry``
(entity, endpoint Locations, pysaml2's own reading) before anything is stored. When the
deployment names trusted signers (``[saml] sp_metadata_signers``), or the caller gives a signing
certificate, the metadata must also carry a signature by one of them over the whole document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from ..errors import ValidationError
from ..saml.registry import (
    MetadataFacts,
    SpRegistry,
    SpSummary,
    check_locations,
    describe,
    parse_entity,
    signed_entity,
    validate_settings,
)
from ..sso import network
from ..storage.models import SamlServiceProvider
from .context import Context


def add(
    ctx: Context,
    metadata: bytes | str,
    *,
    origin: str = "manual",
    settings: dict[str, Any] | None = None,
    replace: bool = False,
    signing_certificate: str | None = None,
) -> SamlServiceProvider:
    """Register an SP from its metadata (``replace``: an SP already registered). With
    ``signing_certificate`` (PEM) or configured trusted signers, unsigned metadata or a
    signature by another key is refused."""
    ctx.require("saml:providers:create")
    if replace:
        ctx.require("saml:providers:update")
    signers = [signing_certificate] if signing_certificate else trusted_signers(ctx)
    if signers:
        _check_signed(metadata, signers)
    row = SpRegistry(ctx.db).add(metadata, origin=origin, settings=settings, replace=replace)
    ctx.audit(
        "saml.sp_added",
        row.entity_id,
        origin=origin,
        settings=dict(settings or {}),
        replace=replace,
        signed=bool(signers),
    )
    return row


def trusted_signers(ctx: Context) -> list[str]:
    """The PEM certificates of ``[saml] sp_metadata_signers``."""
    pems = []
    for name in ctx.svc.settings.saml.sp_metadata_signers:
        try:
            pems.append(Path(name).read_text())
        except OSError as exc:
            raise ValidationError(
                f"saml.sp_metadata_signers: cannot read {name}: {exc.strerror}"
            ) from None
    return pems


def _check_signed(metadata: bytes | str, signers: list[str]) -> None:
    """Signed by one of ``signers``, or ValidationError with the reason."""
    reason = "no trusted signer"
    for pem in signers:
        try:
            signed_entity(metadata, pem)
            return
        except ValidationError as exc:
            reason = str(exc)
            if "does not verify" not in reason:
                raise  # unsigned, partly signed or unreadable: no other certificate helps
    raise ValidationError(f"{reason} (SP metadata must be signed by a trusted signer)")


def list_all(ctx: Context) -> list[SpSummary]:
    ctx.require("saml:providers:read")
    return SpRegistry(ctx.db).list()


@dataclass(frozen=True)
class SpQuery:
    q: str | None = None  # contains, over entity id and name
    enabled: bool | None = None
    origin: str | None = None  # exact, or a prefix ending in ":" ("federation:")
    page: int = 1
    per_page: int = 25


def search(ctx: Context, query: SpQuery) -> tuple[list[SamlServiceProvider], int]:
    """One page of SPs (ordered by entity id) and how many match."""
    ctx.require("saml:providers:read")
    sp = SamlServiceProvider
    where = []
    if query.q:
        where.append(
            or_(
                sp.entity_id.contains(query.q, autoescape=True),
                sp.name.contains(query.q, autoescape=True),
            )
        )
    if query.enabled is not None:
        where.append(sp.enabled.is_(query.enabled))
    if query.origin:
        where.append(
            sp.origin.startswith(query.origin, autoescape=True)
            if query.origin.endswith(":")
            else sp.origin == query.origin
        )
    total = ctx.db.scalar(select(func.count()).select_from(sp).where(*where)) or 0
    rows = ctx.db.scalars(
        select(sp)
        .where(*where)
        .order_by(sp.entity_id)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    ).all()
    return list(rows), total


def get(ctx: Context, entity_id: str) -> SamlServiceProvider:
    ctx.require("saml:providers:read")
    return SpRegistry(ctx.db).get(entity_id)


def facts(row: SamlServiceProvider) -> MetadataFacts:
    """Endpoints, certificates and their expiry, as the stored metadata says."""
    return describe(row.metadata_xml)


def remove(ctx: Context, entity_id: str) -> None:
    ctx.require("saml:providers:delete")
    SpRegistry(ctx.db).remove(entity_id)
    ctx.after_commit(lambda: network.rules_changed(ctx.svc))  # its rules went with it
    ctx.audit("saml.sp_removed", entity_id)


def update_settings(
    ctx: Context, entity_id: str, values: dict[str, Any], remove: list[str] = ()
) -> SamlServiceProvider:
    """Change per-SP settings (attribute release, NameID format, signing, encryption);
    ``remove`` names settings that fall back to the [saml] defaults."""
    ctx.require("saml:providers:update")
    registry = SpRegistry(ctx.db)
    before = dict(registry.get(entity_id).settings or {})
    row = registry.update_settings(entity_id, values, list(remove))
    ctx.audit(
        "saml.sp_updated",
        entity_id,
        settings=dict(values),
        removed=sorted(remove),
        **_changes(before, dict(row.settings or {})),
    )
    return row


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The audit row's ``fields`` / ``before`` / ``after`` (the shape of user.updated and
    client.updated): the settings that changed, with their values (None = not set, the
    [saml] default applies)."""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return {
        "fields": changed,
        "before": {k: before.get(k) for k in changed},
        "after": {k: after.get(k) for k in changed},
    }


def set_enabled(ctx: Context, entity_id: str, enabled: bool) -> SamlServiceProvider:
    """A disabled SP stays registered but is unknown to SSO and logout until enabled again."""
    ctx.require("saml:providers:update")
    row = SpRegistry(ctx.db).get(entity_id)
    if row.enabled != enabled:
        row.enabled = enabled
        ctx.db.flush()
        ctx.audit(
            "saml.sp_enabled" if enabled else "saml.sp_disabled",
            entity_id,
            fields=["enabled"],
            before={"enabled": not enabled},
            after={"enabled": enabled},
        )
    return row


def set_settings(ctx: Context, entity_id: str, values: dict[str, Any]) -> SamlServiceProvider:
    """Replace the per-SP settings as a whole (keys left out fall back to the [saml] ones)."""
    ctx.require("saml:providers:update")
    row = SpRegistry(ctx.db).get(entity_id)
    values = validate_settings(values)
    check_locations(parse_entity(row.metadata_xml), bool(values.get("allow_http")))
    before = dict(row.settings or {})
    row.settings = values
    ctx.db.flush()
    ctx.audit(
        "saml.sp_updated",
        entity_id,
        settings=dict(values),
        replaced=True,
        **_changes(before, dict(values)),
    )
    return row
