"""Registered service providers: metadata checked and stored, per-SP settings.

An SP is an ``EntityDescriptor`` with an ``SPSSODescriptor`` for SAML 2.0 (saml-metadata 2.4.4).
The metadata is stored as received (it is what signatures are checked against); per-SP
choices live in ``settings`` beside it.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import isodate
import xmlsec
from cryptography import x509
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.broker import ALIAS_RE
from ..errors import Conflict, NotFound, ValidationError
from ..settings import SAML_ENCRYPTION_ALGORITHMS
from ..storage.models import SamlServiceProvider
from .crypto import DSIG_NS, safe_parser

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
NAME_ID_FORMATS = {
    "persistent": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "transient": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "email": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "unspecified": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
}
FORMAT_NAMES = {v: k for k, v in NAME_ID_FORMATS.items()}

# Per-SP settings and their types; absent keys fall back to the [saml] settings.
SP_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "name_id_format": str,
    "sign_response": bool,
    "sign_assertion": bool,
    "encrypt_assertion": bool,
    "want_authn_requests_signed": bool,
    # Require signed LogoutRequests/LogoutResponses (saml-profiles 4.4.4.1); false lets an SP
    # that cannot sign them off.
    "want_logout_signed": bool,
    # Accept RSA-SHA1 / SHA-1 signatures from this (legacy) SP.
    "allow_sha1": bool,
    # Lab only: accept http:// endpoint Locations for this SP (https only otherwise).
    "allow_http": bool,
    # Block cipher of its encrypted assertions (ENCRYPTION_ALGORITHMS); absent = the [saml] one.
    "encryption_algorithm": str,
    # Names (friendly or URI) of the attributes released; absent = all the mapper gives.
    "attributes": list,
    # Where IdP-initiated SSO lands at the SP (RelayState), and the launcher's label.
    "default_relay_state": str,
    "display_name": str,
    # Aliases of the upstream identity providers offered to its sign-ins (docs/brokering.md);
    # absent = every enabled one.
    "allowed_upstreams": list,
}


ENCRYPTION_ALGORITHMS = SAML_ENCRYPTION_ALGORITHMS
# Endpoints whose Location we put in a form action or a redirect.
_ENDPOINTS = ("AssertionConsumerService", "SingleLogoutService")
# Schemes that run code or read local files where a browser meets them: never accepted.
_NEVER_SCHEMES = ("javascript", "data", "file", "vbscript")


@lru_cache(maxsize=4096)
def location_problem(url: str | None, allow_http: bool = False) -> str | None:
    """Why an SP endpoint Location must not become a form action or a redirect, or None.
    https only (http for an SP with ``allow_http``); javascript:, data:, file: and vbscript:
    never; no spaces or control characters (browsers drop some of them, so "java\tscript:"
    would run)."""
    if not url:
        return "is empty"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "contains spaces or control characters"
    scheme = url.partition(":")[0].lower()
    if scheme in _NEVER_SCHEMES:
        return f"uses the {scheme}: scheme, which is never accepted"
    if scheme == "http":
        if not allow_http:
            return "is http: only https is accepted (allow_http lets a lab SP use http)"
    elif scheme != "https":
        return "is not an https URL"
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        return "has no host"
    return None


def check_locations(entity: etree._Element, allow_http: bool = False) -> None:
    """ValidationError naming the first AssertionConsumerService or SingleLogoutService
    Location (or ResponseLocation) that ``location_problem`` refuses."""
    entity_id = entity.get("entityID") or "the entity"
    for name in _ENDPOINTS:
        for el in entity.iter(f"{{{MD_NS}}}{name}"):
            for attr in ("Location", "ResponseLocation"):
                url = el.get(attr)
                if url is None and attr == "ResponseLocation":
                    continue
                problem = location_problem(url, allow_http)
                if problem:
                    raise ValidationError(
                        f"{entity_id}: {name} {attr} {(url or '')[:200]!r} {problem}"
                    )


def parse_entity(xml: bytes | str) -> etree._Element:
    """Parse one SP EntityDescriptor safely; ValidationError with a readable reason."""
    data = xml.encode() if isinstance(xml, str) else xml
    if b"<!DOCTYPE" in data.upper():
        raise ValidationError("metadata with a DTD is not accepted")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValidationError(f"metadata is not well-formed XML: {exc}") from None
    if root.tag == f"{{{MD_NS}}}EntitiesDescriptor":
        entities = root.findall(f"{{{MD_NS}}}EntityDescriptor")
        if len(entities) != 1:
            raise ValidationError(
                "metadata holds several entities: add them as a federation aggregate"
            )
        root = entities[0]
    if root.tag != f"{{{MD_NS}}}EntityDescriptor":
        raise ValidationError("metadata is not a SAML 2.0 EntityDescriptor")
    return root


def sp_descriptor(entity: etree._Element) -> etree._Element | None:
    for sp in entity.findall(f"{{{MD_NS}}}SPSSODescriptor"):
        if PROTOCOL in (sp.get("protocolSupportEnumeration") or "").split():
            return sp
    return None


def check_sp(entity: etree._Element, allow_http: bool = False) -> str:
    """The entityID of a usable SP entity (its endpoint Locations checked), or
    ValidationError."""
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id or len(entity_id) > 1000:
        raise ValidationError("metadata has no entityID (or one longer than 1000 characters)")
    sp = sp_descriptor(entity)
    if sp is None:
        raise ValidationError(f"{entity_id} has no SAML 2.0 SPSSODescriptor")
    if sp.find(f"{{{MD_NS}}}AssertionConsumerService") is None:
        raise ValidationError(f"{entity_id} has no AssertionConsumerService")
    check_locations(entity, allow_http)
    return entity_id


def standalone_xml(entity: etree._Element) -> str:
    """The entity as its own document (namespaces carried over from an aggregate)."""
    clone = copy.deepcopy(entity)
    return etree.tostring(clone, encoding="unicode")


def has_encryption_cert(entity: etree._Element) -> bool:
    sp = sp_descriptor(entity)
    if sp is None:
        return False
    for kd in sp.findall(f"{{{MD_NS}}}KeyDescriptor"):
        if (
            kd.get("use") in (None, "", "encryption")
            and kd.find(f".//{{{DSIG_NS}}}X509Certificate") is not None
        ):
            return True
    return False


def verify_root_signature(
    root: etree._Element, cert_pem: str, *, noun: str = "the metadata", key: str = "given"
) -> None:
    """The document element carries an enveloped XML signature with a single same-document
    Reference to its own ID, and it verifies with ``cert_pem``: nothing unsigned can sit beside
    the signed part (signature wrapping). ValidationError naming what is wrong."""
    signature = root.find(f"{{{DSIG_NS}}}Signature")
    if signature is None:
        raise ValidationError(f"{noun} is not signed")
    refs = signature.findall(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference")
    root_id = root.get("ID")
    if len(refs) != 1 or not root_id or refs[0].get("URI") != f"#{root_id}":
        raise ValidationError(f"the signature does not cover the whole of {noun}")
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    except xmlsec.Error:
        raise ValidationError(f"the {key} certificate is not a PEM certificate") from None
    try:
        ctx.verify(signature)
    except xmlsec.Error:
        raise ValidationError(
            f"the signature of {noun} does not verify with the {key} certificate"
        ) from None


def signed_entity(xml: bytes | str, cert_pem: str) -> None:
    """Metadata whose signature is required: the document (an EntityDescriptor, or an
    EntitiesDescriptor holding exactly one) must be signed by ``cert_pem``."""
    data = xml.encode() if isinstance(xml, str) else xml
    if b"<!DOCTYPE" in data.upper():
        raise ValidationError("metadata with a DTD is not accepted")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValidationError(f"metadata is not well-formed XML: {exc}") from None
    verify_root_signature(root, cert_pem)


@dataclass
class Endpoint:
    binding: str
    location: str
    response_location: str | None = None
    index: int | None = None
    is_default: bool | None = None


@dataclass
class Certificate:
    use: str  # "signing", "encryption" or "both" (no use attribute)
    subject: str | None
    not_after: datetime | None


@dataclass
class MetadataFacts:
    """What an administrator wants to see of stored SP metadata."""

    acs: list[Endpoint] = field(default_factory=list)
    slo: list[Endpoint] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    valid_until: datetime | None = None
    authn_requests_signed: bool = False
    name_id_formats: list[str] = field(default_factory=list)


def _certificate(text: str | None, use: str) -> Certificate | None:
    try:
        der = base64.b64decode("".join((text or "").split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return Certificate(use, cert.subject.rfc4514_string()[:500], cert.not_valid_after_utc)


def describe(xml: str) -> MetadataFacts:
    """Endpoints, certificates (with their expiry) and validity of stored SP metadata; parts
    that cannot be read are left out rather than refused (the metadata was checked on entry)."""
    entity = parse_entity(xml)
    facts = MetadataFacts()
    until = entity.get("validUntil")
    if until:
        try:
            facts.valid_until = isodate.parse_datetime(until)
        except (ValueError, isodate.ISO8601Error):
            facts.valid_until = None
    sp = sp_descriptor(entity)
    if sp is None:
        return facts
    facts.authn_requests_signed = (sp.get("AuthnRequestsSigned") or "").lower() in ("true", "1")
    for name, out in (("AssertionConsumerService", facts.acs), ("SingleLogoutService", facts.slo)):
        for el in sp.findall(f"{{{MD_NS}}}{name}"):
            index = el.get("index")
            default = el.get("isDefault")
            out.append(
                Endpoint(
                    binding=el.get("Binding") or "",
                    location=el.get("Location") or "",
                    response_location=el.get("ResponseLocation"),
                    index=int(index) if index and index.isascii() and index.isdigit() else None,
                    is_default=default.lower() in ("true", "1") if default else None,
                )
            )
    for kd in sp.findall(f"{{{MD_NS}}}KeyDescriptor"):
        use = kd.get("use") or "both"
        for el in kd.iter(f"{{{DSIG_NS}}}X509Certificate"):
            cert = _certificate(el.text, use)
            if cert is not None:
                facts.certificates.append(cert)
    facts.name_id_formats = [
        (el.text or "").strip() for el in sp.findall(f"{{{MD_NS}}}NameIDFormat") if el.text
    ]
    return facts


def validate_settings(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        kind = SP_SETTINGS.get(key)
        if kind is None:
            raise ValidationError(f"unknown SP setting {key!r}")
        if not isinstance(value, kind):
            raise ValidationError(f"SP setting {key} must be {kind.__name__}")  # type: ignore[union-attr]
        if key == "encryption_algorithm" and value not in ENCRYPTION_ALGORITHMS:
            raise ValidationError(
                "encryption_algorithm must be one of " + ", ".join(ENCRYPTION_ALGORITHMS)
            )
        if key == "allowed_upstreams" and not all(
            isinstance(a, str) and ALIAS_RE.match(a) for a in value
        ):
            raise ValidationError("allowed_upstreams must be a list of upstream aliases")
        if key == "name_id_format" and value not in NAME_ID_FORMATS:
            raise ValidationError(
                "name_id_format must be one of " + ", ".join(sorted(NAME_ID_FORMATS))
            )
        out[key] = value
    return out


@dataclass
class SpSummary:
    entity_id: str
    name: str | None
    origin: str
    enabled: bool


class SpRegistry:
    """CRUD for service providers in the caller's session (the caller commits)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(
        self,
        metadata_xml: bytes | str,
        *,
        origin: str = "manual",
        settings: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> SamlServiceProvider:
        entity = parse_entity(metadata_xml)
        settings = validate_settings(settings or {})
        row = self.db.get(SamlServiceProvider, (entity.get("entityID") or "").strip())
        kept = (row.settings or {}) if row is not None else {}
        entity_id = check_sp(entity, bool(settings.get("allow_http", kept.get("allow_http"))))
        _check_with_pysaml2(standalone_xml(entity))
        if row is not None and not replace:
            raise Conflict(f"service provider {entity_id} is already registered")
        name = _display_name(entity)
        if row is None:
            row = SamlServiceProvider(entity_id=entity_id, settings={})
            self.db.add(row)
        row.metadata_xml = standalone_xml(entity)
        row.name = name
        row.origin = origin
        row.enabled = True
        if settings:
            row.settings = {**(row.settings or {}), **settings}
        self.db.flush()
        return row

    def get(self, entity_id: str) -> SamlServiceProvider:
        row = self.db.get(SamlServiceProvider, entity_id)
        if row is None:
            raise NotFound(f"no service provider {entity_id}")
        return row

    def remove(self, entity_id: str) -> None:
        self.db.delete(self.get(entity_id))
        self.db.flush()

    def update_settings(
        self, entity_id: str, values: dict[str, Any], remove: list[str] = ()
    ) -> SamlServiceProvider:
        """Set ``values`` and drop the settings named in ``remove`` (they fall back to the
        [saml] defaults)."""
        row = self.get(entity_id)
        for key in remove:
            if key not in SP_SETTINGS:
                raise ValidationError(f"unknown SP setting {key!r}")
        merged = {**(row.settings or {}), **validate_settings(values)}
        for key in remove:
            merged.pop(key, None)
        if "allow_http" in values or "allow_http" in remove:
            # Taking it away must not leave http endpoints in use.
            check_locations(parse_entity(row.metadata_xml), bool(merged.get("allow_http")))
        row.settings = merged
        self.db.flush()
        return row

    def list(self) -> list[SpSummary]:
        rows = self.db.scalars(
            select(SamlServiceProvider).order_by(SamlServiceProvider.entity_id)
        ).all()
        return [SpSummary(r.entity_id, r.name, r.origin, r.enabled) for r in rows]


def _display_name(entity: etree._Element) -> str | None:
    for path in (
        ".//{urn:oasis:names:tc:SAML:metadata:ui}DisplayName",
        f".//{{{MD_NS}}}ServiceName",
        f".//{{{MD_NS}}}OrganizationDisplayName",
    ):
        el = entity.find(path)
        if el is not None and el.text and el.text.strip():
            return el.text.strip()[:200]
    return None


def _check_with_pysaml2(xml: str) -> None:
    """pysaml2 must be able to use it (schema-valid, not expired)."""
    from saml2.attribute_converter import ac_factory
    from saml2.mdstore import InMemoryMetaData

    md = InMemoryMetaData(ac_factory(), xml)
    try:
        md.load()
    except Exception as exc:  # pysaml2 raises many unrelated types for bad metadata
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(f"metadata is not usable: {reason[:200]}") from None
    if not md.entity:
        raise ValidationError("metadata is not usable (expired validUntil?)")
