"""The checks on every inbound SAML message, in order (saml-profiles 4.1.4.1, 4.4.4.1;
saml-bindings 3.4.5.2, 3.5.5.2): size and XML gate (``inbound``), a known issuer, pysaml2's
parse and XML-signature check, the HTTP-Redirect query signature, signature algorithms,
IssueInstant, Destination, the ACS URL, and the replay cache. ``check_authn_request`` is the
pipeline for an AuthnRequest; the logout checks reuse its pieces (idp.saml.logout).

Any failure before the ACS URL is trusted is a ``BadMessage`` (an error page, never a message
to an unverified URL); failures after it a ``StatusError`` (a SAML error status to that ACS).
Nothing is written (replay cache, sessions) until every check passed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from .acr import NoAuthnContext, wanted_acr
from .authnrequest import AuthnRequestFields, from_pysaml2, read_unsigned
from .bindings import RedirectSignatureError, has_redirect_signature, verify_redirect_signature
from .engine import SamlIdp, SpInfo, b64
from .inbound import (
    BadMessage,
    Inbound,
    check_signature_algorithms,
    decode_post,
    decode_redirect,
    utc_instant,
)
from .registry import FORMAT_NAMES, NAME_ID_FORMATS, location_problem
from .results import Received

ST_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
ST_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
ST_NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
ST_NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
ST_INVALID_NAMEID = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"
ST_REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
MAX_RELAY_STATE = 1024


def unsafe_location(sp: SpInfo, url: str) -> str | None:
    """Why this SP endpoint must not be rendered or redirected to (``location_problem``):
    checked again here, for rows that did not come through the registry's import checks."""
    return location_problem(url, bool(sp.settings.get("allow_http")))


@dataclass
class Checked:
    sp: SpInfo
    request_id: str
    acs_url: str
    name_id_format: str | None
    acr_classes: list[str]
    comparison: str | None
    force_authn: bool
    is_passive: bool


class StatusError(Exception):
    """A valid request we cannot satisfy: answered with a SAML status at a trusted ACS."""

    def __init__(self, checked: Checked, status: str, message: str) -> None:
        super().__init__(message)
        self.checked = checked
        self.status = status


def read_message(received: Received, field: str) -> tuple[str, str | None, bytes]:
    """(binding, RelayState, XML) of the message ``field`` in this request."""
    encoded = received.message
    if not encoded:
        raise BadMessage(f"no {field} in the request")
    if received.binding == BINDING_HTTP_REDIRECT:
        xml = decode_redirect(encoded)
    else:
        xml = decode_post(encoded)
    relay = received.relay_state
    if relay is not None and len(relay) > MAX_RELAY_STATE:
        raise BadMessage("RelayState is too long")
    return received.binding, relay, xml


def error_relay_state(received: Received) -> str | None:
    """The RelayState a SAML error status carries back to the SP."""
    relay = received.any_relay_state
    return relay if relay and len(relay) <= MAX_RELAY_STATE else None


def check_signature(
    idp: SamlIdp,
    sp: SpInfo,
    binding: str,
    query_string: bytes,
    field: str,
    xml_signed: bool,
    required: bool,
) -> bool:
    """Verify the HTTP-Redirect query signature if there is one (an XML signature was verified
    by pysaml2 already); refuse an unsigned message when one is required. True when signed."""
    if binding == BINDING_HTTP_REDIRECT and has_redirect_signature(query_string):
        try:
            verify_redirect_signature(
                query_string,
                field,
                idp.signing_certs(sp.entity_id),
                allow_sha1=bool(sp.settings.get("allow_sha1")),
            )
        except RedirectSignatureError as exc:
            raise BadMessage(f"the request signature is not valid: {exc}") from None
        return True
    if required and not xml_signed:
        raise BadMessage("this service provider must sign its requests, and this one is not signed")
    return xml_signed


def check_destination(destination: str | None, signed: bool, endpoint: str) -> None:
    """saml-bindings 3.4.5.2 / 3.5.5.2: a signed message MUST carry a Destination, and it must
    be this endpoint (a signed message sent elsewhere must not be replayable here)."""
    if destination is None or not destination.strip():
        if signed:
            raise BadMessage(
                "the request is signed but has no Destination, which a signed SAML message "
                "must carry (saml-bindings 3.4.5.2, 3.5.5.2)"
            )
        return
    if destination.strip() != endpoint:
        raise BadMessage("the request is addressed to another destination")


def check_time(idp: SamlIdp, msg: Inbound) -> None:
    if not msg.issue_instant:
        raise BadMessage("the request has no IssueInstant")
    issued = utc_instant(msg.issue_instant)
    if issued is None:
        raise BadMessage("the request's IssueInstant is not a valid time")
    now = idp.svc.clock.now()
    skew = idp.cfg.clock_skew
    if issued > now + skew:
        raise BadMessage("the request is issued in the future (check the clocks)")
    if issued < now - idp.cfg.request_max_age - skew:
        raise BadMessage("the request has expired")


def remember_id(idp: SamlIdp, msg: Inbound, kind: str) -> None:
    """Refuse a message ID seen before within its validity (replay)."""
    if not msg.id or len(msg.id) > 256:
        raise BadMessage("the request has no usable ID")
    digest = hashlib.sha256(f"{msg.issuer}\n{msg.id}".encode()).hexdigest()
    ttl = idp.cfg.request_max_age + 2 * idp.cfg.clock_skew
    if not idp.svc.store.add(f"saml:{kind}:{digest}", 1, ttl):
        raise BadMessage("this request was already used (replay)")


def choose_acs(
    idp: SamlIdp,
    sp: SpInfo,
    protocol_binding: str | None = None,
    acs_url: str | None = None,
    acs_index: int | None = None,
) -> str:
    """The ACS the response goes to: the one the request names, which must be in the SP's
    metadata, else the SP's default HTTP-POST ACS (saml-profiles 4.1.4.1)."""
    url = _acs_location(idp, sp, protocol_binding, acs_url, acs_index)
    problem = unsafe_location(sp, url)
    if problem:
        raise BadMessage(
            "this application's AssertionConsumerService address is not acceptable "
            f"(it {problem}); nothing was sent to it"
        )
    return url


def _acs_location(
    idp: SamlIdp,
    sp: SpInfo,
    protocol_binding: str | None,
    acs_url: str | None,
    acs_index: int | None,
) -> str:
    endpoints = idp.acs_endpoints(sp)
    posts = [e for e in endpoints if e.get("binding") == BINDING_HTTP_POST]
    if protocol_binding and protocol_binding != BINDING_HTTP_POST:
        raise BadMessage("only the HTTP-POST binding is offered for responses")
    if acs_url:
        url = acs_url.strip()
        if not any(e.get("location") == url for e in posts):
            raise BadMessage(
                "the AssertionConsumerServiceURL is not in the service provider's metadata"
            )
        return url
    if acs_index is not None:
        for e in posts:
            if _as_index(e.get("index")) == acs_index:
                return e["location"]
        raise BadMessage(
            "the AssertionConsumerServiceIndex is not in the service provider's metadata"
        )
    if not posts:
        raise BadMessage("the service provider has no HTTP-POST AssertionConsumerService")
    default = [e for e in posts if str(e.get("is_default", "")).lower() == "true"]
    return (default or posts)[0]["location"]


def _as_index(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def parse_from_sp(idp: SamlIdp, msg: Inbound, tag: str, kind: str, what: str):
    """The first checks of every inbound request: its type, an issuer we know, and pysaml2's
    parse (which verifies an XML signature). Returns (SP, parsed message) or raises BadMessage."""
    sp = _known_sender(idp, msg, tag, kind)
    if msg.has_signature and msg.root is not None:
        check_signature_algorithms(msg.root, allow_sha1=bool(sp.settings.get("allow_sha1")))
    server = idp.engine().server
    parse = server.parse_authn_request if tag == "AuthnRequest" else server.parse_logout_request
    try:
        parsed = parse(b64(msg.xml.decode()), BINDING_HTTP_POST)
    except Exception as exc:  # pysaml2 raises many types for bad input; all mean "refused"
        raise BadMessage(f"{what} is not valid ({type(exc).__name__})") from None
    if parsed is None:
        raise BadMessage(f"{what} is not valid")
    return sp, parsed.message


def _known_sender(idp: SamlIdp, msg: Inbound, tag: str, kind: str) -> SpInfo:
    if msg.root_tag != tag:
        raise BadMessage(f"the message is not {kind}")
    sp = idp.sp(msg.issuer)
    if sp is None:
        raise BadMessage("the request comes from an unknown service provider")
    return sp


def _authn_request_fields(idp: SamlIdp, msg: Inbound) -> tuple[SpInfo, AuthnRequestFields]:
    """An unsigned request is read from the tree ``inspect`` checked; one with an XML
    signature goes through pysaml2, which verifies it (``idp.saml.authnrequest``)."""
    if msg.root is not None and not msg.has_signature:
        sp = _known_sender(idp, msg, "AuthnRequest", "an AuthnRequest")
        return sp, read_unsigned(msg.root)
    sp, req = parse_from_sp(idp, msg, "AuthnRequest", "an AuthnRequest", "the request")
    return sp, from_pysaml2(req)


def check_authn_request(idp: SamlIdp, binding: str, msg: Inbound, query_string: bytes) -> Checked:
    """The validation pipeline for an AuthnRequest, in order."""
    sp, req = _authn_request_fields(idp, msg)
    if req.id != msg.id or req.issuer != sp.entity_id:
        raise BadMessage("the request is not consistent")
    signed = check_signature(
        idp,
        sp,
        binding,
        query_string,
        "SAMLRequest",
        req.signed,
        idp.sp_wants_signed_requests(sp),
    )
    check_time(idp, msg)
    check_destination(req.destination, signed, idp.sso_url)
    acs_url = choose_acs(idp, sp, req.protocol_binding, req.acs_url, req.acs_index)
    checked = Checked(
        sp=sp,
        request_id=req.id,
        acs_url=acs_url,
        name_id_format=None,
        acr_classes=[],
        comparison=None,
        force_authn=req.force_authn,
        is_passive=req.is_passive,
    )
    fmt = req.name_id_format
    if fmt and fmt != NAME_ID_FORMATS["unspecified"]:
        short = FORMAT_NAMES.get(fmt.strip())
        if short is None:
            raise StatusError(
                checked, ST_INVALID_NAMEID, "the requested NameID format is not offered"
            )
        checked.name_id_format = short
    if req.has_requested_context:
        checked.acr_classes = req.acr_classes
        checked.comparison = req.comparison
        try:
            wanted_acr(checked.acr_classes, checked.comparison)
        except NoAuthnContext as exc:
            raise StatusError(checked, ST_NO_AUTHN_CONTEXT, str(exc)) from None
    remember_id(idp, msg, "authn")
    return checked
