"""pysaml2 ``CryptoBackend`` on the in-process ``xmlsec`` binding (XML-DSig, XML-Enc).

pysaml2's stock backend runs the ``xmlsec1`` program for every signature (30-45 ms each: a
fork, temp files, re-reading the key). This backend signs with a private key parsed once per
worker and verifies in process (pysaml2's messages: metadata, logout, error statuses); it
subclasses the ``xmlsec1`` backend, which pysaml2 keeps for anything else. Web SSO responses
(``idp.saml.response``) are signed with ``sign_node`` and encrypted with ``encrypt_node`` in
the response's own tree.

Signature checks stay strict: the element verified is the one whose ``ID`` pysaml2 asked for,
its ``ds:Signature`` must be its direct child, and pysaml2 has already checked (saml-core 5.4)
that the single Reference points at that element. Keys for verification come only from the
certificate file pysaml2 passes (taken from the peer's metadata).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import threading
from functools import lru_cache

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

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


def parse_xml(text: str | bytes) -> etree._Element:
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
        self._rsa = serialization.load_pem_private_key(signing_pem, password=None)
        if not isinstance(self._rsa, rsa.RSAPrivateKey):
            raise ValueError("the SAML signing key must be an RSA key")
        cert = x509.load_pem_x509_certificate(cert_pem)
        self._cert_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._signature_template = self._make_signature_template()
        self.block_algorithm = AES128_GCM

    @property
    def version(self) -> str:
        return ".".join(str(n) for n in xmlsec.get_libxmlsec_version())

    # --- signatures ------------------------------------------------------------------------------

    def sign_statement(self, statement, node_name, key_file, node_id):
        root = parse_xml(statement if isinstance(statement, (str, bytes)) else str(statement))
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
            root = parse_xml(signedtext)
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
        """Enveloped XML-DSig signature of ``node`` (an element with an ``ID`` and an Issuer)
        in its own tree, placed right after the Issuer as the SAML schemas require: exclusive
        c14n, SHA-256 digest, RSA-SHA256, our certificate in KeyInfo (saml-core 5.4).

        Computed here rather than by libxmlsec1, which duplicates the private key into every
        signing context (OpenSSL then rebuilds its per-key state for each signature: ~0.2 ms
        of each 0.5 ms). The canonical forms come from libxml2's exclusive c14n (as in
        libxmlsec1) and the RSA key object is reused. Verification stays with libxmlsec1.
        """
        node_id = node.get("ID")
        issuer = node.find(f"{{{SAML_NS}}}Issuer")
        if not node_id or issuer is None:
            raise xmlsec.Error("the element to sign has no ID or no Issuer")
        # The enveloped-signature transform removes the Signature before digesting: the
        # element as it is now, without one, is exactly what a verifier digests.
        digest = hashlib.sha256(etree.tostring(node, method="c14n", exclusive=True)).digest()
        signature = copy.deepcopy(self._signature_template)
        info, value = signature[0], signature[1]
        ref = info[2]
        ref.set("URI", "#" + node_id)
        ref[2].text = base64.b64encode(digest).decode()
        issuer.addnext(signature)
        # SignedInfo is canonicalized where it sits (exclusive c14n: only ds is rendered).
        signed = etree.tostring(info, method="c14n", exclusive=True)
        raw = self._rsa.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        value.text = base64.b64encode(raw).decode()

    def _make_signature_template(self) -> etree._Element:
        """The ds:Signature every ``sign_node`` copies: SignedInfo (exclusive c14n,
        RSA-SHA256, one Reference with the enveloped-signature and exclusive c14n transforms,
        SHA-256), an empty SignatureValue, our certificate in KeyInfo."""
        ds = f"{{{DSIG_NS}}}"
        signature = etree.Element(ds + "Signature", nsmap={"ds": DSIG_NS})
        info = etree.SubElement(signature, ds + "SignedInfo")
        etree.SubElement(info, ds + "CanonicalizationMethod", Algorithm=EXC_C14N)
        etree.SubElement(info, ds + "SignatureMethod", Algorithm=RSA_SHA256)
        ref = etree.SubElement(info, ds + "Reference", URI="")
        transforms = etree.SubElement(ref, ds + "Transforms")
        etree.SubElement(transforms, ds + "Transform", Algorithm=ENVELOPED)
        etree.SubElement(transforms, ds + "Transform", Algorithm=EXC_C14N)
        etree.SubElement(ref, ds + "DigestMethod", Algorithm=SHA256)
        etree.SubElement(ref, ds + "DigestValue")
        etree.SubElement(signature, ds + "SignatureValue")
        key_info = etree.SubElement(signature, ds + "KeyInfo")
        x509 = etree.SubElement(key_info, ds + "X509Data")
        etree.SubElement(x509, ds + "X509Certificate").text = self._cert_b64
        return signature

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
