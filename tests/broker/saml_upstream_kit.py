"""An upstream SAML IdP for brokering tests: a pysaml2 ``Server`` with its own key pair and
metadata, which signs (and, asked to, encrypts) the Responses the tests send to our ACS, and
the tamperings the hostile tests need (XML edits after signing, signature wrapping)."""

from __future__ import annotations

import base64
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xmlsec
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

# The SAML flow tests' helpers (key pairs, live servers, forms) live in tests/flows.
_FLOWS = str(Path(__file__).resolve().parent.parent / "flows")
if _FLOWS not in sys.path:
    sys.path.insert(0, _FLOWS)

from saml_support import make_keypair  # noqa: E402

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
UPSTREAM = "https://upstream.example.org/idp/metadata"
UPSTREAM_SSO = "https://upstream.example.org/idp/sso"
UPSTREAM_SLO = "https://upstream.example.org/idp/slo"
AUTHN = {"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}
IDENTITY = {
    "mail": ["ada@upstream.example.org"],
    "givenName": ["Ada"],
    "sn": ["Lovelace"],
    "eduPersonAffiliation": ["member", "staff"],
}


@dataclass
class Upstream:
    server: Server
    metadata: str
    folder: Path
    key: Path
    cert: Path

    def response(
        self,
        *,
        in_response_to: str | None,
        destination: str,
        audience: str,
        name_id: str = "ada-persistent-1",
        name_id_format: str = NAMEID_FORMAT_PERSISTENT,
        sign_response: bool = True,
        sign_assertion: bool = True,
        encrypt_cert: str | None = None,
        identity: dict[str, list[str]] | None = None,
        session_index: str | None = None,
        issuer_server: Server | None = None,
    ) -> str:
        """A Response as the upstream makes it (XML text)."""
        server = issuer_server or self.server
        kwargs: dict[str, Any] = {}
        if encrypt_cert:
            kwargs.update(
                encrypt_assertion=True,
                encrypt_cert_assertion=encrypt_cert,
                encrypted_advice_attributes=False,
            )
        if session_index:
            kwargs["session_index"] = session_index  # ignored by old pysaml2; harmless
        resp = server.create_authn_response(
            identity if identity is not None else IDENTITY,
            in_response_to=in_response_to,
            destination=destination,
            sp_entity_id=audience,
            name_id=NameID(format=name_id_format, text=name_id),
            authn=AUTHN,
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **kwargs,
        )
        return str(resp)


def encrypt_assertion(xml: str, cert_pem: str, block: str) -> str:
    """The Response with its (signed) Assertion encrypted for ``cert_pem`` by libxmlsec1:
    ``block`` (an XML-Enc block cipher URI) with an RSA-OAEP transported key. (pysaml2 itself
    encrypts with 3DES only.)"""
    ciphers = {
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc": (
            xmlsec.constants.TransformAes256Cbc,
            xmlsec.constants.KeyDataAes,
            256,
        ),
        "http://www.w3.org/2009/xmlenc11#aes128-gcm": (
            xmlsec.constants.TransformAes128Gcm,
            xmlsec.constants.KeyDataAes,
            128,
        ),
    }
    transform, key_data, bits = ciphers[block]
    root = etree.fromstring(xml.encode())
    assertion = root.find(f"{{{SAML}}}Assertion")
    holder = etree.SubElement(root, f"{{{SAML}}}EncryptedAssertion")
    assertion.addprevious(holder)
    holder.append(assertion)
    enc_data = xmlsec.template.encrypted_data_create(
        root, transform, type=xmlsec.constants.TypeEncElement, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="dsig")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    manager = xmlsec.KeysManager()
    manager.add_key(
        xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    )
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(key_data, bits, xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(enc_data, assertion)
    return etree.tostring(root).decode()


def b64(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


def build_upstream(folder: Path, sp_metadata: list[str], name: str = "upstream") -> Upstream:
    """A pysaml2 IdP that knows the SPs of ``sp_metadata`` (our broker SPs')."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = make_keypair(folder, f"{name}-sign")
    conf: dict[str, Any] = {
        "entityid": UPSTREAM,
        "key_file": str(key),
        "cert_file": str(cert),
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [
                        (UPSTREAM_SSO, BINDING_HTTP_REDIRECT),
                        (UPSTREAM_SSO, BINDING_HTTP_POST),
                    ],
                    "single_logout_service": [(UPSTREAM_SLO, BINDING_HTTP_REDIRECT)],
                },
                "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
                "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": None}},
            }
        },
        "accepted_time_diff": 60,
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
    }
    files = []
    for index, xml in enumerate(sp_metadata):
        md_file = folder / f"{name}-sp-{index}.xml"
        md_file.write_text(xml)
        files.append(str(md_file))
    conf["metadata"] = {"local": files}
    config = IdPConfig()
    config.load(conf)
    server = Server(config=config)
    metadata = create_metadata_string(None, config=config, sign=False).decode()
    return Upstream(server, metadata, folder, key, cert)


# --- tampering ------------------------------------------------------------------------------


def first_assertion(xml: str) -> str:
    m = re.search(r"<(\w+:)?Assertion\b.*?</(\w+:)?Assertion>", xml, re.S)
    assert m, xml[:300]
    return m.group(0)


def wrap_evil_assertion(xml: str, evil_name_id: str, same_id: bool = False) -> str:
    """Signature wrapping: a copy of the signed assertion, with another NameID, no signature
    and (unless ``same_id``) another ID, put first in the Response; the signed one stays."""
    signed = first_assertion(xml)
    evil = re.sub(r"<(\w+:)?Signature\b.*?</(\w+:)?Signature>", "", signed, flags=re.S)
    if not same_id:
        evil = re.sub(r'ID="[^"]+"', 'ID="_evil1"', evil, count=1)
    evil = re.sub(r"(<(\w+:)?NameID\b[^>]*>)[^<]*", r"\g<1>" + evil_name_id, evil, count=1)
    return xml.replace(signed, evil + signed, 1)
