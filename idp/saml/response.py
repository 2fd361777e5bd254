"""The Web SSO ``<Response>`` (saml-profiles 4.1.4.2) built and signed as one lxml tree.

pysaml2 builds a Response from its own element classes, serializes it with ElementTree, and
hands the text to the crypto backend once per signature, which parses and re-serializes the
whole document each time; its attribute policy machinery runs even with nothing to filter.
For the sign-in hot path that was most of the response's cost. Here the document is built
once with lxml, the Assertion is signed (then encrypted, when the SP asks for it), the
Response is signed over the result, and the tree is serialized once. The XML is the same
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

from .crypto import InProcessBackend
from .subject import Attr, IssuedNameId

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XS_NS = "http://www.w3.org/2001/XMLSchema"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

_P = f"{{{SAMLP_NS}}}"
_A = f"{{{SAML_NS}}}"
_XSI_TYPE = f"{{{XSI_NS}}}type"
# Characters XML 1.0 cannot carry (a profile field with a control character must not turn
# the sign-in into an error): dropped from text and attribute values.
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


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None):
    el = etree.SubElement(parent, tag, {k: _text(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = _text(text)
    return el


def _issuer(parent: etree._Element, entity_id: str) -> None:
    _sub(parent, _A + "Issuer", entity_id, Format=ENTITY_FORMAT)


def _attribute_statement(assertion: etree._Element, attributes: list[Attr]) -> None:
    statement = _sub(assertion, _A + "AttributeStatement")
    for a in attributes:
        attr = _sub(
            statement,
            _A + "Attribute",
            Name=a.name,
            NameFormat=a.name_format,
            FriendlyName=a.friendly_name,
        )
        for value in a.values:
            # xsi:type xs:string as pysaml2 wrote it; xs is declared where it is used, so the
            # value keeps its type when the Assertion is taken out of the Response.
            av = etree.SubElement(attr, _A + "AttributeValue", nsmap={"xs": XS_NS})
            av.set(_XSI_TYPE, "xs:string")
            av.text = _text(value)


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
    response = etree.Element(
        _P + "Response",
        {
            "ID": new_id(),
            "Version": "2.0",
            "IssueInstant": issued,
            "Destination": _text(acs_url),
        },
        nsmap={"samlp": SAMLP_NS, "saml": SAML_NS, "xsi": XSI_NS},
    )
    if in_response_to:
        response.set("InResponseTo", _text(in_response_to))
    _issuer(response, issuer)
    status = _sub(response, _P + "Status")
    _sub(status, _P + "StatusCode", Value=STATUS_SUCCESS)

    holder = _sub(response, _A + "EncryptedAssertion") if encrypt_for else response
    assertion = _sub(holder, _A + "Assertion", ID=new_id(), Version="2.0", IssueInstant=issued)
    _issuer(assertion, issuer)
    subject = _sub(assertion, _A + "Subject")
    _sub(
        subject,
        _A + "NameID",
        name_id.value,
        Format=name_id.format_uri,
        NameQualifier=name_id.name_qualifier,
        SPNameQualifier=name_id.sp_name_qualifier,
    )
    confirmation = _sub(subject, _A + "SubjectConfirmation", Method=BEARER)
    _sub(
        confirmation,
        _A + "SubjectConfirmationData",
        NotOnOrAfter=expires,
        Recipient=acs_url,
        InResponseTo=in_response_to or None,
    )
    conditions = _sub(assertion, _A + "Conditions", NotBefore=issued, NotOnOrAfter=expires)
    restriction = _sub(conditions, _A + "AudienceRestriction")
    _sub(restriction, _A + "Audience", audience)
    authn = _sub(
        assertion,
        _A + "AuthnStatement",
        AuthnInstant=instant(statement.auth_time),
        SessionIndex=statement.session_index,
        SessionNotOnOrAfter=instant(statement.not_on_or_after),
    )
    context = _sub(authn, _A + "AuthnContext")
    _sub(context, _A + "AuthnContextClassRef", statement.class_ref)
    if attributes:
        _attribute_statement(assertion, attributes)

    # Inner first: the Response signature covers the Assertion's (or its ciphertext).
    if sign_assertion:
        signer.sign_node(assertion)
    if encrypt_for:
        signer.encrypt_node(assertion, encrypt_for)
    if sign_response:
        signer.sign_node(response)
    return etree.tostring(response, encoding="UTF-8")
