"""A TLS client certificate as a TLS-terminating proxy passes it on (RFC 8705): made with
``cryptography``, URL-encoded as nginx's ``$ssl_client_escaped_cert``, and its ``x5t#S256``
computed independently of the IdP's code."""

from __future__ import annotations

import base64
import datetime
import hashlib
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID


def make_cert(name: str, san_dns: str | None = None) -> x509.Certificate:
    """A self-signed certificate with subject ``CN=<name>`` (and a SAN DNS name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30)))
    if san_dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san_dns)]), critical=False)
    return builder.sign(key, hashes.SHA256())


def escaped(cert: x509.Certificate) -> str:
    """As nginx's $ssl_client_escaped_cert: the PEM, URL-encoded."""
    return quote(cert.public_bytes(Encoding.PEM).decode(), safe="")


def x5t(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
