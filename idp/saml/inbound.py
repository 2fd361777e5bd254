"""Decoding of inbound SAML messages before pysaml2 sees them (saml-bindings 3.4, 3.5).

Every message passes one gate: bounded base64, bounded raw DEFLATE for HTTP-Redirect (a
zip bomb stops at the limit), and an XML check that refuses DOCTYPE (so no external entities
and no entity expansion), processing instructions and comments inside NameID or Issuer (the
"comment truncation" trick against identifiers). pysaml2 parses with defusedxml on top.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from .crypto import DSIG_NS, SAML_NS, parse_xml

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
_NAME_ID = f"{{{SAML_NS}}}NameID"
_ISSUER = f"{{{SAML_NS}}}Issuer"
_SIGNATURE = f"{{{DSIG_NS}}}Signature"
# Largest encoded message accepted and largest XML after inflating; SAML requests are a few KiB.
MAX_ENCODED = 64 * 1024
MAX_XML = 256 * 1024


class BadMessage(Exception):
    """A message that cannot be accepted; the text is safe to show."""


@dataclass(frozen=True)
class Inbound:
    xml: bytes
    root_tag: str  # local name of the root element
    issuer: str | None
    id: str | None
    issue_instant: str | None
    # The checked document, for readers that need more than the above.
    root: etree._Element | None = field(default=None, compare=False, repr=False)
    # Whether a ds:Signature stands anywhere in it (which element it signs is not judged here).
    has_signature: bool = False


# xs:dateTime in UTC (saml-core 1.3.3), fractional seconds allowed; like pysaml2 we also take
# one without the "Z". An offset is refused: SAML times carry no time zone.
_INSTANT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?Z?", re.ASCII)


def utc_instant(value: str | None) -> float | None:
    """A SAML time as a Unix timestamp, or None when it is not one."""
    m = _INSTANT.fullmatch(value or "")
    if m is None:
        return None
    try:
        return datetime(*(int(x) for x in m.groups()), tzinfo=UTC).timestamp()
    except ValueError:  # month 13, February 30th...
        return None


def _b64(data: str) -> bytes:
    if len(data) > MAX_ENCODED:
        raise BadMessage("the SAML message is too large")
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("the SAML message is not valid base64") from None


def decode_redirect(data: str) -> bytes:
    """HTTP-Redirect: base64 of raw DEFLATE (RFC 1951), inflated up to MAX_XML."""
    raw = _b64(data)
    inflater = zlib.decompressobj(-15)
    try:
        xml = inflater.decompress(raw, MAX_XML + 1)
    except zlib.error:
        raise BadMessage("the SAML message is not DEFLATE-compressed") from None
    if len(xml) > MAX_XML or inflater.unconsumed_tail:
        raise BadMessage("the SAML message is too large")
    if not inflater.eof:
        raise BadMessage("the SAML message is truncated")
    return xml


def decode_post(data: str) -> bytes:
    """HTTP-POST: plain base64 of the XML."""
    xml = _b64(data)
    if len(xml) > MAX_XML:
        raise BadMessage("the SAML message is too large")
    return xml


# XML-Signature algorithms accepted on inbound messages; SHA-1 only for SPs let off per SP.
_SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
}
_DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
}
SIG_RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


def check_signature_algorithms(
    root: etree._Element, *, allow_sha1: bool = False, what: str = "the request signature"
) -> None:
    """Refuse an XML signature anywhere in the message made with an algorithm we do not
    accept (SHA-1 unless ``allow_sha1``), before any verification is attempted."""
    methods = _SIGNATURE_METHODS | ({SIG_RSA_SHA1} if allow_sha1 else set())
    digests = _DIGEST_METHODS | ({DIGEST_SHA1} if allow_sha1 else set())
    for sig in root.iter(_SIGNATURE):
        for el in sig.iter(f"{{{DSIG_NS}}}SignatureMethod"):
            alg = el.get("Algorithm")
            if alg not in methods:
                raise BadMessage(f"{what} is not valid: signature algorithm {alg} is not accepted")
        for el in sig.iter(f"{{{DSIG_NS}}}DigestMethod"):
            alg = el.get("Algorithm")
            if alg not in digests:
                raise BadMessage(f"{what} is not valid: digest algorithm {alg} is not accepted")


def inspect(xml: bytes) -> Inbound:
    """Check the XML is safe and a SAML protocol message; return what routing needs."""
    if b"<!DOCTYPE" in xml.upper() or b"<!ENTITY" in xml.upper():
        raise BadMessage("the SAML message contains a DTD, which is not allowed")
    try:
        root = parse_xml(xml)
    except etree.XMLSyntaxError:
        raise BadMessage("the SAML message is not well-formed XML") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise BadMessage("the SAML message contains a DTD, which is not allowed")
    if root.tag is etree.Entity or not isinstance(root.tag, str):
        raise BadMessage("the SAML message is not a SAML protocol message")
    ns, _, local = root.tag[1:].partition("}")
    if ns != SAMLP_NS:
        raise BadMessage("the SAML message is not a SAML protocol message")
    has_signature = False
    for el in root.iter():  # one walk for every check below
        tag = el.tag
        has_signature = has_signature or tag == _SIGNATURE
        if tag is etree.ProcessingInstruction or tag is etree.Entity:
            raise BadMessage("the SAML message contains processing instructions or entities")
        if (tag == _NAME_ID or tag == _ISSUER) and len(el):  # a comment is a child too
            name = "NameID" if tag == _NAME_ID else "Issuer"
            raise BadMessage(f"the {name} of the SAML message has comments or elements in it")
    issuer_el = root.find(_ISSUER)
    issuer = issuer_el.text.strip() if issuer_el is not None and issuer_el.text else None
    return Inbound(
        xml=xml,
        root_tag=local,
        issuer=issuer,
        id=root.get("ID"),
        issue_instant=root.get("IssueInstant"),
        root=root,
        has_signature=has_signature,
    )
