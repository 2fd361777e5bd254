"""The Web SSO ``<Response>`` (saml-profiles 4.1.4.2) built and signed as one lxml tree.

pysaml2 builds a Response from its own element classes, serializes it with ElementTree, and
hands the text to the crypto backend once per signature, which parses and re-serializes the
whole document each time; its attribute policy machinery runs even with nothing to filter.
For the sign-in hot path that was most of the response's cost. Here the document is written
once as text, every value escaped, and parsed into one lxml tree; the Assertion is signed
(then encrypted, when the SP asks for it), the Response is signed over the result, and the
tree is serialized once. The XML is the same
shape pysaml2 produced: saml-core 2.3.3 (Assertion), 2.4 (Subject, bearer
SubjectConfirmation), 2.5 (Conditions, AudienceRestriction), 2.7.2 (AuthnStatement), 2.7.3
(AttributeStatement) and 3.2.2 / 3.3.3 (Response); enveloped RSA-SHA256 signatures with
SHA-256 digests over exclusive c14n, referencing the signed element's ID (saml-core 5.4).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from lxml import etree

from .crypto import InProcessBackend, parse_xml
from .subject import Attr, IssuedNameId

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XS_NS = "http://www.w3.org/2001/XMLSchema"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

# Characters XML 1.0 cannot carry (a profile field with a control character must not turn
# the sign-in into an error): dropped from text and attribute values.
_SPECIAL = re.compile('[&<>"\t\n\r]')
_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


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


def _t(value: str) -> str:
    """Text or an attribute value, escaped. TAB, LF and CR as references: in an attribute
    that keeps them through attribute-value normalization (XML 1.0 3.3.3), in text a CR
    through line-end handling; the parsed tree holds the characters themselves."""
    value = _clean(value)
    if _SPECIAL.search(value) is None:
        return value
    return _SPECIAL.sub(lambda m: _ESCAPES[m[0]], value)


def _attrs(**attrs: str | None) -> str:
    return "".join(f' {k}="{_t(v)}"' for k, v in attrs.items() if v is not None)


def _issuer(entity_id: str) -> str:
    return f'<saml:Issuer Format="{ENTITY_FORMAT}">{_t(entity_id)}</saml:Issuer>'


def _attribute_statement(attributes: list[Attr]) -> str:
    out = ["<saml:AttributeStatement>"]
    for a in attributes:
        out.append(
            "<saml:Attribute"
            + _attrs(Name=a.name, NameFormat=a.name_format, FriendlyName=a.friendly_name)
            + ">"
        )
        # xsi:type xs:string as pysaml2 wrote it; xs is declared where it is used, so the
        # value keeps its type when the Assertion is taken out of the Response.
        out.extend(
            f'<saml:AttributeValue xmlns:xs="{XS_NS}" xsi:type="xs:string">{_t(v)}'
            "</saml:AttributeValue>"
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
) -> bytes:
    """The serialized Response for one SP. ``encrypt_for`` is the SP's encryption certificate
    (PEM, from its metadata): the signed Assertion then travels as an EncryptedAssertion."""
    issued = instant(now)
    expires = instant(now + lifetime)
    # Written as text with every value escaped and parsed once: several times cheaper than
    # building the tree an element at a time, and the same tree.
    assertion = "".join(
        [
            f'<saml:Assertion ID="{new_id()}" Version="2.0" IssueInstant="{issued}">',
            _issuer(issuer),
            "<saml:Subject><saml:NameID",
            _attrs(
                Format=name_id.format_uri,
                NameQualifier=name_id.name_qualifier,
                SPNameQualifier=name_id.sp_name_qualifier,
            ),
            f">{_t(name_id.value)}</saml:NameID>",
            f'<saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData',
            _attrs(NotOnOrAfter=expires, Recipient=acs_url, InResponseTo=in_response_to or None),
            "/></saml:SubjectConfirmation></saml:Subject>",
            f'<saml:Conditions NotBefore="{issued}" NotOnOrAfter="{expires}">',
            f"<saml:AudienceRestriction><saml:Audience>{_t(audience)}</saml:Audience>",
            "</saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement",
            _attrs(
                AuthnInstant=instant(statement.auth_time),
                SessionIndex=statement.session_index,
                SessionNotOnOrAfter=instant(statement.not_on_or_after),
            ),
            "><saml:AuthnContext><saml:AuthnContextClassRef>",
            _t(statement.class_ref),
            "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
            _attribute_statement(attributes) if attributes else "",
            "</saml:Assertion>",
        ]
    )
    if encrypt_for:
        assertion = f"<saml:EncryptedAssertion>{assertion}</saml:EncryptedAssertion>"
    response = parse_xml(
        "".join(
            [
                f'<samlp:Response xmlns:samlp="{SAMLP_NS}" xmlns:saml="{SAML_NS}" ',
                f'xmlns:xsi="{XSI_NS}" ID="{new_id()}" Version="2.0" IssueInstant="{issued}"',
                _attrs(Destination=acs_url, InResponseTo=in_response_to or None),
                ">",
                _issuer(issuer),
                f'<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>',
                assertion,
                "</samlp:Response>",
            ]
        )
    )
    assertion = response[2][0] if encrypt_for else response[2]

    # Inner first: the Response signature covers the Assertion's (or its ciphertext).
    if sign_assertion:
        signer.sign_node(assertion)
    if encrypt_for:
        signer.encrypt_node(assertion, encrypt_for)
    if sign_response:
        signer.sign_node(response)
    return etree.tostring(response, encoding="UTF-8")
