"""Hostile input to the inbound SAML readers (idp.saml.inbound, idp.saml.authnrequest): generated
element trees in the SAML, XML-Signature and foreign namespaces, with attributes, comments,
processing instructions, CDATA, character and entity references, DTDs with internal, external and
parameter entities, odd encodings, truncation and trailing bytes, raw and in both bindings'
encodings. Only the readers' typed error (``BadMessage``, an error page) or a reading comes out;
a document with a DTD is always refused and no entity is ever expanded; what is read agrees
with the parsed tree."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from saml_fuzz_kit import DS, EXPANDED, SAML, SAMLP, deflate, hostile_documents, read_inbound

from idp.saml.inbound import BadMessage

_BOUNDED = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _texts(root) -> str:
    return "".join(
        (el.text or "") + (el.tail or "") + "".join(el.attrib.values())
        for el in root.iter()
        if isinstance(el.tag, str)
    )


@_BOUNDED
@given(case=hostile_documents(), mode=st.sampled_from([0, 1, 2]))
@example(case=(f'<!DOCTYPE r [<!ENTITY e "{EXPANDED}">]><r>&e;</r>'.encode("utf-16"), True), mode=0)
def test_hostile_xml_gives_a_reading_or_bad_message(case, mode):
    data, has_dtd = case
    wire = {0: data, 1: deflate(data).encode(), 2: base64.b64encode(data)}[mode]
    try:
        msg, fields = read_inbound(wire, mode)
    except BadMessage as exc:
        assert str(exc) and "\n" not in str(exc)  # one line, shown on the error page
        return
    assert not has_dtd, data
    tree = msg.root.getroottree()
    assert tree.docinfo.internalDTD is None and not tree.docinfo.doctype
    assert msg.root.tag.startswith("{" + SAMLP + "}")
    assert EXPANDED not in _texts(msg.root)
    assert not any(el.tag is etree.Entity for el in msg.root.iter())
    assert msg.has_signature == any(el.tag == f"{{{DS}}}Signature" for el in msg.root.iter())
    if fields is not None:
        assert fields.signed is False and fields.id == msg.root.get("ID")
        issuer = msg.root.find(f"{{{SAML}}}Issuer")
        assert fields.issuer == (None if issuer is None else (issuer.text or "").strip())


@_BOUNDED
@given(data=st.binary(max_size=300), mode=st.sampled_from([0, 1, 2]))
def test_random_bytes_give_bad_message(data, mode):
    """Bytes that are no SAML document (base64 and DEFLATE of them too): refused, typed."""
    with pytest.raises(BadMessage):
        read_inbound(data, mode)
