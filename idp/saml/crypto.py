"""pysaml2 ``CryptoBackend`` on the in-process ``xmlsec`` binding (XML-DSig, XML-Enc).

pysaml2's stock backend runs the ``xmlsec1`` program for every signature (30-45 ms each: a
fork, temp files, re-reading the key). This backend signs with a private key parsed once per
worker and verifies in process; it subclasses the ``xmlsec1`` backend so encryption (and
decryption) fall back to the program when the binding cannot do it.

Signature checks stay strict: the element verified is the one whose ``ID`` pysaml2 asked for,
its ``ds:Signature`` must be its direct child, and pysaml2 has already checked (saml-core 5.4)
that the single Reference points at that element. Keys for verification come only from the
certificate file pysaml2 passes (taken from the peer's metadata).
"""

from __future__ import annotations

import copy
import logging
import threading
from functools import lru_cache

import xmlsec
from lxml import etree
from saml2.sigver import CryptoBackendXmlSec1

log = logging.getLogger("idp.saml.crypto")

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"

# Block encryption of assertions: AES-GCM (XML-Enc 1.1) with RSA-OAEP key transport.
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"

_BLOCK = {
    AES128_GCM: (xmlsec.constants.TransformAes128Gcm, xmlsec.constants.KeyDataAes, 128),
    AES256_GCM: (xmlsec.constants.TransformAes256Gcm, xmlsec.constants.KeyDataAes, 256),
    AES256_CBC: (xmlsec.constants.TransformAes256Cbc, xmlsec.constants.KeyDataAes, 256),
}


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


def _parse(text: str | bytes) -> etree._Element:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = safe_parser()
    if isinstance(text, str):
        text = text.encode("utf-8")
    return etree.fromstring(text, parser)


@lru_cache(maxsize=256)
def _cert_key(pem: bytes) -> xmlsec.Key:
    return xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)


def _find_by_id(root: etree._Element, node_name: str, node_id: str | None) -> etree._Element:
    ns, _, local = node_name.rpartition(":")
    tag = f"{{{ns}}}{local}"
    if node_id:
        found = [el for el in root.iter(tag) if el.get("ID") == node_id]
    else:
        found = [el for el in root.iter(tag) if el.find(f"{{{DSIG_NS}}}Signature") is not None]
    if len(found) != 1:
        raise xmlsec.Error(f"expected one {local} with ID {node_id!r}, found {len(found)}")
    return found[0]


class InProcessBackend(CryptoBackendXmlSec1):
    """Signs with ``signing_pem`` (loaded once) and verifies in process."""

    def __init__(self, xmlsec_binary: str, signing_pem: bytes, cert_pem: bytes) -> None:
        super().__init__(xmlsec_binary, delete_tmpfiles=True)
        key = xmlsec.Key.from_memory(signing_pem, xmlsec.constants.KeyDataFormatPem)
        key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
        self._key = key
        self.block_algorithm = AES128_GCM

    @property
    def version(self) -> str:
        return ".".join(str(n) for n in xmlsec.get_libxmlsec_version())

    # --- signatures ------------------------------------------------------------------------------

    def sign_statement(self, statement, node_name, key_file, node_id):
        root = _parse(statement if isinstance(statement, (str, bytes)) else str(statement))
        xmlsec.tree.add_ids(root, ["ID"])
        node = _find_by_id(root, node_name, node_id)
        signature = node.find(f"{{{DSIG_NS}}}Signature")
        if signature is None:
            raise xmlsec.Error(f"{node_name} {node_id} has no signature template")
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        ctx.sign(signature)
        return etree.tostring(root, encoding="unicode")

    def validate_signature(self, signedtext, cert_file, cert_type, node_name, node_id):
        if cert_type != "pem":
            return False
        with open(cert_file, "rb") as fh:
            cert = fh.read()
        try:
            root = _parse(signedtext)
            xmlsec.tree.add_ids(root, ["ID"])
            node = _find_by_id(root, node_name, node_id)
            signature = node.find(f"{{{DSIG_NS}}}Signature")
            if signature is None:
                return False
            ctx = xmlsec.SignatureContext()
            ctx.key = _cert_key(cert)
            ctx.verify(signature)
            return True
        except (xmlsec.Error, etree.XMLSyntaxError) as exc:
            log.info("signature check failed: %s", exc)
            return False

    # --- encryption ------------------------------------------------------------------------------

    def encrypt_assertion(
        self, statement, enc_key, template, key_type="des-192", node_xpath=None, node_id=None
    ):
        """Encrypt the Assertion inside EncryptedAssertion with AES-GCM and RSA-OAEP.
        ``enc_key`` names a PEM certificate file of the recipient (from its metadata)."""
        try:
            text = statement if isinstance(statement, (str, bytes)) else str(statement)
            return self._encrypt_in_process(text, enc_key)
        except xmlsec.Error as exc:
            log.warning("in-process encryption failed (%s); using xmlsec1", exc)
            return super().encrypt_assertion(
                statement, enc_key, template, key_type="aes256-cbc", node_xpath=node_xpath
            )

    def _encrypt_in_process(self, statement: str | bytes, cert_file: str) -> str:
        root = _parse(statement)
        holder = root.find(f"{{{SAML_NS}}}EncryptedAssertion")
        if holder is None or len(holder) != 1:
            raise xmlsec.Error("no EncryptedAssertion with one Assertion to encrypt")
        assertion = holder[0]
        # The plaintext must be a document of its own: serialize a copy (which declares every
        # in-scope namespace, keeping the prefixes) so the exclusive-c14n digest of the
        # assertion's signature is the same before encryption and after decryption.
        plaintext = etree.tostring(copy.deepcopy(assertion))
        transform, key_data, bits = _BLOCK[self.block_algorithm]
        enc_data = xmlsec.template.encrypted_data_create(
            root, transform, type=xmlsec.constants.TypeEncElement, ns="xenc"
        )
        xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
        key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="dsig")
        enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
        xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
        manager = xmlsec.KeysManager()
        with open(cert_file, "rb") as fh:
            manager.add_key(
                xmlsec.Key.from_memory(fh.read(), xmlsec.constants.KeyDataFormatCertPem)
            )
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.generate(key_data, bits, xmlsec.constants.KeyDataTypeSession)
        encrypted = ctx.encrypt_binary(enc_data, plaintext)
        holder.replace(assertion, encrypted)
        return etree.tostring(root, encoding="unicode")
