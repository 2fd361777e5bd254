"""Decoding of inbound SAML messages before pysaml2 sees them (saml-bindings 3.4, 3.5).

Every message passes one gate: bounded base64, bounded raw DEFLATE for HTTP-Redirect (a
zip bomb stops at the limit), and an XML check that refuses DOCTYPE (so no external entities
and no entity expansion), processing instructions and comments inside NameID or Issuer (the
"comment truncation" trick against identifiers). pysaml2 parses with defusedxml on top.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field

from lxml import etree

from .crypto import SAML_NS, parse_xml

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
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
    if next(root.iter(etree.ProcessingInstruction, etree.Entity), None) is not None:
        raise BadMessage("the SAML message contains processing instructions or entities")
    for name in ("NameID", "Issuer"):
        for el in root.iter(f"{{{SAML_NS}}}{name}"):
            if any(not isinstance(child.tag, str) for child in el) or len(el):
                raise BadMessage(f"the {name} of the SAML message has comments or elements in it")
    issuer_el = root.find(f"{{{SAML_NS}}}Issuer")
    issuer = issuer_el.text.strip() if issuer_el is not None and issuer_el.text else None
    return Inbound(
        xml=xml,
        root_tag=local,
        issuer=issuer,
        id=root.get("ID"),
        issue_instant=root.get("IssueInstant"),
        root=root,
    )
