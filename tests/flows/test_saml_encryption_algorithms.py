"""The block cipher of encrypted assertions, chosen per SP: AES-GCM by default (XML-Enc 1.1),
AES-CBC for an SP whose xmlsec lacks GCM (``encryption_algorithm`` stored with the SP,
`idp saml sp add --encryption-algorithm`). pysaml2 as the SP decrypts each (with the
xmlsec1 program) and reads the attributes."""

from __future__ import annotations

import base64

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp

pytestmark = pytest.mark.slow

XENC = "http://www.w3.org/2001/04/xmlenc#"
URIS = {
    None: "http://www.w3.org/2009/xmlenc11#aes128-gcm",  # the [saml] default
    "aes128-gcm": "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "aes256-gcm": "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "aes128-cbc": "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "aes256-cbc": "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
}


@pytest.mark.parametrize("algorithm", list(URIS), ids=lambda a: a or "default")
def test_sp_decrypts_with_its_algorithm(instance_dir, tmp_path, algorithm):
    with live_idp(instance_dir) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(tmp_path, md, encryption=True)
        settings = {"encryption_algorithm": algorithm} if algorithm else {}
        idp.register_sp(sp_md, **settings)
        uuid = idp.create_user("erica")
        browser = requests.Session()
        idp.login(browser, uuid)
        reqid, info = client.prepare_for_authenticate(
            entityid=idp.metadata_url,
            binding=BINDING_HTTP_REDIRECT,
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
        _, fields = form_with(r.text, "SAMLResponse")
        raw = base64.b64decode(fields["SAMLResponse"])
        doc = etree.fromstring(raw)
        methods = [
            m.get("Algorithm")
            for m in doc.iter(f"{{{XENC}}}EncryptionMethod")
            if m.getparent().tag == f"{{{XENC}}}EncryptedData"
        ]
        assert methods == [URIS[algorithm]]
        assert b"erica@example.org" not in raw
        resp = client.parse_authn_request_response(
            fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
        )
        assert resp.get_identity()["mail"] == ["erica@example.org"]
