"""Every other message the IdP sends is written by the same canonical writer as the Web SSO
Response (idp.saml.response): the error Response (saml-core 3.3.3), LogoutRequest (3.7.1) and
LogoutResponse (3.7.2). libxmlsec1 verifies each signature against our certificate only, any
change to a signed byte breaks it, and every value, whatever its characters, reads back as
given and cannot add markup."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import xmlsec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from idp.saml.pysaml import InProcessBackend
from idp.saml.response import _NOT_XML, build_logout_request, build_status_response
from idp.saml.subject import IssuedNameId

sys.path.insert(0, str(Path(__file__).parent / "flows"))
from saml_support import make_keypair  # noqa: E402

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
ISSUER = "https://idp.example/saml/metadata"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PARTIAL = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


@pytest.fixture(name="keys", scope="module")
def keys_fixture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    idp_key, idp_cert = make_keypair(folder, "idp")
    _, other_cert = make_keypair(folder, "other")
    signer = InProcessBackend("/usr/bin/xmlsec1", idp_key.read_bytes(), idp_cert.read_bytes())
    return signer, idp_cert, other_cert


def _verify(root: etree._Element, cert: Path) -> None:
    """Raises xmlsec.Error unless the root's own enveloped signature verifies."""
    xmlsec.tree.add_ids(root, ["ID"])
    signature = root.find("ds:Signature", NS)
    assert signature is not None
    ref = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert ref.get("URI") == "#" + root.get("ID")
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(cert), xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(signature)


def _error(signer, sign=True, **extra) -> bytes:
    args = {
        "signer": signer,
        "element": "Response",
        "issuer": ISSUER,
        "destination": "https://sp.example/acs",
        "in_response_to": "_req1",
        "status": REQUESTER,
        "sub_status": NO_PASSIVE,
        "message": "the user is not signed in",
        "now": 1_900_000_000.0,
        "sign": sign,
    }
    args.update(extra)
    return build_status_response(**args)


def _logout_request(signer, sign=True, **extra) -> tuple[str, bytes]:
    args = {
        "signer": signer,
        "issuer": ISSUER,
        "destination": "https://sp.example/slo",
        "name_id": IssuedNameId("transient", "_n1", "https://idp.example", "https://sp.example"),
        "session_index": "_s1",
        "now": 1_900_000_000.0,
        "sign": sign,
    }
    args.update(extra)
    return build_logout_request(**args)


def _children(root: etree._Element) -> list[str]:
    return [etree.QName(c).localname for c in root]


def test_error_response_is_signed_and_says_its_status(keys):
    signer, idp_cert, other_cert = keys
    root = etree.fromstring(_error(signer))
    assert etree.QName(root).localname == "Response"
    _verify(root, idp_cert)
    # Schema order (saml-core 3.2.2): Issuer, Signature, Status; no assertion.
    assert _children(root) == ["Issuer", "Signature", "Status"]
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    assert code.get("Value") == REQUESTER
    assert code.find("samlp:StatusCode", NS).get("Value") == NO_PASSIVE
    assert root.findtext("samlp:Status/samlp:StatusMessage", None, NS) == (
        "the user is not signed in"
    )
    assert (root.get("Destination"), root.get("InResponseTo")) == (
        "https://sp.example/acs",
        "_req1",
    )
    assert root.findtext("saml:Issuer", None, NS) == ISSUER
    with pytest.raises(xmlsec.Error):
        _verify(etree.fromstring(_error(signer)), other_cert)
    unsigned = etree.fromstring(_error(signer, sign=False))
    assert unsigned.find("ds:Signature", NS) is None


def test_logout_request_is_signed_and_names_the_session(keys):
    signer, idp_cert, _ = keys
    message_id, xml = _logout_request(signer)
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "LogoutRequest"
    assert root.get("ID") == message_id and root.get("InResponseTo") is None
    _verify(root, idp_cert)
    assert _children(root) == ["Issuer", "Signature", "NameID", "SessionIndex"]
    name_id = root.find("saml:NameID", NS)
    assert name_id.text == "_n1"
    assert name_id.get("Format") == "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    assert (name_id.get("NameQualifier"), name_id.get("SPNameQualifier")) == (
        "https://idp.example",
        "https://sp.example",
    )
    assert root.findtext("samlp:SessionIndex", None, NS) == "_s1"
    _, unsigned = _logout_request(signer, sign=False)
    assert etree.fromstring(unsigned).find("ds:Signature", NS) is None


@pytest.mark.parametrize("sub_status", [None, PARTIAL])
def test_logout_response_is_signed_with_success_or_partial(keys, sub_status):
    signer, idp_cert, _ = keys
    xml = _error(
        signer,
        element="LogoutResponse",
        destination="https://sp.example/slo",
        status=SUCCESS,
        sub_status=sub_status,
        message=None,
    )
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "LogoutResponse"
    _verify(root, idp_cert)
    assert _children(root) == ["Issuer", "Signature", "Status"]
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    assert code.get("Value") == SUCCESS
    inner = code.find("samlp:StatusCode", NS)
    assert (inner.get("Value") if inner is not None else None) == sub_status
    assert root.find("samlp:Status/samlp:StatusMessage", NS) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.find("samlp:Status/samlp:StatusCode", NS).set("Value", SUCCESS),
        lambda r: r.set("Destination", "https://evil.example/acs"),
        lambda r: r.find("saml:Issuer", NS).__setattr__("text", "https://evil.example"),
    ],
)
def test_any_change_to_a_signed_status_breaks_its_signature(keys, tamper):
    signer, idp_cert, _ = keys
    root = etree.fromstring(_error(signer))
    tamper(root)
    with pytest.raises(xmlsec.Error):
        _verify(root, idp_cert)


def test_any_change_to_a_signed_logout_request_breaks_its_signature(keys):
    signer, idp_cert, _ = keys
    root = etree.fromstring(_logout_request(signer)[1])
    root.find("saml:NameID", NS).text = "_someone_else"
    with pytest.raises(xmlsec.Error):
        _verify(root, idp_cert)


_ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("&<>\"'\t\n\r ]]>=#;x:/"),
        st.characters(codec="utf-8"),  # any code point, XML-illegal ones too (they are dropped)
    ),
    max_size=12,
)


def _kept(value: str) -> str:
    """What reads back from the parsed tree: the value less the characters XML cannot carry
    (CR, TAB and LF survive: the writer escapes them as c14n does)."""
    return _NOT_XML.sub("", value)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(value=_ANY_TEXT, where=_ANY_TEXT, message=_ANY_TEXT)
def test_canonical_messages_verify_for_any_values(keys, value, where, message):
    """For any values, libxmlsec1 (which canonicalizes what it parsed) verifies each message's
    signature, and every value reads back as given, less what XML cannot carry."""
    signer, idp_cert, _ = keys
    root = etree.fromstring(
        _error(signer, destination=where, in_response_to=value or None, message=message or None)
    )
    _verify(root, idp_cert)
    assert root.get("Destination") == _kept(where)
    assert root.get("InResponseTo") == (_kept(value) if value else None)
    if message:
        assert root.findtext("samlp:Status/samlp:StatusMessage", None, NS) == _kept(message)

    _, xml = _logout_request(
        signer,
        destination=where,
        name_id=IssuedNameId("unspecified", value, message or None, None),
        session_index=message,
    )
    root = etree.fromstring(xml)
    _verify(root, idp_cert)
    assert root.get("Destination") == _kept(where)
    name_id = root.find("saml:NameID", NS)
    assert (name_id.text or "") == _kept(value)
    assert name_id.get("NameQualifier") == (_kept(message) if message else None)
    assert (root.findtext("samlp:SessionIndex", None, NS) or "") == _kept(message)
    assert root.find(".//x") is None and root.find(".//{*}x") is None
