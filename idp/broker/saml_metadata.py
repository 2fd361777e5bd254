"""Metadata for brokering to an upstream SAML 2.0 IdP (saml-metadata 2.4.3, 2.4.4): the
upstream's ``IDPSSODescriptor`` read and checked (safe XML, endpoints, signing keys), and our
own service provider's ``SPSSODescriptor`` for that upstream, signed with our keys.

Each upstream gets its own SP entity: ``{issuer}/broker/<alias>/saml/metadata``, with its
AssertionConsumerService (HTTP-POST) at ``…/saml/acs`` and its SingleLogoutService
(HTTP-Redirect and HTTP-POST) at ``…/saml/sls``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

import isodate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, md
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256, KeyInfo, X509Certificate, X509Data

from ..errors import ValidationError
from ..oidc.fetch import OutboundError
from ..saml.crypto import DSIG_NS
from ..saml.engine import saml_idp
from ..saml.registry import MD_NS, PROTOCOL, location_problem, parse_entity
from ..services import Services
from .http import fetcher

# The bindings we send AuthnRequests and LogoutRequests by, in our order of preference.
BINDINGS = (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST)


@dataclass(frozen=True)
class UpstreamIdpMetadata:
    """What brokering needs of an upstream IdP's metadata."""

    entity_id: str
    sso: dict[str, str]  # binding -> Location of its SingleSignOnService
    slo: dict[str, tuple[str, str]] = field(default_factory=dict)  # binding -> (Location, resp.)
    signing_certs: tuple[str, ...] = ()  # PEM
    want_authn_requests_signed: bool = False
    valid_until: datetime | None = None


def _pem(text: str | None) -> str | None:
    try:
        der = base64.b64decode("".join((text or "").split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return cert.public_bytes(Encoding.PEM).decode()


def parse_idp_metadata(
    xml: str | bytes, *, now: datetime | None, allow_http: bool = False
) -> UpstreamIdpMetadata:
    """Read an upstream IdP's EntityDescriptor (or an EntitiesDescriptor holding one), or
    ValidationError saying what is wrong: no DTD, a SAML 2.0 IDPSSODescriptor, a
    SingleSignOnService by HTTP-Redirect or HTTP-POST at an https Location (http only with
    ``allow_http``), at least one signing certificate, and not past its validUntil (unless
    ``now`` is None: checked when it is used)."""
    entity = parse_entity(xml)
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id or len(entity_id) > 1000:
        raise ValidationError("metadata has no entityID (or one longer than 1000 characters)")
    until = entity.get("validUntil")
    valid_until = None
    if until:
        try:
            valid_until = isodate.parse_datetime(until)
        except (ValueError, isodate.ISO8601Error):
            raise ValidationError("the metadata's validUntil is not a valid time") from None
        if valid_until.tzinfo is None:
            valid_until = valid_until.replace(tzinfo=UTC)
        if now is not None and valid_until <= now:
            raise ValidationError(f"the metadata of {entity_id} expired at {until}")
    descriptor = next(
        (
            d
            for d in entity.findall(f"{{{MD_NS}}}IDPSSODescriptor")
            if PROTOCOL in (d.get("protocolSupportEnumeration") or "").split()
        ),
        None,
    )
    if descriptor is None:
        raise ValidationError(f"{entity_id} has no SAML 2.0 IDPSSODescriptor")
    sso = _endpoints(descriptor, "SingleSignOnService", allow_http)
    if not sso:
        raise ValidationError(
            f"{entity_id} has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding"
        )
    slo = {
        binding: (location, response or location)
        for binding, (location, response) in _endpoint_pairs(
            descriptor, "SingleLogoutService", allow_http
        ).items()
    }
    certs = []
    for kd in descriptor.findall(f"{{{MD_NS}}}KeyDescriptor"):
        if kd.get("use") not in (None, "", "signing"):
            continue
        for el in kd.iter(f"{{{DSIG_NS}}}X509Certificate"):
            pem = _pem(el.text)
            if pem is None:
                raise ValidationError(f"{entity_id} has a signing certificate that cannot be read")
            certs.append(pem)
    if not certs:
        raise ValidationError(f"{entity_id} has no signing certificate in its metadata")
    return UpstreamIdpMetadata(
        entity_id=entity_id,
        sso=sso,
        slo=slo,
        signing_certs=tuple(dict.fromkeys(certs)),
        want_authn_requests_signed=(descriptor.get("WantAuthnRequestsSigned") or "").lower()
        in ("true", "1"),
        valid_until=valid_until,
    )


def _endpoint_pairs(descriptor, name: str, allow_http: bool) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for el in descriptor.findall(f"{{{MD_NS}}}{name}"):
        binding = el.get("Binding")
        if binding not in BINDINGS or binding in out:
            continue
        location = (el.get("Location") or "").strip()
        response = el.get("ResponseLocation")
        for url in (location, response) if response is not None else (location,):
            problem = location_problem(url, allow_http)
            if problem:
                raise ValidationError(f"{name} Location {url[:200]!r} {problem}")
        out[binding] = (location, response.strip() if response else None)
    return out


def _endpoints(descriptor, name: str, allow_http: bool) -> dict[str, str]:
    return {b: loc for b, (loc, _) in _endpoint_pairs(descriptor, name, allow_http).items()}


def fetch_idp_metadata(svc: Services, url: str) -> str:
    """The metadata document at ``url``, fetched under the outbound policy (idp.oidc.fetch:
    https only, no private addresses, no redirects, bounded time and size; ``[broker]``
    allow_http / allow_private_addresses); ValidationError with the reason when it cannot be
    had."""
    try:
        answer = fetcher(svc).request(
            "GET", url, headers={"Accept": "application/samlmetadata+xml, application/xml"}
        )
    except OutboundError as exc:
        raise ValidationError(f"the metadata cannot be fetched: {exc.reason}") from None
    if answer.status != 200:
        raise ValidationError(
            f"the metadata cannot be fetched: the server answered HTTP {answer.status}"
        )
    try:
        return answer.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the metadata is not UTF-8 text") from None


# --- our service provider, one per upstream --------------------------------------------------


@dataclass(frozen=True)
class SpEndpoints:
    entity_id: str
    acs: str
    sls: str


def sp_endpoints(svc: Services, alias: str) -> SpEndpoints:
    base = f"{svc.settings.issuer}/broker/{alias}/saml"
    return SpEndpoints(entity_id=f"{base}/metadata", acs=f"{base}/acs", sls=f"{base}/sls")


def _key_descriptor(use: str, pem: str) -> md.KeyDescriptor:
    body = "".join(line for line in pem.strip().splitlines() if "CERTIFICATE" not in line)
    return md.KeyDescriptor(
        use=use,
        key_info=KeyInfo(x509_data=X509Data(x509_certificate=X509Certificate(text=body))),
    )


def sp_metadata(
    svc: Services,
    alias: str,
    *,
    name_id_format: str | None,
    authn_requests_signed: bool,
    want_assertions_signed: bool,
) -> str:
    """Our SP's metadata for the upstream ``alias``, signed with the active SAML key; every
    published RSA certificate (next, active, previous) is listed for signing and encryption,
    so a key rotation reaches the upstream before it is needed."""
    ends = sp_endpoints(svc, alias)
    cfg = svc.settings.saml
    ring = svc.keys.ring()
    certs = [
        k.certificate_pem
        for k in ring.published(svc.clock.utcnow())
        if k.kty == "RSA" and k.certificate_pem
    ]
    descriptor = md.SPSSODescriptor(
        protocol_support_enumeration=PROTOCOL,
        authn_requests_signed="true" if authn_requests_signed else "false",
        want_assertions_signed="true" if want_assertions_signed else "false",
        key_descriptor=[_key_descriptor(u, p) for u in ("signing", "encryption") for p in certs],
        single_logout_service=[
            md.SingleLogoutService(binding=b, location=ends.sls) for b in BINDINGS
        ],
        name_id_format=[md.NameIDFormat(text=name_id_format)] if name_id_format else [],
        assertion_consumer_service=[
            md.AssertionConsumerService(
                binding=BINDING_HTTP_POST, location=ends.acs, index="0", is_default="true"
            )
        ],
    )
    entd = md.EntityDescriptor(
        entity_id=ends.entity_id,
        spsso_descriptor=descriptor,
        valid_until=in_a_while(seconds=cfg.metadata_valid_seconds),
        cache_duration=f"PT{max(60, cfg.metadata_valid_seconds // 10)}S",
    )
    sec = saml_idp(svc).engine().server.sec
    from saml2.metadata import sign_entity_descriptor  # with the engine: pysaml2's sigver

    _, xml = sign_entity_descriptor(
        entd, None, sec, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    return xml
