"""Federation metadata aggregates (SAML V2.0 Metadata Interoperability Profile; eduGAIN /
InCommon style): download, verify the signature with the federation's configured certificate,
honour validUntil and cacheDuration, filter entities, and register the SPs that pass.

The signature must cover the document element (the ``EntitiesDescriptor`` itself), with a
single same-document Reference to its ID, so no unsigned entity can be slipped in beside the
signed ones (signature wrapping).
"""

from __future__ import annotations

import logging
import re
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import isodate
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.errors import ValidationError
from idp.saml.crypto import safe_parser
from idp.saml.registry import (
    MD_NS,
    SpRegistry,
    check_sp,
    sp_descriptor,
    standalone_xml,
    verify_root_signature,
)
from idp.storage.models import SamlServiceProvider
from idp.storage.models_saml import SamlFederation

MDRPI_NS = "urn:oasis:names:tc:SAML:metadata:rpi"
MDATTR_NS = "urn:oasis:names:tc:SAML:metadata:attribute"
ENTITY_CATEGORY = "http://macedir.org/entity-category"
log = logging.getLogger("idp.saml.federation")


class AggregateError(Exception):
    """The aggregate cannot be trusted or used; nothing was changed."""


@dataclass
class Filters:
    """Which entities of an aggregate we accept. Empty lists mean "no constraint"."""

    include: list[str] = field(default_factory=list)  # entityIDs or /regex/
    exclude: list[str] = field(default_factory=list)
    registration_authority: list[str] = field(default_factory=list)
    entity_category: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Filters:
        data = data or {}
        return cls(
            **{
                k: list(data.get(k) or [])
                for k in ("include", "exclude", "registration_authority", "entity_category")
            }
        )

    @staticmethod
    def _match(patterns: list[str], value: str) -> bool:
        for p in patterns:
            if len(p) > 2 and p.startswith("/") and p.endswith("/"):
                if re.search(p[1:-1], value):
                    return True
            elif p == value:
                return True
        return False

    def accepts(self, entity: etree._Element) -> bool:
        entity_id = entity.get("entityID") or ""
        if self.include and not self._match(self.include, entity_id):
            return False
        if self.exclude and self._match(self.exclude, entity_id):
            return False
        if self.registration_authority:
            info = entity.find(f"{{{MD_NS}}}Extensions/{{{MDRPI_NS}}}RegistrationInfo")
            authority = info.get("registrationAuthority") if info is not None else None
            if authority not in self.registration_authority:
                return False
        if self.entity_category:
            values = {
                (v.text or "").strip()
                for attr in entity.iterfind(
                    f"{{{MD_NS}}}Extensions/{{{MDATTR_NS}}}EntityAttributes/"
                    "{urn:oasis:names:tc:SAML:2.0:assertion}Attribute"
                )
                if attr.get("Name") == ENTITY_CATEGORY
                for v in attr
            }
            if not values & set(self.entity_category):
                return False
        return True


@dataclass
class Loaded:
    entities: list[etree._Element]
    valid_until: datetime | None
    cache_duration: timedelta | None
    skipped: int
    # SP entities refused (unsafe endpoint Locations, no ACS...): (entityID, reason).
    refused: list[tuple[str, str]] = field(default_factory=list)


def fetch(url: str, *, max_bytes: int, timeout: float) -> bytes:
    if not url.startswith(("https://", "http://", "file://")):
        raise AggregateError(f"unsupported metadata URL {url!r}")
    req = urllib.request.Request(url, headers={"Accept": "application/samlmetadata+xml"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked)
            data = resp.read(max_bytes + 1)
    except OSError as exc:
        raise AggregateError(f"cannot fetch {url}: {exc}") from None
    if len(data) > max_bytes:
        raise AggregateError(f"{url} is larger than {max_bytes} bytes")
    return data


def verify_and_parse(data: bytes, cert_pem: str, now: datetime, filters: Filters) -> Loaded:
    """Check the signature and validity of an aggregate; return the accepted SP entities."""
    if b"<!DOCTYPE" in data[:4096].upper():
        raise AggregateError("metadata with a DTD is not accepted")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise AggregateError(f"metadata is not well-formed XML: {exc}") from None
    if root.tag not in (f"{{{MD_NS}}}EntitiesDescriptor", f"{{{MD_NS}}}EntityDescriptor"):
        raise AggregateError("metadata is not a SAML 2.0 EntitiesDescriptor")
    _verify_root_signature(root, cert_pem)
    valid_until = _parse_instant(root.get("validUntil"))
    if valid_until is not None and valid_until <= now:
        raise AggregateError(f"the aggregate expired at {valid_until.isoformat()} (validUntil)")
    cache = root.get("cacheDuration")
    cache_duration = _parse_duration(cache) if cache else None
    entities: list[etree._Element] = []
    refused: list[tuple[str, str]] = []
    skipped = 0
    candidates = (
        [root]
        if root.tag == f"{{{MD_NS}}}EntityDescriptor"
        else list(root.iter(f"{{{MD_NS}}}EntityDescriptor"))
    )
    for entity in candidates:
        own_until = _parse_instant(entity.get("validUntil"))
        if own_until is not None and own_until <= now:
            skipped += 1
            continue
        if not filters.accepts(entity):
            skipped += 1
            continue
        try:
            check_sp(entity)
        except ValidationError as exc:
            skipped += 1  # IdPs and broken entities are not service providers
            if sp_descriptor(entity) is not None:
                # An SP we would have trusted, refused: the operator should know why.
                refused.append(_refusal(entity.get("entityID") or "", str(exc)))
            continue
        entities.append(entity)
    return Loaded(entities, valid_until, cache_duration, skipped, refused)


def _refusal(entity_id: str, reason: str) -> tuple[str, str]:
    log.warning("federation entity %s refused: %s", entity_id[:300], reason)
    return entity_id[:300], reason


def _verify_root_signature(root: etree._Element, cert_pem: str) -> None:
    try:
        verify_root_signature(root, cert_pem, noun="the aggregate", key="configured")
    except ValidationError as exc:
        raise AggregateError(str(exc)) from None


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return isodate.parse_datetime(value)
    except (ValueError, isodate.ISO8601Error):
        raise AggregateError(f"invalid time {value!r}") from None


def _parse_duration(value: str) -> timedelta:
    try:
        d = isodate.parse_duration(value)
    except (ValueError, isodate.ISO8601Error):
        raise AggregateError(f"invalid cacheDuration {value!r}") from None
    return d if isinstance(d, timedelta) else d.totimedelta(start=datetime(2000, 1, 1))


def import_federation(
    db: Session, fed: SamlFederation, data: bytes, now: datetime, min_refresh: int
) -> dict[str, Any]:
    """Replace the SPs that came from this federation by the aggregate's accepted entities."""
    loaded = verify_and_parse(data, fed.cert_pem, now, Filters.from_dict(fed.filters))
    origin = f"federation:{fed.name}"
    registry = SpRegistry(db)
    existing = {
        r.entity_id: r
        for r in db.scalars(select(SamlServiceProvider).where(SamlServiceProvider.origin == origin))
    }
    added = updated = 0
    seen = set()
    for entity in loaded.entities:
        entity_id = entity.get("entityID")
        row = db.get(SamlServiceProvider, entity_id)
        if row is not None and row.origin != origin:
            continue  # registered by hand or by another source: that registration wins
        if row is not None and row.metadata_xml == standalone_xml(entity):
            seen.add(entity_id)
            continue
        try:
            registry.add(standalone_xml(entity), origin=origin, replace=True)
        except ValidationError as exc:
            loaded.refused.append(_refusal(entity_id, str(exc)))
            continue
        seen.add(entity_id)
        updated += row is not None
        added += row is None
    removed = 0
    for entity_id, row in existing.items():
        if entity_id not in seen:
            db.delete(row)
            removed += 1
    refresh = timedelta(seconds=fed.refresh_seconds)
    if loaded.cache_duration is not None:
        refresh = min(refresh, loaded.cache_duration)
    refresh = max(refresh, timedelta(seconds=min_refresh))
    next_refresh = now + refresh
    if loaded.valid_until is not None:
        next_refresh = min(next_refresh, loaded.valid_until)
    fed.last_refresh = now
    fed.valid_until = loaded.valid_until
    fed.next_refresh = next_refresh
    fed.last_error = None
    fed.entity_count = len(seen)
    db.flush()
    return {
        "federation": fed.name,
        "entities": len(seen),
        "added": added,
        "updated": updated,
        "removed": removed,
        "skipped": loaded.skipped,
        "refused": [{"entity_id": e, "reason": r} for e, r in loaded.refused],
        "valid_until": loaded.valid_until.isoformat() if loaded.valid_until else None,
        "next_refresh": next_refresh.isoformat(),
    }


def refresh(
    sessions,
    name: str,
    now: datetime,
    *,
    max_bytes: int,
    timeout: float,
    min_refresh: int,
    data: bytes | None = None,
) -> dict[str, Any]:
    """Fetch and import one federation; on failure record the error and keep the old SPs
    until the previous aggregate's validUntil passes."""
    with sessions.begin() as db:
        fed = db.get(SamlFederation, name)
        if fed is None:
            raise AggregateError(f"no federation {name!r}")
        url = fed.url
    try:
        payload = data if data is not None else fetch(url, max_bytes=max_bytes, timeout=timeout)
        with sessions.begin() as db:
            fed = db.get(SamlFederation, name)
            return import_federation(db, fed, payload, now, min_refresh)
    except AggregateError as exc:
        with sessions.begin() as db:
            fed = db.get(SamlFederation, name)
            fed.last_error = str(exc)[:1000]
            fed.next_refresh = now + timedelta(seconds=min_refresh)
            if fed.valid_until is not None and fed.valid_until <= now:
                # The last good aggregate is no longer valid: its SPs lose their trust.
                for row in db.scalars(
                    select(SamlServiceProvider).where(
                        SamlServiceProvider.origin == f"federation:{name}"
                    )
                ):
                    row.enabled = False
        raise


def due(sessions, now: datetime) -> list[str]:
    """Federations whose next refresh time has come (for a scheduler or cron)."""
    with sessions() as db:
        rows = db.scalars(select(SamlFederation)).all()
        return [f.name for f in rows if f.next_refresh is None or f.next_refresh <= now]
