"""Brokering to an upstream SAML 2.0 IdP: we are its service provider (saml-profiles 4.1, Web
Browser SSO). ``start`` sends the AuthnRequest; ``consume`` checks the Response that comes back
at our AssertionConsumerService and turns it into the neutral identity the broker links or
provisions.

The Response is judged by ``RESPONSE_CHECKS``, in order, each a small function:

1. the XML gate of ``idp.saml.inbound`` (size, base64, no DTD so no XXE, no processing
   instructions, no comments inside NameID or Issuer), a ``samlp:Response``;
2. its Issuer (when present) is the upstream's entityID;
3. every XML-signature algorithm on the allow-list (no SHA-1), only the enveloped-signature
   and canonicalization transforms (no XPath / XSLT);
4. no two elements share an ID, and exactly one Assertion or EncryptedAssertion, a direct
   child of the Response (signature wrapping puts a second, unsigned one beside the signed);
5. a signature on the Response verifies with a signing certificate of the upstream's
   metadata (and only those: a KeyInfo in the message is ignored);
6. the Status is Success (else the upstream's refusal is shown);
7. Destination is our ACS; IssueInstant is not in the future nor too old;
8. InResponseTo is the ID of the AuthnRequest of the broker's flight that the RelayState names
   in this browser (the caller finds it); a Response without one (IdP-initiated) only where the
   upstream ``allow_unsolicited``;
9. an EncryptedAssertion is decrypted with our key (RSA-OAEP, AES-GCM / AES-CBC only) and
   passes the XML gate again;
10. the Assertion's own signature verifies; it must have one where ``want_assertions_signed``
    (the default), and the Response or the Assertion must be signed in any case;
11. the Assertion's Issuer is the upstream;
12. a bearer SubjectConfirmation whose Recipient is our ACS, whose InResponseTo is the
    request's and whose NotOnOrAfter has not passed;
13. Conditions: NotBefore / NotOnOrAfter (clock skew ``[saml] clock_skew``, the injected
    clock), an AudienceRestriction naming our SP entity;
14. an AuthnStatement; the subject: the configured attribute, else a non-transient NameID.

Only then is anything written: the Assertion ID goes into the replay cache (refused if it is
there); the caller then takes the flight (single use). Each check's refusal carries the short
reason the audit row records (``RESPONSE_CHECKS`` pairs them).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import xmlsec
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from ..errors import ValidationError
from ..saml.bindings import redirect_url
from ..saml.crypto import (
    AES128_CBC,
    AES128_GCM,
    AES256_CBC,
    AES256_GCM,
    DSIG_NS,
    RSA_OAEP,
    SAML_NS,
    XENC_NS,
)
from ..saml.engine import b64, saml_idp
from ..saml.inbound import (
    SAMLP_NS,
    BadMessage,
    check_signature_algorithms,
    decode_post,
    inspect,
    utc_instant,
)
from ..saml.registry import NAME_ID_FORMATS, verify_root_signature
from ..saml.response import build_authn_request
from ..saml.results import PostForm, Redirect
from ..services import Services
from .saml_metadata import SpEndpoints, UpstreamIdpMetadata, parse_idp_metadata, sp_endpoints

# How old a Response may be (its IssueInstant, besides the clock skew).
MAX_RESPONSE_AGE = 600
_SEEN = "broker:saml:seen:"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
TRANSIENT = NAME_ID_FORMATS["transient"]
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_TRANSFORMS = {
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
}
_BLOCK_CIPHERS = {AES128_GCM, AES256_GCM, AES128_CBC, AES256_CBC}
_KEY_TRANSPORT = {RSA_OAEP, "http://www.w3.org/2009/xmlenc11#rsa-oaep"}


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


_ASSERTION = _q(SAML_NS, "Assertion")
_ENCRYPTED_ASSERTION = _q(SAML_NS, "EncryptedAssertion")
_SIGNATURE = _q(DSIG_NS, "Signature")
_ISSUER = _q(SAML_NS, "Issuer")


class Refused(Exception):
    """A Response (or logout message) that is not accepted; the text is safe to show and to
    log, ``reason`` a short code for the audit row (``bad_signature``, ``wrong_audience``...)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


# --- per-upstream configuration ----------------------------------------------------------------

# The SAML-specific settings of a ``saml`` upstream, with their types (the rest is the upstream
# IdP's metadata). Absent keys take the defaults of ``SamlUpstream``.
SETTINGS: dict[str, type | tuple[type, ...]] = {
    # NameID format asked for in the AuthnRequest (a URI or persistent / transient / email /
    # unspecified); "" asks for none.
    "name_id_format": str,
    # The attribute whose (first) value is the subject, in place of the NameID.
    "subject_attribute": str,
    # Attribute names (SAML Name or FriendlyName) for the e-mail address and the names.
    "email_attribute": str,
    "given_name_attribute": str,
    "family_name_attribute": str,
    "name_attribute": str,
    # The upstream verifies e-mail addresses: its address counts as verified here.
    "trust_email": bool,
    # The Assertion itself must be signed (a signed Response around it is not enough).
    "want_assertions_signed": bool,
    # Accept a Response that answers no request of ours (IdP-initiated sign-in).
    "allow_unsolicited": bool,
    # Sign our AuthnRequests even when its metadata does not ask for it.
    "sign_authn_requests": bool,
    # Lab only: accept http:// endpoints in its metadata.
    "allow_http": bool,
}


@dataclass(frozen=True)
class SamlUpstream:
    alias: str
    idp: UpstreamIdpMetadata
    name_id_format: str | None = NAME_ID_FORMATS["persistent"]
    subject_attribute: str | None = None
    email_attribute: str | None = "mail"
    given_name_attribute: str | None = "givenName"
    family_name_attribute: str | None = "sn"
    name_attribute: str | None = "displayName"
    trust_email: bool = False
    want_assertions_signed: bool = True
    allow_unsolicited: bool = False
    sign_authn_requests: bool = False
    allow_http: bool = False

    @property
    def signs_requests(self) -> bool:
        return self.sign_authn_requests or self.idp.want_authn_requests_signed


def check_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The SAML settings of an upstream, checked (ValidationError naming the first bad one)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = SETTINGS.get(key)
        if kind is None:
            raise ValidationError(f"unknown SAML upstream setting {key!r}")
        if not isinstance(value, kind):
            raise ValidationError(f"SAML upstream setting {key!r} must be {kind.__name__}")
        out[key] = value
    fmt = out.get("name_id_format")
    if fmt:
        out["name_id_format"] = NAME_ID_FORMATS.get(fmt, fmt)
    return out


def upstream(
    alias: str, metadata_xml: str, settings: dict[str, Any], now: datetime
) -> SamlUpstream:
    """The upstream ``alias`` from its stored metadata and settings (ValidationError when the
    metadata is no longer usable, e.g. past its validUntil)."""
    values = check_settings(settings or {})
    if values.get("name_id_format") == "":
        values["name_id_format"] = None
    idp = parse_idp_metadata(metadata_xml, now=now, allow_http=bool(values.get("allow_http")))
    return SamlUpstream(alias=alias, idp=idp, **values)


# --- the AuthnRequest ---------------------------------------------------------------------------


def request_id_for(relay_state: str) -> str:
    """The ID of the AuthnRequest sent with ``relay_state`` (the broker's flight state): derived
    from it one-way, so nothing more need be stored, and the upstream, which sees the ID, learns
    nothing of the state beyond what the RelayState already told it."""
    digest = hashlib.sha256(f"broker-saml-request\n{relay_state}".encode()).hexdigest()
    return "_" + digest[:40]


def start(
    svc: Services, up: SamlUpstream, *, relay_state: str, force_authn: bool = False
) -> PostForm | Redirect:
    """The browser's way to the upstream with an AuthnRequest: by HTTP-Redirect when its
    metadata offers it, else HTTP-POST; signed when it wants signed requests (or our setting
    says so). ``relay_state`` is the broker's flight state: it comes back with the Response,
    which must answer ``request_id_for(relay_state)``."""
    idp = saml_idp(svc)
    ends = sp_endpoints(svc, up.alias)
    binding = BINDING_HTTP_REDIRECT if BINDING_HTTP_REDIRECT in up.idp.sso else BINDING_HTTP_POST
    location = up.idp.sso[binding]
    sign = up.signs_requests
    eng = idp.engine()
    xml = build_authn_request(
        signer=eng.server.sec.crypto,
        request_id=request_id_for(relay_state),
        issuer=ends.entity_id,
        destination=location,
        acs_url=ends.acs,
        name_id_format=up.name_id_format,
        force_authn=force_authn,
        now=svc.clock.now(),
        sign=sign and binding == BINDING_HTTP_POST,
    )
    if binding == BINDING_HTTP_REDIRECT:
        key = eng.signing_key if sign else None
        return Redirect(redirect_url(location, "SAMLRequest", xml, relay_state, key))
    return PostForm(location, "SAMLRequest", b64(xml), relay_state)


# --- the Response -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamNameId:
    """The NameID as the upstream sent it: what a LogoutRequest to it must repeat."""

    value: str
    format_uri: str | None = None
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "format": self.format_uri,
            "nq": self.name_qualifier,
            "spnq": self.sp_name_qualifier,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpstreamNameId:
        return cls(data["value"], data.get("format"), data.get("nq"), data.get("spnq"))


@dataclass(frozen=True)
class Asserted:
    """What an accepted Response says about the person."""

    subject: str
    email: str | None
    email_verified: bool
    given_name: str | None
    family_name: str | None
    name: str | None
    attributes: dict[str, list[str]]
    session_ref: str | None  # the AuthnStatement's SessionIndex
    name_id: UpstreamNameId | None


@dataclass
class _Check:
    """What the checks share while judging one Response."""

    svc: Services
    up: SamlUpstream
    ends: SpEndpoints
    root: etree._Element
    request_id: str | None  # what it must answer; None: no sign-in of ours is waiting
    now: float
    skew: float
    response_signed: bool = False
    assertion: etree._Element | None = None
    expires: float = 0.0
    identity: Asserted | None = field(default=None)


def consume(
    svc: Services, up: SamlUpstream, *, saml_response: str | None, request_id: str | None
) -> Asserted:
    """Judge the Response posted to our ACS for ``up`` (see the module text). ``request_id``
    is the ID of our AuthnRequest that the RelayState's flight (in this browser) stands for,
    or None when there is no such flight. Refused with the reason, having written nothing, or
    the identity, the Assertion's ID then in the replay cache."""
    if not saml_response:
        raise Refused("no SAMLResponse in the request", "bad_xml")
    try:
        msg = inspect(decode_post(saml_response))
    except BadMessage as exc:
        raise Refused(str(exc), "bad_xml") from None
    if msg.root_tag != "Response" or msg.root is None:
        raise Refused("the message is not a SAML Response", "bad_xml")
    check = _Check(
        svc=svc,
        up=up,
        ends=sp_endpoints(svc, up.alias),
        root=msg.root,
        request_id=request_id,
        now=svc.clock.now(),
        skew=float(svc.settings.saml.clock_skew),
    )
    for reason, step in RESPONSE_CHECKS:
        try:
            step(check)
        except Refused as exc:
            exc.reason = exc.reason or reason
            raise
    assert check.identity is not None
    _remember_assertion(check)
    return check.identity


def _issuer_of(el: etree._Element) -> str | None:
    issuer = el.find(_ISSUER)
    return issuer.text.strip() if issuer is not None and issuer.text else None


def _response_issuer(c: _Check) -> None:
    issuer = _issuer_of(c.root)
    if issuer is not None and issuer != c.up.idp.entity_id:
        raise Refused("the Response was issued by another identity provider")


def check_algorithms(root: etree._Element) -> None:
    """Every XML signature in ``root`` made with accepted algorithms and transforms only."""
    try:
        check_signature_algorithms(root, what="the signature")
    except BadMessage as exc:
        raise Refused(str(exc), "weak_algorithm") from None
    for el in root.iter(_q(DSIG_NS, "Transform")):
        if el.get("Algorithm") not in _TRANSFORMS:
            raise Refused(
                f"the signature uses the transform {el.get('Algorithm')}, not accepted",
                "weak_algorithm",
            )


def _algorithms(c: _Check) -> None:
    check_algorithms(c.root)


def _unique_ids(c: _Check) -> None:
    ids = [el.get("ID") for el in c.root.iter() if isinstance(el.tag, str) and el.get("ID")]
    if len(ids) != len(set(ids)):
        raise Refused(
            "the Response has two elements with the same ID (signature wrapping)",
            "signature_wrapping",
        )


def _one_assertion(c: _Check) -> None:
    found = list(c.root.iter(_ASSERTION, _ENCRYPTED_ASSERTION))
    if len(found) != 1 or found[0].getparent() is not c.root:
        raise Refused(
            "the Response must carry exactly one assertion, directly inside it "
            f"(it has {len(found)}: signature wrapping is refused)",
            "signature_wrapping",
        )


def verify_signature(el: etree._Element, up: SamlUpstream, noun: str) -> bool:
    """True when ``el`` carries its own enveloped signature and it verifies with one of the
    upstream's signing certificates; False when it has none; Refused when it does not verify."""
    if el.find(_SIGNATURE) is None:
        return False
    reason = ""
    for pem in up.idp.signing_certs:
        try:
            verify_root_signature(el, pem, noun=noun, key="upstream's metadata")
            return True
        except ValidationError as exc:
            reason = str(exc)
    raise Refused(reason or f"the signature of {noun} cannot be checked", "bad_signature")


def _response_signature(c: _Check) -> None:
    c.response_signed = verify_signature(c.root, c.up, "the Response")


def _status(c: _Check) -> None:
    code = c.root.find(f"{_q(SAMLP_NS, 'Status')}/{_q(SAMLP_NS, 'StatusCode')}")
    value = code.get("Value") if code is not None else None
    if value == STATUS_SUCCESS:
        return
    inner = code.find(_q(SAMLP_NS, "StatusCode")) if code is not None else None
    text = c.root.findtext(f"{_q(SAMLP_NS, 'Status')}/{_q(SAMLP_NS, 'StatusMessage')}")
    detail = (inner.get("Value") if inner is not None else None) or value or "no status"
    said = f": {text.strip()[:200]}" if text and text.strip() else ""
    raise Refused(f"the identity provider did not sign you in ({detail.rsplit(':', 1)[-1]}{said})")


def _destination(c: _Check) -> None:
    destination = c.root.get("Destination")
    if destination is None:
        if c.response_signed:
            raise Refused("the Response is signed but has no Destination (saml-bindings 3.5.5.2)")
    elif destination.strip() != c.ends.acs:
        raise Refused("the Response is addressed to another destination")


def _issue_instant(c: _Check) -> None:
    issued = utc_instant(c.root.get("IssueInstant"))
    if issued is None:
        raise Refused("the Response has no valid IssueInstant")
    if issued > c.now + c.skew:
        raise Refused("the Response is issued in the future (check the clocks)")
    if issued < c.now - MAX_RESPONSE_AGE - c.skew:
        raise Refused("the Response is too old")


def _in_response_to(c: _Check) -> None:
    irt = c.root.get("InResponseTo")
    if irt is None:
        if c.request_id is not None or not c.up.allow_unsolicited:
            raise Refused(
                "the Response answers no sign-in started here (unsolicited responses are not "
                "accepted from this identity provider)"
            )
        return
    if c.request_id is None:
        raise Refused("the Response answers no sign-in started in this browser")
    if not hmac.compare_digest(irt, c.request_id):
        raise Refused("the Response answers another request (InResponseTo)")


def _decrypt(c: _Check) -> None:
    el = next(c.root.iter(_ASSERTION, _ENCRYPTED_ASSERTION))
    if el.tag == _ASSERTION:
        c.assertion = el
        return
    data = el.find(_q(XENC_NS, "EncryptedData"))
    if data is None:
        raise Refused("the EncryptedAssertion holds no EncryptedData")
    for method in data.iter(_q(XENC_NS, "EncryptionMethod")):
        alg = method.get("Algorithm")
        if alg not in _BLOCK_CIPHERS | _KEY_TRANSPORT:
            raise Refused(f"the assertion is encrypted with {alg}, which is not accepted")
    decrypted = None
    for pem in _our_private_keys(c.svc):
        try:
            manager = xmlsec.KeysManager()
            manager.add_key(xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem))
            decrypted = xmlsec.EncryptionContext(manager).decrypt(data)
            break
        except xmlsec.Error:
            continue
    if decrypted is None:
        raise Refused("the encrypted assertion cannot be decrypted with our keys")
    if decrypted.tag != _ASSERTION or len(el) != 1:
        raise Refused("the encrypted assertion holds no Assertion")
    el.addprevious(decrypted)
    c.root.remove(el)
    # The decrypted part passes the same XML gate as the message did, as a fresh document.
    try:
        msg = inspect(etree.tostring(c.root))
    except BadMessage as exc:
        raise Refused(str(exc)) from None
    assert msg.root is not None
    c.root = msg.root
    _algorithms(c)
    _unique_ids(c)
    _one_assertion(c)
    c.assertion = c.root.find(_ASSERTION)
    if c.assertion is None:
        raise Refused("the encrypted assertion holds no Assertion")


def _our_private_keys(svc: Services) -> list[bytes]:
    ring = svc.keys.ring()
    return [
        k.jwk.as_pem(private=True) for k in ring.published(svc.clock.utcnow()) if k.kty == "RSA"
    ]


def _assertion_signature(c: _Check) -> None:
    assert c.assertion is not None
    signed = verify_signature(c.assertion, c.up, "the Assertion")
    if not signed and c.up.want_assertions_signed:
        raise Refused("the Assertion is not signed, and this identity provider must sign it")
    if not signed and not c.response_signed:
        raise Refused("neither the Response nor the Assertion is signed")


def _assertion_issuer(c: _Check) -> None:
    assert c.assertion is not None
    if _issuer_of(c.assertion) != c.up.idp.entity_id:
        raise Refused("the Assertion was issued by another identity provider")


def _time(value: str | None, what: str) -> float:
    at = utc_instant(value)
    if at is None:
        raise Refused(f"{what} is not a valid time")
    return at


def _subject_confirmation(c: _Check) -> None:
    assert c.assertion is not None
    subject = c.assertion.find(_q(SAML_NS, "Subject"))
    if subject is None:
        raise Refused("the Assertion has no Subject")
    problems = []
    for sc in subject.findall(_q(SAML_NS, "SubjectConfirmation")):
        if sc.get("Method") != BEARER:
            continue
        data = sc.find(_q(SAML_NS, "SubjectConfirmationData"))
        if data is None:
            problems.append("has no SubjectConfirmationData")
            continue
        if (data.get("Recipient") or "").strip() != c.ends.acs:
            problems.append("is for another recipient")
            continue
        if data.get("NotBefore") is not None:
            problems.append("has a NotBefore, which a bearer confirmation must not have")
            continue
        until = data.get("NotOnOrAfter")
        if until is None:
            problems.append("has no NotOnOrAfter")
            continue
        expires = _time(until, "SubjectConfirmationData NotOnOrAfter")
        if c.now >= expires + c.skew:
            raise Refused("the Assertion's bearer subject confirmation has expired", "expired")
        irt = data.get("InResponseTo")
        if (irt or None) != c.request_id:
            problems.append("answers another request (InResponseTo)")
            continue
        c.expires = max(c.expires, expires)
        return
    why = problems[0] if problems else "is missing"
    raise Refused(f"the Assertion's bearer subject confirmation {why}")


def _conditions(c: _Check) -> etree._Element:
    assert c.assertion is not None
    cond = c.assertion.find(_q(SAML_NS, "Conditions"))
    if cond is None:
        raise Refused("the Assertion has no Conditions")
    return cond


def _validity(c: _Check) -> None:
    cond = _conditions(c)
    if cond.get("NotBefore") is not None:
        if c.now + c.skew < _time(cond.get("NotBefore"), "Conditions NotBefore"):
            raise Refused("the Assertion is not valid yet (check the clocks)")
    if cond.get("NotOnOrAfter") is not None:
        until = _time(cond.get("NotOnOrAfter"), "Conditions NotOnOrAfter")
        if c.now >= until + c.skew:
            raise Refused("the Assertion has expired")
        c.expires = max(c.expires, until)


def _audience(c: _Check) -> None:
    restrictions = _conditions(c).findall(_q(SAML_NS, "AudienceRestriction"))
    if not restrictions:
        raise Refused("the Assertion has no AudienceRestriction")
    for restriction in restrictions:
        audiences = [(a.text or "").strip() for a in restriction.findall(_q(SAML_NS, "Audience"))]
        if c.ends.entity_id not in audiences:
            raise Refused("the Assertion is meant for another audience")


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """Every attribute by its Name and, where it has one, by its FriendlyName too."""
    out: dict[str, list[str]] = {}
    for attr in assertion.iter(_q(SAML_NS, "Attribute")):
        values = [
            "".join(v.itertext()).strip() for v in attr.findall(_q(SAML_NS, "AttributeValue"))
        ]
        for key in (attr.get("Name"), attr.get("FriendlyName")):
            if key:
                out.setdefault(key, []).extend(values)
    return out


def _first(attrs: dict[str, list[str]], name: str | None) -> str | None:
    values = [v for v in attrs.get(name or "", []) if v]
    return values[0] if values else None


def _identity(c: _Check) -> None:
    assert c.assertion is not None
    statement = c.assertion.find(_q(SAML_NS, "AuthnStatement"))
    if statement is None:
        raise Refused("the Assertion has no AuthnStatement")
    if c.assertion.find(f"{_q(SAML_NS, 'Subject')}/{_q(SAML_NS, 'EncryptedID')}") is not None:
        raise Refused("encrypted NameIDs are not supported")
    el = c.assertion.find(f"{_q(SAML_NS, 'Subject')}/{_q(SAML_NS, 'NameID')}")
    name_id = None
    if el is not None and (el.text or "").strip():
        name_id = UpstreamNameId(
            el.text.strip(), el.get("Format"), el.get("NameQualifier"), el.get("SPNameQualifier")
        )
    attrs = _attributes(c.assertion)
    if c.up.subject_attribute:
        subject = _first(attrs, c.up.subject_attribute)
        if subject is None:
            raise Refused(
                f"the Assertion has no {c.up.subject_attribute} attribute for the subject"
            )
    elif name_id is None:
        raise Refused("the Assertion has no NameID")
    elif name_id.format_uri == TRANSIENT:
        raise Refused(
            "the identity provider sent a transient NameID, which cannot identify a person "
            "again: ask for a persistent one or name a subject attribute"
        )
    else:
        subject = name_id.value
    email = _first(attrs, c.up.email_attribute)
    c.identity = Asserted(
        subject=subject,
        email=email,
        email_verified=bool(email) and c.up.trust_email,
        given_name=_first(attrs, c.up.given_name_attribute),
        family_name=_first(attrs, c.up.family_name_attribute),
        name=_first(attrs, c.up.name_attribute),
        attributes=attrs,
        session_ref=statement.get("SessionIndex"),
        name_id=name_id,
    )


def _remember_assertion(c: _Check) -> None:
    """The replay cache: an Assertion ID is accepted once while it could still be valid."""
    assert c.assertion is not None
    assertion_id = c.assertion.get("ID")
    if not assertion_id or len(assertion_id) > 256:
        raise Refused("the Assertion has no usable ID")
    digest = hashlib.sha256(f"{c.up.idp.entity_id}\n{assertion_id}".encode()).hexdigest()
    ttl = max(60.0, c.expires + c.skew - c.now)
    if not c.svc.store.add(_SEEN + digest, 1, ttl):
        raise Refused("this assertion was already used (replay)", "replay")


# (audit reason, check), in order: see the module text.
RESPONSE_CHECKS: tuple[tuple[str, Callable[[_Check], None]], ...] = (
    ("wrong_issuer", _response_issuer),
    ("weak_algorithm", _algorithms),
    ("signature_wrapping", _unique_ids),
    ("bad_signature", _response_signature),
    ("error_from_upstream", _status),
    ("signature_wrapping", _one_assertion),
    ("wrong_destination", _destination),
    ("expired", _issue_instant),
    ("unknown_request", _in_response_to),
    ("cannot_decrypt", _decrypt),
    ("not_signed", _assertion_signature),
    ("wrong_issuer", _assertion_issuer),
    ("bad_subject_confirmation", _subject_confirmation),
    ("expired", _validity),
    ("wrong_audience", _audience),
    ("no_subject", _identity),
)
