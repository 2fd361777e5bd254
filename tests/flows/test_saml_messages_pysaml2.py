"""pysaml2, as the SP, accepts the signed logout and error messages our canonical writer
sends by the HTTP-POST binding (idp.saml.response): it verifies each XML signature against
our metadata and reads what the message says."""

from __future__ import annotations

import pytest
from saml2 import BINDING_HTTP_POST
from saml2.response import StatusNoPassive
from saml_support import pysaml2_sp
from support import base_overrides, init_database

pytestmark = pytest.mark.slow

ISSUER = "https://idp.example.org"


@pytest.fixture
def engine_and_sp(instance_dir, tmp_path):
    from idp.saml.engine import saml_idp
    from idp.saml.registry import SpRegistry
    from idp.services import build_services
    from idp.settings import load_settings

    overrides = base_overrides(instance_dir, issuer=ISSUER)
    init_database(overrides)
    svc = build_services(load_settings(overrides))
    idp = saml_idp(svc)
    client, sp_md = pysaml2_sp(tmp_path, idp.metadata())
    with svc.sessions.begin() as db:
        entity_id = SpRegistry(db).add(sp_md, replace=True).entity_id
    try:
        yield idp, idp.sp(entity_id), client
    finally:
        svc.engine.dispose()


def test_pysaml2_verifies_a_signed_logout_request(engine_and_sp):
    from idp.saml.engine import b64
    from idp.saml.subject import IssuedNameId

    idp, sp, client = engine_and_sp
    nid = IssuedNameId("transient", "_n1", idp.entity_id, sp.entity_id)
    req_id, xml = idp.logout_request("https://sp.example.org/slo/post", nid, "_s1", sign=True)
    parsed = client.parse_logout_request(b64(xml), BINDING_HTTP_POST)
    assert parsed is not None
    message = parsed.message
    assert message.id == req_id and message.signature is not None
    assert message.name_id.text == "_n1"
    assert [s.text for s in message.session_index] == ["_s1"]


def test_pysaml2_verifies_a_signed_error_response(engine_and_sp):
    from idp.saml.engine import b64

    idp, sp, client = engine_and_sp
    xml = idp.error_response(
        "_req1",
        "https://sp.example.org/acs",
        "urn:oasis:names:tc:SAML:2.0:status:Responder",
        "urn:oasis:names:tc:SAML:2.0:status:NoPassive",
        "the user is not signed in",
        sp,
    )
    with pytest.raises(StatusNoPassive):
        client.parse_authn_request_response(
            b64(xml), BINDING_HTTP_POST, outstanding={"_req1": "/after"}
        )
