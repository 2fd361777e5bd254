"""The Web SSO Response built and signed in one tree (idp.saml.response): each signature
verifies with libxmlsec1 (an implementation independent of our signer) against our
certificate only, covers exactly the element it references, breaks when any signed byte
changes, and survives encryption (saml-core 5.4, 6.1; xmldsig-core enveloped signatures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import xmlsec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from idp.saml.pysaml import InProcessBackend
from idp.saml.response import _NOT_XML, Statement, build_response
from idp.saml.subject import Attr, IssuedNameId

sys.path.insert(0, str(Path(__file__).parent / "flows"))
from saml_support import make_keypair  # noqa: E402

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
}
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


@pytest.fixture(name="keys")
def keys_fixture(tmp_path):
    idp_key, idp_cert = make_keypair(tmp_path, "idp")
    sp_key, sp_cert = make_keypair(tmp_path, "sp")
    signer = InProcessBackend("/usr/bin/xmlsec1", idp_key.read_bytes(), idp_cert.read_bytes())
    return signer, idp_cert, sp_key, sp_cert


def _build(signer, **extra) -> bytes:
    args = {
        "signer": signer,
        "issuer": "https://idp.example/saml/metadata",
        "audience": "https://sp.example/metadata",
        "acs_url": "https://sp.example/acs",
        "in_response_to": "_req1",
        "name_id": IssuedNameId("transient", "_abc", "https://idp.example", "https://sp.example"),
        "statement": Statement(1_900_000_000, "urn:ac:pwd", "_s1", 1_900_036_000),
        "attributes": [
            Attr("urn:oid:0.9.2342.19200300.100.1.3", URI, "mail", ["ann@example.org"]),
            Attr("urn:oid:2.5.4.42", URI, "givenName", ["Ann\x01 <b>&"]),
        ],
        "now": 1_900_000_100.0,
        "lifetime": 300,
        "sign_response": True,
        "sign_assertion": True,
    }
    args.update(extra)
    return build_response(**args)


def _verify(root: etree._Element, element: etree._Element, cert: Path) -> None:
    """Raises xmlsec.Error unless ``element``'s own enveloped signature verifies."""
    xmlsec.tree.add_ids(root, ["ID"])
    signature = element.find("ds:Signature", NS)
    assert signature is not None
    ref = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert ref.get("URI") == "#" + element.get("ID")
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(cert), xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(signature)


def test_response_and_assertion_signatures_verify_with_libxmlsec1(keys):
    signer, idp_cert, _, sp_cert = keys
    root = etree.fromstring(_build(signer))
    assertion = root.find("saml:Assertion", NS)
    _verify(root, assertion, idp_cert)
    _verify(root, root, idp_cert)
    # Schema order: the Signature follows the Issuer in both (saml-core 2.3.3, 3.2.1).
    assert [etree.QName(c).localname for c in root][:3] == ["Issuer", "Signature", "Status"]
    assert [etree.QName(c).localname for c in assertion][:3] == ["Issuer", "Signature", "Subject"]
    assert assertion.findtext("saml:Conditions/saml:AudienceRestriction/saml:Audience", None, NS)
    # A control character is dropped rather than producing XML no parser accepts.
    values = [v.text for v in assertion.iterfind(".//saml:AttributeValue", NS)]
    assert values == ["ann@example.org", "Ann <b>&"]
    # Another certificate does not verify it.
    other = etree.fromstring(_build(signer))
    with pytest.raises(xmlsec.Error):
        _verify(other, other, sp_cert)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.find(".//saml:AttributeValue", NS).__setattr__("text", "eve@example.org"),
        lambda r: r.find(".//saml:Audience", NS).__setattr__("text", "https://evil.example"),
        lambda r: r.find(".//saml:NameID", NS).set("Format", "x"),
    ],
)
def test_any_change_to_signed_content_breaks_both_signatures(keys, tamper):
    signer, idp_cert, _, _ = keys
    root = etree.fromstring(_build(signer))
    tamper(root)
    with pytest.raises(xmlsec.Error):
        _verify(root, root.find("saml:Assertion", NS), idp_cert)
    with pytest.raises(xmlsec.Error):
        _verify(root, root, idp_cert)


def test_unsigned_parts_are_left_out_when_the_sp_does_not_want_them(keys):
    signer, idp_cert, _, _ = keys
    root = etree.fromstring(_build(signer, sign_response=False))
    assert root.find("ds:Signature", NS) is None
    _verify(root, root.find("saml:Assertion", NS), idp_cert)
    root = etree.fromstring(_build(signer, sign_assertion=False))
    assert root.find("saml:Assertion/ds:Signature", NS) is None
    _verify(root, root, idp_cert)


def test_encrypted_assertion_decrypts_and_keeps_its_signature(keys):
    signer, idp_cert, sp_key, sp_cert = keys
    root = etree.fromstring(_build(signer, encrypt_for=sp_cert.read_bytes()))
    assert root.find("saml:Assertion", NS) is None
    assert b"ann@example.org" not in etree.tostring(root)
    _verify(root, root, idp_cert)  # the Response signature covers the ciphertext
    enc = root.find("saml:EncryptedAssertion/xenc:EncryptedData", NS)
    method = enc.find("xenc:EncryptionMethod", NS).get("Algorithm")
    assert method == "http://www.w3.org/2009/xmlenc11#aes128-gcm"
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(str(sp_key), xmlsec.constants.KeyDataFormatPem))
    assertion = xmlsec.EncryptionContext(manager).decrypt(enc)
    doc = etree.fromstring(etree.tostring(assertion))
    _verify(doc, doc, idp_cert)
    assert doc.findtext(".//saml:AttributeValue", None, NS) == "ann@example.org"


def test_every_value_arrives_as_given_and_cannot_add_markup(keys):
    """The document is written as text and parsed: each value must come out of the parsed
    tree exactly as it went in (quotes, ampersands, TAB, LF and CR too), and a value shaped
    like markup stays a value."""
    signer, idp_cert, _, _ = keys
    tricky = "a\"b'c&d<e>f\tg\nh\ri]]>"
    acs = 'https://sp.example/acs?x=1&y="2"'
    root = etree.fromstring(
        _build(
            signer,
            acs_url=acs,
            in_response_to="_r<\"'&",
            name_id=IssuedNameId("unspecified", tricky),
            attributes=[
                Attr("urn:x:" + tricky, URI, tricky, [tricky, '</saml:AttributeValue><x y="']),
            ],
        )
    )
    assertion = root.find("saml:Assertion", NS)
    _verify(root, assertion, idp_cert)
    _verify(root, root, idp_cert)
    assert root.get("Destination") == acs
    assert root.get("InResponseTo") == "_r<\"'&"
    data = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    assert (data.get("Recipient"), data.get("InResponseTo")) == (acs, "_r<\"'&")
    assert assertion.findtext("saml:Subject/saml:NameID", None, NS) == tricky
    (attr,) = assertion.iterfind(".//saml:Attribute", NS)
    assert (attr.get("Name"), attr.get("FriendlyName")) == ("urn:x:" + tricky, tricky)
    assert [v.text for v in attr] == [tricky, '</saml:AttributeValue><x y="']
    assert root.find(".//x") is None


_ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("&<>\"'\t\n\r ]]>=#;x:/"),
        st.characters(codec="utf-8"),  # any code point, XML-illegal ones too (they are dropped)
    ),
    max_size=12,
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    value=_ANY_TEXT,
    name=_ANY_TEXT,
    acs=_ANY_TEXT,
    sign=st.sampled_from([(True, True), (True, False), (False, True)]),
)
def test_canonical_text_verifies_for_any_values(keys, value, name, acs, sign):
    """The Response is written in exclusive-c14n form (idp.saml.response): for any values,
    libxmlsec1 -- which canonicalizes what it parsed -- verifies each signature, and every
    value reads back as given (less the characters XML cannot carry)."""
    signer, idp_cert, _, _ = keys
    sign_response, sign_assertion = sign
    xml = _build(
        signer,
        acs_url=acs,
        in_response_to=value or None,
        name_id=IssuedNameId("unspecified", value, name or None),
        attributes=[Attr("urn:x:" + name, URI, value or None, [value, name])],
        sign_response=sign_response,
        sign_assertion=sign_assertion,
    )
    root = etree.fromstring(xml)
    assertion = root.find("saml:Assertion", NS)
    if sign_assertion:
        _verify(root, assertion, idp_cert)
    if sign_response:
        _verify(root, root, idp_cert)
    clean = _NOT_XML.sub("", value)
    assert (assertion.findtext("saml:Subject/saml:NameID", None, NS) or "") == clean
    assert (root.get("Destination") or "") == _NOT_XML.sub("", acs)
    values = [v.text or "" for v in assertion.iterfind(".//saml:AttributeValue", NS)]
    assert values == [clean, _NOT_XML.sub("", name)]
