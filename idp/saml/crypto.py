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

    def sign_node(self, node: etree._Element) -> None:
        """Enveloped signature of ``node`` (an element with an ``ID`` and an Issuer) in its own
        tree: RSA-SHA256, SHA-256 digest, exclusive c14n, placed right after the Issuer as the
        SAML schemas require, with our certificate in KeyInfo."""
        c = xmlsec.constants
        signature = xmlsec.template.create(node, c.TransformExclC14N, c.TransformRsaSha256, ns="ds")
        issuer = node.find(f"{{{SAML_NS}}}Issuer")
        if issuer is None:
            raise xmlsec.Error("the element to sign has no Issuer")
        issuer.addnext(signature)
        ref = xmlsec.template.add_reference(signature, c.TransformSha256, uri="#" + node.get("ID"))
        xmlsec.template.add_transform(ref, c.TransformEnveloped)
        xmlsec.template.add_transform(ref, c.TransformExclC14N)
        x509 = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        xmlsec.template.x509_data_add_certificate(x509)
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        ctx.register_id(node, "ID")
        ctx.sign(signature)

    # --- encryption ------------------------------------------------------------------------------

    def encrypt_node(self, node: etree._Element, cert_pem: bytes) -> None:
        """Replace ``node`` in its tree by its XML-Enc EncryptedData for the holder of
        ``cert_pem``: ``block_algorithm`` (AES-GCM by default) with an RSA-OAEP transported key.
        A libxmlsec1 without AES-GCM gets AES-256-CBC rather than no encryption."""
        try:
            self._encrypt(node, cert_pem, self.block_algorithm)
        except xmlsec.Error as exc:
            if self.block_algorithm == AES256_CBC:
                raise
            log.warning("%s encryption failed (%s); using AES-256-CBC", self.block_algorithm, exc)
            self._encrypt(node, cert_pem, AES256_CBC)

    def _encrypt(self, node: etree._Element, cert_pem: bytes, algorithm: str) -> None:
        # The plaintext must be a document of its own: serialize a copy (which declares every
        # in-scope namespace, keeping the prefixes) so the exclusive-c14n digest of the
        # assertion's signature is the same before encryption and after decryption.
        plaintext = etree.tostring(copy.deepcopy(node))
        transform, key_data, bits = _BLOCK[algorithm]
        enc_data = xmlsec.template.encrypted_data_create(
            node.getroottree().getroot(), transform, type=xmlsec.constants.TypeEncElement, ns="xenc"
        )
        xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
        key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="dsig")
        enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
        xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
        manager = xmlsec.KeysManager()
        manager.add_key(_cert_key(cert_pem))
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.generate(key_data, bits, xmlsec.constants.KeyDataTypeSession)
        encrypted = ctx.encrypt_binary(enc_data, plaintext)
        node.getparent().replace(node, encrypted)
