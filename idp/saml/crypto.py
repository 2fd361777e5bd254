"""XML-DSig / XML-Enc names and the safe XML parser every SAML message goes through.

The pysaml2 ``CryptoBackend`` that signs, verifies and encrypts in process is
``idp.saml.pysaml.InProcessBackend``: it subclasses a pysaml2 class, and importing pysaml2's
``sigver`` builds its whole XML schema (about half a second and ~10 MB per worker), which this
module, imported by every SAML and federation module, does not need.
"""

from __future__ import annotations

import threading

from lxml import etree

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"

# Block encryption of assertions: AES-GCM (XML-Enc 1.1) with RSA-OAEP key transport.
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def safe_parser() -> etree.XMLParser:
    """No DTD loading, no entity resolution, no network, no huge trees."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
    )


_local = threading.local()


def parse_xml(text: str | bytes) -> etree._Element:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = safe_parser()
    if isinstance(text, str):
        text = text.encode("utf-8")
    return etree.fromstring(text, parser)
