"""``/api/v1/saml/providers``: SAML 2.0 service providers (``docs/api.md``, "SAML service
providers").

An SP is named in paths by ``id``, the unpadded base64url encoding (RFC 4648 §5) of its UTF-8
entityID: entity ids are URLs, which do not fit in a path segment. Every representation
carries both ``id`` and ``entity_id``. An SP is added by sending its metadata as the body
(``application/samlmetadata+xml``), with settings to store in the query, through the same
checks as ``idp saml sp add`` (and, when ``[saml] sp_metadata_signers`` is set, a signature by
one of those certificates).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from flask import request
from pydantic import ConfigDict, Field

from ...errors import Conflict, NotFound
from ...errors import ValidationError as InputError
from ...manage import service_providers as sps
from ...saml.registry import ENCRYPTION_ALGORITHMS, NAME_ID_FORMATS, parse_entity
from ...storage.models import SamlServiceProvider
from .common import (
    EXACT_QUERY,
    ApiModel,
    Page,
    PageQuery,
    Strict,
    anchored,
    drop_null_defaults,
    matching,
)
from .framework import PREFIX, ApiProblem, Call, Reply, etag_of, operation

SAML_METADATA = "application/samlmetadata+xml"
XML_TYPES = (SAML_METADATA, "application/xml", "text/xml")


def provider_id(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def entity_id_of(provider: str) -> str:
    """The entityID an ``id`` names; 404 for anything that is not a canonical encoding."""
    missing = NotFound("no such service provider")
    if not provider or len(provider) > 2000:
        raise missing
    try:
        raw = base64.urlsafe_b64decode(provider + "=" * (-len(provider) % 4))
        entity_id = raw.decode()
    except (binascii.Error, ValueError):
        raise missing from None
    if provider_id(entity_id) != provider:
        raise missing
    return entity_id


class SpSettings(Strict):
    """Per-SP settings; an absent one falls back to the ``[saml]`` configuration."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name_id_format: Literal[tuple(sorted(NAME_ID_FORMATS))] | None = None
    sign_response: bool | None = None
    sign_assertion: bool | None = None
    encrypt_assertion: bool | None = None
    want_authn_requests_signed: bool | None = None
    want_logout_signed: bool | None = Field(
        None, description="require signed LogoutRequests / LogoutResponses"
    )
    allow_sha1: bool | None = Field(None, description="accept RSA-SHA1 / SHA-1 signatures")
    allow_http: bool | None = Field(None, description="lab only: http:// endpoint Locations")
    encryption_algorithm: Literal[ENCRYPTION_ALGORITHMS] | None = None
    attributes: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=200)]
        | None
    ) = Field(None, description="names of the attributes released; absent: all")
    default_relay_state: str | None = Field(
        None, max_length=80, description="RelayState of IdP-initiated SSO (at most 80 bytes)"
    )
    display_name: str | None = Field(None, max_length=200)


MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
# An entity identifier is an absolute URI (saml-core 8.3.6); the API takes one without spaces.
ENTITY_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[!-~]{1,990}$(?!\n)"
# The form of endpoint Locations the API takes: https with a host name, a path and a query of
# printable URI characters (the registry alone would take any https URL with a host; lab SPs
# with http endpoints are registered with ``idp saml sp add --allow-http``).
LOCATION_PATTERN = (
    r"^https://[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::[1-9][0-9]{0,3})?"
    r"(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@%/?\[\]-]*)?$(?!\n)"
)
SAML2_PROTOCOL_PATTERN = r"(?:^|[ \t\n\r])urn:oasis:names:tc:SAML:2\.0:protocol(?:[ \t\n\r]|$)"
# The elements of the metadata schema (saml-metadata 2.0): anything else in its namespace, and
# any element in no namespace at all, makes the document invalid.
MD_ELEMENTS = frozenset(
    """EntitiesDescriptor EntityDescriptor Extensions RoleDescriptor IDPSSODescriptor
    SPSSODescriptor AuthnAuthorityDescriptor AttributeAuthorityDescriptor PDPDescriptor
    AffiliationDescriptor AffiliateMember Organization OrganizationName OrganizationDisplayName
    OrganizationURL ContactPerson Company GivenName SurName EmailAddress TelephoneNumber
    AdditionalMetadataLocation KeyDescriptor EncryptionMethod ArtifactResolutionService
    SingleLogoutService ManageNameIDService NameIDFormat AssertionConsumerService
    AttributeConsumingService ServiceName ServiceDescription RequestedAttribute
    SingleSignOnService NameIDMappingService AssertionIDRequestService AttributeProfile
    AttributeService AuthnQueryService AuthzService""".split()
)


def _xml(**options: Any) -> dict[str, Any]:
    return {"xml": {"namespace": MD_NS, "prefix": "md", **options}}


def _attribute(pattern: str | None = None, **kw: Any) -> Any:
    # The pattern is published, and enforced by the handler and the registry, not here: this
    # model documents an XML body, it does not read it.
    extra: dict[str, Any] = {"xml": {"attribute": True}}
    if pattern:
        extra["pattern"] = pattern
    return Field(json_schema_extra=extra, **kw)


class AssertionConsumerService(ApiModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_xml())

    Location: str = _attribute(max_length=2000, pattern=LOCATION_PATTERN)


class SPSSODescriptor(ApiModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_xml())

    protocolSupportEnumeration: str = _attribute(
        pattern=SAML2_PROTOCOL_PATTERN, description="lists the SAML 2.0 protocol"
    )
    AssertionConsumerService: AssertionConsumerService


class EntityDescriptor(ApiModel):
    """SAML 2.0 metadata of one service provider (saml-metadata 2.3.2), sent as
    ``application/samlmetadata+xml``. The schema shows what the IdP requires: an absolute
    entityID, an SPSSODescriptor for the SAML 2.0 protocol and an AssertionConsumerService
    whose Location is https. The rest of SAML 2.0 metadata (Binding and index, KeyDescriptors,
    SingleLogoutService, NameIDFormat, an EntitiesDescriptor holding exactly one entity, an
    enveloped Signature...) is accepted as usual; no endpoint Location may be http (unless
    ``allow_http``) or javascript:, data:, file:, vbscript:."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_xml(name="EntityDescriptor"))

    entityID: str = _attribute(max_length=1000, pattern=ENTITY_ID_PATTERN)
    SPSSODescriptor: SPSSODescriptor


class SpAddQuery(Strict):
    """Per-SP settings to store with a new SP (more with PATCH later)."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=False, json_schema_extra=drop_null_defaults
    )

    allow_sha1: bool = Field(None, description="accept RSA-SHA1 / SHA-1 signatures")
    want_logout_signed: bool = Field(
        None, description="require signed LogoutRequests / LogoutResponses"
    )
    encryption_algorithm: Literal[ENCRYPTION_ALGORITHMS] = None
    name_id_format: Literal[tuple(sorted(NAME_ID_FORMATS))] = None


class SpPatch(Strict):
    """JSON merge patch: absent members stay; in ``settings``, ``null`` removes a setting (it
    falls back to the [saml] default)."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=False, json_schema_extra=drop_null_defaults
    )

    enabled: bool = None
    settings: SpSettings = None


class EndpointOut(ApiModel):
    binding: str
    location: str
    response_location: str | None
    index: int | None
    is_default: bool | None


class CertificateOut(ApiModel):
    use: str
    subject: str | None
    not_after: datetime | None


class SpOut(ApiModel):
    id: str = Field(description="base64url (unpadded) of the entity_id: use it in paths")
    entity_id: str
    name: str | None
    origin: str
    enabled: bool
    settings: dict[str, Any]
    assertion_consumer_services: list[EndpointOut]
    single_logout_services: list[EndpointOut]
    certificates: list[CertificateOut]
    certificate_expires_at: datetime | None = Field(
        description="the earliest expiry among the metadata's certificates"
    )
    metadata_valid_until: datetime | None
    authn_requests_signed: bool
    name_id_formats: list[str]
    created_at: datetime | None
    updated_at: datetime | None


class SpPage(Page[SpOut]):
    pass


ORIGIN = anchored(r"api|manual|url:[!-~]*|federation:[!-~]*")


class SpQuery(PageQuery):
    model_config = EXACT_QUERY

    q: str = Field(None, max_length=200, description="contains, over entity id and name")
    enabled: bool = None
    origin: Annotated[str, *matching(ORIGIN)] = Field(
        None,
        max_length=300,
        description='"api", "manual", "url:…", "federation:NAME", or a prefix ending in ":"',
    )


def _endpoint(e) -> EndpointOut:
    return EndpointOut(
        binding=e.binding,
        location=e.location,
        response_location=e.response_location,
        index=e.index,
        is_default=e.is_default,
    )


def _out(row: SamlServiceProvider) -> SpOut:
    facts = sps.facts(row)
    expiries = [c.not_after for c in facts.certificates if c.not_after is not None]
    return SpOut(
        id=provider_id(row.entity_id),
        entity_id=row.entity_id,
        name=row.name,
        origin=row.origin,
        enabled=row.enabled,
        settings=dict(row.settings or {}),
        assertion_consumer_services=[_endpoint(e) for e in facts.acs],
        single_logout_services=[_endpoint(e) for e in facts.slo],
        certificates=[
            CertificateOut(use=c.use, subject=c.subject, not_after=c.not_after)
            for c in facts.certificates
        ],
        certificate_expires_at=min(expiries) if expiries else None,
        metadata_valid_until=facts.valid_until,
        authn_requests_signed=facts.authn_requests_signed,
        name_id_formats=facts.name_id_formats,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@operation(
    "GET",
    "/saml/providers",
    tag="saml",
    summary="List SAML service providers",
    query=SpQuery,
    response=SpPage,
)
def list_saml_providers(call: Call) -> Reply:
    q: SpQuery = call.query
    with call.transaction() as ctx:
        rows, total = sps.search(
            ctx, sps.SpQuery(q.q, q.enabled, q.origin, page=q.page, per_page=q.per_page)
        )
        items = [_out(r) for r in rows]
    return Reply(body=SpPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/saml/providers",
    tag="saml",
    summary="Add a SAML service provider from its metadata",
    query=SpAddQuery,
    body=EntityDescriptor,
    body_media=SAML_METADATA,
    response=SpOut,
    status=201,
    errors=(409, 413, 415),
    description="The body is the SP's metadata (`application/samlmetadata+xml`; "
    "`application/xml` is taken too), checked as `idp saml sp add` checks it; the query "
    "carries settings to store with it. When `[saml] sp_metadata_signers` is set, the metadata "
    "must be signed by one of those certificates. 409 when the entity is already registered.",
)
def add_saml_provider(call: Call) -> Reply:
    if request.mimetype not in XML_TYPES:
        raise ApiProblem(
            415,
            "Unsupported media type",
            f"Send the metadata as {SAML_METADATA}.",
            kind="unsupported-media-type",
        )
    limit = call.svc.settings.saml.max_metadata_bytes
    if (request.content_length or 0) > limit:
        raise ApiProblem(
            413, "Content too large", f"metadata is larger than {limit} bytes", kind="too-large"
        )
    metadata = request.get_data(cache=False)
    _check_form(metadata)
    q: SpAddQuery = call.query
    settings = q.model_dump(exclude_none=True)
    with call.transaction() as ctx:
        row = sps.add(ctx, metadata, origin="api", settings=settings)
        out = _out(row)
    return Reply(status=201, body=out, headers={"Location": f"{PREFIX}/saml/providers/{out.id}"})


def _check_form(metadata: bytes) -> None:
    """What the API takes beyond the registry's own checks, as its schema publishes it: only
    elements of SAML metadata (every element in a namespace, none unknown in the metadata
    namespace), an entityID that is an absolute URI without spaces, and endpoint Locations of
    the form ``LOCATION_PATTERN``."""
    entity = parse_entity(metadata)
    for el in entity.getroottree().iter():
        if not isinstance(el.tag, str):
            continue  # comments and processing instructions
        namespace, _, name = el.tag[1:].partition("}") if el.tag.startswith("{") else ("", "", "")
        if not namespace:
            raise InputError(f"metadata has an element without a namespace: <{el.tag[:100]}>")
        if namespace == MD_NS and name not in MD_ELEMENTS:
            raise InputError(f"metadata has an element unknown to SAML 2.0 metadata: md:{name}")
    entity_id = (entity.get("entityID") or "").strip()
    if entity_id and not re.search(ENTITY_ID_PATTERN, entity_id):
        raise InputError(f"entityID {entity_id[:200]!r} is not an absolute URI without spaces")
    for name in ("AssertionConsumerService", "SingleLogoutService"):
        for el in entity.iter(f"{{{MD_NS}}}{name}"):
            for attr in ("Location", "ResponseLocation"):
                url = el.get(attr)
                if url is not None and (len(url) > 2000 or not re.search(LOCATION_PATTERN, url)):
                    raise InputError(
                        f"{name} {attr} {url[:200]!r} is not an https URL of the form the API "
                        "takes (https://host[:port][/path][?query])"
                    )


@operation(
    "GET",
    "/saml/providers/{provider_id}",
    tag="saml",
    summary="Read a SAML service provider",
    response=SpOut,
    etag=True,
    description="`provider_id` is the unpadded base64url of the entity id.",
)
def read_saml_provider(call: Call, provider_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    with call.transaction() as ctx:
        out = _out(sps.get(ctx, entity_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/saml/providers/{provider_id}",
    tag="saml",
    summary="Change a service provider's settings, enable or disable it",
    body=SpPatch,
    response=SpOut,
    etag=True,
    errors=(409,),
    description="JSON merge patch. 409 when the stored metadata forbids the change (taking "
    "allow_http from an SP whose endpoints are http).",
)
def patch_saml_provider(call: Call, provider_id: str) -> Reply:
    body: SpPatch = call.body
    entity_id = entity_id_of(provider_id)
    with call.transaction() as ctx:
        call.if_match(etag_of(_out(sps.get(ctx, entity_id))))
        if body.settings is not None:
            given = body.settings.model_dump(exclude_unset=True)
            values = {k: v for k, v in given.items() if v is not None}
            removed = sorted(k for k, v in given.items() if v is None)
            if values or removed:
                try:
                    sps.update_settings(ctx, entity_id, values, removed)
                except InputError as exc:
                    # Only the stored metadata can make valid settings fail (allow_http taken
                    # from an SP with http endpoints): a conflict with its state.
                    raise Conflict(str(exc)) from None
        if body.enabled is not None:
            sps.set_enabled(ctx, entity_id, body.enabled)
        out = _out(sps.get(ctx, entity_id))
    return Reply(body=out)


@operation(
    "DELETE",
    "/saml/providers/{provider_id}",
    tag="saml",
    summary="Remove a SAML service provider",
    status=204,
    etag=True,
)
def delete_saml_provider(call: Call, provider_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    with call.transaction() as ctx:
        call.if_match(etag_of(_out(sps.get(ctx, entity_id))))
        sps.remove(ctx, entity_id)
    return Reply(status=204)
