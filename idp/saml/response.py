"""Every SAML message the IdP sends, written as text in canonical form: the Web SSO
``<Response>`` (saml-profiles 4.1.4.2), an error ``<Response>`` carrying only a status
(saml-core 3.2.2), ``<LogoutRequest>`` (3.7.1) and ``<LogoutResponse>`` (3.7.2); and, as the
service provider of an upstream IdP when brokering (idp.broker.saml), ``<AuthnRequest>`` (3.4.1).

pysaml2 builds a Response from its own element classes, serializes it, and hands the text to
the crypto backend once per signature, which parses and re-serializes the whole document each
time. Here the Response and its Assertion are written directly in their exclusive XML
canonical form (xml-exc-c14n: sorted attributes, namespace declarations where they are first
used, no empty-element tags, c14n escaping), so each digest is the SHA-256 of a string we
already hold: no parse, no tree, no canonicalization pass. The only difference between what
is digested and what is sent is ``xmlns:xs`` on each AttributeValue (for its
``xsi:type="xs:string"``), which exclusive c14n leaves out because no element or attribute
name uses it. Verifiers canonicalize what they parse and get the digested bytes back; the
tests check every signature with libxmlsec1 and with two SP libraries, on generated values.

Every value goes through the same escaping (``_text``, ``_attrs``): nothing is put in a
message unescaped. The elements are those of saml-core 2.3.3 (Assertion), 2.4 (Subject, bearer
SubjectConfirmation), 2.5 (Conditions, AudienceRestriction), 2.7.2 (AuthnStatement), 2.7.3
(AttributeStatement) and 3.2.2 / 3.3.3 (Response); enveloped RSA-SHA256 signatures with
SHA-256 digests over exclusive c14n, referencing the signed element's ID (saml-core 5.4).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .subject import Attr, IssuedNameId

if TYPE_CHECKING:
    from .pysaml import InProcessBackend

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XS_NS = "http://www.w3.org/2001/XMLSchema"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

# Characters XML 1.0 cannot carry (a profile field with a control character must not turn
# the sign-in into an error): dropped from text and attribute values.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Escaping as canonical XML writes it (C14N 1.0, 2.3): text and attribute values differ.
_TEXT_SPECIAL = re.compile("[&<>\r]")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"}
_ATTR_SPECIAL = re.compile('[&<"\t\n\r]')
_ATTR_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    '"': "&quot;",
    "\t": "&#x9;",
    "\n": "&#xA;",
    "\r": "&#xD;",
}
# Where the output declares xs (see the module text); the canonical form has nothing there.
_XS_SLOT = "\x01"
_XS_DECLARATION = f' xmlns:xs="{XS_NS}"'
_XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"


@dataclass(frozen=True)
class Statement:
    """What the AuthnStatement says about the sign-in (saml-core 2.7.2)."""

    auth_time: int
    class_ref: str
    session_index: str
    not_on_or_after: int


def new_id() -> str:
    """A message ID: an xs:ID (NCName) with 160 random bits (saml-core 1.3.4)."""
    return "_" + secrets.token_hex(20)


def instant(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _clean(value: str) -> str:
    if value.isascii() and value.isprintable():  # the common case, without the regex
        return value
    return _NOT_XML.sub("", value)


def _text(value: str) -> str:
    value = _clean(value)
    if _TEXT_SPECIAL.search(value) is None:
        return value
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m[0]], value)


def _attrs(**attrs: str | None) -> str:
    """Unqualified attributes in canonical order (by name), escaped; None leaves one out."""
    out = []
    for name in sorted(attrs):
        value = attrs[name]
        if value is None:
            continue
        value = _clean(value)
        if _ATTR_SPECIAL.search(value) is not None:
            value = _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES[m[0]], value)
        out.append(f' {name}="{value}"')
    return "".join(out)


def _issuer(entity_id: str, declare: bool) -> str:
    ns = f' xmlns:saml="{SAML_NS}"' if declare else ""
    return f'<saml:Issuer{ns} Format="{ENTITY_FORMAT}">{_text(entity_id)}</saml:Issuer>'


def _attribute_statement(attributes: list[Attr]) -> str:
    out = ["<saml:AttributeStatement>"]
    for a in attributes:
        names = _attrs(Name=a.name, NameFormat=a.name_format, FriendlyName=a.friendly_name)
        out.append(f"<saml:Attribute{names}>")
        # xsi:type xs:string as pysaml2 wrote it; xs is declared where it is used, so the
        # value keeps its type when the Assertion is taken out of the Response.
        out.extend(
            f'<saml:AttributeValue{_XS_SLOT} xmlns:xsi="{XSI_NS}" xsi:type="xs:string">'
            f"{_text(v)}</saml:AttributeValue>"
            for v in a.values
        )
        out.append("</saml:Attribute>")
    out.append("</saml:AttributeStatement>")
    return "".join(out)


def build_response(
    *,
    signer: InProcessBackend,
    issuer: str,
    audience: str,
    acs_url: str,
    in_response_to: str | None,
    name_id: IssuedNameId,
    statement: Statement,
    attributes: list[Attr],
    now: float,
    lifetime: int,
    sign_response: bool,
    sign_assertion: bool,
    encrypt_for: bytes | None = None,
    encryption_algorithm: str | None = None,
) -> bytes:
    """The serialized Response for one SP. ``encrypt_for`` is the SP's encryption certificate
    (PEM, from its metadata): the signed Assertion then travels as an EncryptedAssertion, with
    ``encryption_algorithm`` (a block cipher URI; None = the signer's default)."""
    issued = instant(now)
    expires = instant(now + lifetime)
    assertion_id = new_id()
    head = (
        f'<saml:Assertion xmlns:saml="{SAML_NS}"'
        + _attrs(ID=assertion_id, IssueInstant=issued, Version="2.0")
        + ">"
        + _issuer(issuer, declare=False)
    )
    body = "".join(
        [
            "<saml:Subject><saml:NameID",
            _attrs(
                Format=name_id.format_uri,
                NameQualifier=name_id.name_qualifier,
                SPNameQualifier=name_id.sp_name_qualifier,
            ),
            f">{_text(name_id.value)}</saml:NameID>",
            f'<saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData',
            _attrs(NotOnOrAfter=expires, Recipient=acs_url, InResponseTo=in_response_to or None),
            "></saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>",
            "<saml:Conditions",
            _attrs(NotBefore=issued, NotOnOrAfter=expires),
            f"><saml:AudienceRestriction><saml:Audience>{_text(audience)}</saml:Audience>",
            "</saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement",
            _attrs(
                AuthnInstant=instant(statement.auth_time),
                SessionIndex=statement.session_index,
                SessionNotOnOrAfter=instant(statement.not_on_or_after),
            ),
            "><saml:AuthnContext><saml:AuthnContextClassRef>",
            _text(statement.class_ref),
            "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
            _attribute_statement(attributes) if attributes else "",
            "</saml:Assertion>",
        ]
    )
    # Inner first: the Response signature covers the Assertion's (or its ciphertext).
    signature = ""
    if sign_assertion:
        signature = signer.signature_xml(head + body.replace(_XS_SLOT, ""), assertion_id)
    assertion = head + signature + body
    if encrypt_for:
        sent = assertion.replace(_XS_SLOT, _XS_DECLARATION)
        encrypted = signer.encrypt_xml(sent.encode(), encrypt_for, encryption_algorithm)
        assertion = (
            f'<saml:EncryptedAssertion xmlns:saml="{SAML_NS}">{encrypted}</saml:EncryptedAssertion>'
        )

    response_id = new_id()
    response_head = (
        f'<samlp:Response xmlns:samlp="{SAMLP_NS}"'
        + _attrs(
            Destination=acs_url,
            ID=response_id,
            InResponseTo=in_response_to or None,
            IssueInstant=issued,
            Version="2.0",
        )
        + ">"
        + _issuer(issuer, declare=True)
    )
    response_body = (
        f'<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"></samlp:StatusCode>'
        f"</samlp:Status>{assertion}</samlp:Response>"
    )
    signature = ""
    if sign_response:
        signature = signer.signature_xml(
            response_head + response_body.replace(_XS_SLOT, ""), response_id
        )
    document = response_head + signature + response_body
    return (_XML_DECLARATION + document.replace(_XS_SLOT, _XS_DECLARATION)).encode("utf-8")


def _message(
    signer: InProcessBackend,
    element: str,
    issuer: str,
    destination: str,
    in_response_to: str | None,
    now: float,
    sign: bool,
    body: str,
    message_id: str | None = None,
    **extra: str | None,
) -> tuple[str, bytes]:
    """(ID, serialized document) of a protocol message ``samlp:<element>`` from ``issuer``
    whose content after the Issuer (and the signature, when ``sign``) is ``body``; ``extra``
    are the element's own further attributes."""
    message_id = message_id or new_id()
    head = (
        f'<samlp:{element} xmlns:samlp="{SAMLP_NS}"'
        + _attrs(
            Destination=destination,
            ID=message_id,
            InResponseTo=in_response_to or None,
            IssueInstant=instant(now),
            Version="2.0",
            **extra,
        )
        + ">"
        + _issuer(issuer, declare=True)
    )
    tail = f"{body}</samlp:{element}>"
    signature = signer.signature_xml(head + tail, message_id) if sign else ""
    return message_id, (_XML_DECLARATION + head + signature + tail).encode("utf-8")


def _status(status: str, sub_status: str | None, message: str | None) -> str:
    """A Status (saml-core 3.2.2.1): its top-level code, a second-level one, a message."""
    inner = f"<samlp:StatusCode{_attrs(Value=sub_status)}></samlp:StatusCode>" if sub_status else ""
    text = f"<samlp:StatusMessage>{_text(message)}</samlp:StatusMessage>" if message else ""
    return (
        f"<samlp:Status><samlp:StatusCode{_attrs(Value=status)}>{inner}</samlp:StatusCode>"
        f"{text}</samlp:Status>"
    )


def build_status_response(
    *,
    signer: InProcessBackend,
    element: str,
    issuer: str,
    destination: str,
    in_response_to: str | None,
    status: str,
    sub_status: str | None = None,
    message: str | None = None,
    now: float,
    sign: bool,
) -> bytes:
    """A StatusResponseType message with nothing but its Status: ``element`` "Response" (an
    error answer to an AuthnRequest, saml-core 3.3.3) or "LogoutResponse" (3.7.2)."""
    body = _status(status, sub_status, message)
    return _message(signer, element, issuer, destination, in_response_to, now, sign, body)[1]


def build_logout_request(
    *,
    signer: InProcessBackend,
    issuer: str,
    destination: str,
    name_id: IssuedNameId,
    session_index: str,
    now: float,
    sign: bool,
) -> tuple[str, bytes]:
    """(ID, document) of a LogoutRequest (saml-core 3.7.1) for the principal ``name_id`` as
    this SP knows it, in the session ``session_index``."""
    body = (
        f'<saml:NameID xmlns:saml="{SAML_NS}"'
        + _attrs(
            Format=name_id.format_uri,
            NameQualifier=name_id.name_qualifier,
            SPNameQualifier=name_id.sp_name_qualifier,
        )
        + f">{_text(name_id.value)}</saml:NameID>"
        f"<samlp:SessionIndex>{_text(session_index)}</samlp:SessionIndex>"
    )
    return _message(signer, "LogoutRequest", issuer, destination, None, now, sign, body)


def build_authn_request(
    *,
    signer: InProcessBackend,
    request_id: str,
    issuer: str,
    destination: str,
    acs_url: str,
    name_id_format: str | None,
    force_authn: bool,
    now: float,
    sign: bool,
) -> bytes:
    """The AuthnRequest ``request_id`` (saml-core 3.4.1) from the service provider ``issuer``
    asking for a response by HTTP-POST at ``acs_url``, signed in the XML when ``sign``."""
    body = (
        f"<samlp:NameIDPolicy{_attrs(AllowCreate='true', Format=name_id_format)}>"
        "</samlp:NameIDPolicy>"
    )
    return _message(
        signer,
        "AuthnRequest",
        issuer,
        destination,
        None,
        now,
        sign,
        body,
        request_id,
        AssertionConsumerServiceURL=acs_url,
        ForceAuthn="true" if force_authn else None,
        ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
    )[1]
