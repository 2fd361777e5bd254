"""The pysaml2 classes the SAML engine subclasses: ``InProcessBackend`` (its ``CryptoBackend``
on the in-process ``xmlsec`` binding: XML-DSig, XML-Enc) and ``IdpServer``.

Both bases live in pysaml2 modules that import ``saml2.sigver``, which builds pysaml2's whole XML
schema when imported (about half a second of CPU and ~10 MB per worker). Only the engine's build
(``idp.saml.engine.SamlIdp``, on a worker's first SAML message or metadata request) imports this
module, so a worker that never speaks SAML never pays for it.

pysaml2's stock backend runs the ``xmlsec1`` program for every signature (30-45 ms each: a
fork, temp files, re-reading the key). This backend signs with a private key parsed once per
worker and verifies in process (pysaml2's messages: metadata, logout, error statuses); it
subclasses the ``xmlsec1`` backend, which pysaml2 keeps for anything else. Web SSO responses
(``idp.saml.response``, written in canonical form) get their signatures from
``signature_xml`` and their encrypted assertion from ``encrypt_xml``.

Signature checks stay strict: the element verified is the one whose ``ID`` pysaml2 asked for,
its ``ds:Signature`` must be its direct child, and pysaml2 has already checked (saml-core 5.4)
that the single Reference points at that element. Keys for verification come only from the
certificate file pysaml2 passes (taken from the peer's metadata).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from functools import lru_cache

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from saml2.server import Server
from saml2.sigver import CryptoBackendXmlSec1

from .crypto import (
    AES128_CBC,
    AES128_GCM,
    AES256_CBC,
    AES256_GCM,
    DSIG_NS,
    ENVELOPED,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
    parse_xml,
)

log = logging.getLogger("idp.saml.crypto")

# SignedInfo's content for one Reference, in canonical form (attributes sorted, no empty-element
# tags); the apex declares ds.
_SIGNED_INFO = (
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"></ds:CanonicalizationMethod>'
    f'<ds:SignatureMethod Algorithm="{RSA_SHA256}"></ds:SignatureMethod>'
    '<ds:Reference URI="#{ref_id}"><ds:Transforms>'
    f'<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform>'
    f'<ds:Transform Algorithm="{EXC_C14N}"></ds:Transform></ds:Transforms>'
    f'<ds:DigestMethod Algorithm="{SHA256}"></ds:DigestMethod>'
    "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>"
)
# IDs we sign are ours ("_" and hex); anything needing escaping in the URI is refused.
_NCNAME_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")

_BLOCK = {
    AES128_GCM: (xmlsec.constants.TransformAes128Gcm, xmlsec.constants.KeyDataAes, 128),
    AES256_GCM: (xmlsec.constants.TransformAes256Gcm, xmlsec.constants.KeyDataAes, 256),
    AES128_CBC: (xmlsec.constants.TransformAes128Cbc, xmlsec.constants.KeyDataAes, 128),
    AES256_CBC: (xmlsec.constants.TransformAes256Cbc, xmlsec.constants.KeyDataAes, 256),
}


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

    def signature_xml(self, canonical: str, ref_id: str) -> str:
        """The enveloped ds:Signature (in exclusive-c14n form) of the element whose ID is
        ``ref_id`` and whose exclusive canonical form without the signature is ``canonical``
        (the enveloped-signature transform removes the Signature before digesting, so that
        is exactly what a verifier digests): exclusive c14n, SHA-256 digest, RSA-SHA256, our
        certificate in KeyInfo (saml-core 5.4).

        Computed here rather than by libxmlsec1, which duplicates the private key into every
        signing context (OpenSSL then rebuilds its per-key state for each signature: ~0.2 ms
        of each 0.5 ms); the RSA key object is reused."""
        if not _NCNAME_ID.fullmatch(ref_id):
            raise xmlsec.Error("the element to sign has no usable ID")
        digest = base64.b64encode(hashlib.sha256(canonical.encode("utf-8")).digest()).decode()
        info = _SIGNED_INFO.format(ref_id=ref_id, digest=digest)
        # SignedInfo canonicalized as the apex of its own c14n: ds declared on it.
        signed = f'<ds:SignedInfo xmlns:ds="{DSIG_NS}">{info}</ds:SignedInfo>'.encode()
        value = base64.b64encode(self._rsa.sign(signed, padding.PKCS1v15(), hashes.SHA256()))
        return (
            f'<ds:Signature xmlns:ds="{DSIG_NS}"><ds:SignedInfo>{info}</ds:SignedInfo>'
            f"<ds:SignatureValue>{value.decode()}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>"
            f"<ds:X509Certificate>{self._cert_b64}</ds:X509Certificate></ds:X509Data>"
            "</ds:KeyInfo></ds:Signature>"
        )

    # --- encryption ------------------------------------------------------------------------------

    def encrypt_xml(self, plaintext: bytes, cert_pem: bytes, algorithm: str | None = None) -> str:
        """The XML-Enc EncryptedData (in exclusive-c14n form) of the element ``plaintext``
        (a document of its own, declaring every prefix it uses) for the holder of
        ``cert_pem``: ``algorithm`` (default ``block_algorithm``, AES-GCM) with an RSA-OAEP
        transported key. A libxmlsec1 without AES-GCM gets AES-256-CBC rather than no
        encryption."""
        algorithm = algorithm or self.block_algorithm
        try:
            return self._encrypt(plaintext, cert_pem, algorithm)
        except xmlsec.Error as exc:
            if algorithm in (AES128_CBC, AES256_CBC):
                raise
            log.warning("%s encryption failed (%s); using AES-256-CBC", algorithm, exc)
            return self._encrypt(plaintext, cert_pem, AES256_CBC)

    def _encrypt(self, plaintext: bytes, cert_pem: bytes, algorithm: str) -> str:
        transform, key_data, bits = _BLOCK[algorithm]
        holder = parse_xml(b"<EncryptedAssertion/>")  # the document the template lives in
        enc_data = xmlsec.template.encrypted_data_create(
            holder, transform, type=xmlsec.constants.TypeEncElement, ns="xenc"
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
        return etree.tostring(encrypted, method="c14n", exclusive=True).decode()


class IdpServer(Server):
    """pysaml2's Server without the in-memory assertion store (pysaml2 keeps every assertion
    forever for AssertionIDRequest, which we don't serve). Web SSO responses are built by
    ``idp.saml.response``; this server parses requests and builds logout and error messages."""

    def support_AssertionIDRequest(self) -> bool:  # noqa: N802 (pysaml2's name)
        return False

    def support_AuthnQuery(self) -> bool:  # noqa: N802
        return False
