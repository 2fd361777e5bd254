"""Client certificates for certificate-bound access tokens (RFC 8705 §3) and mTLS client
authentication (RFC 8705 §2: ``tls_client_auth`` by the registered subject DN or SAN,
``self_signed_tls_client_auth`` by one of the client's registered keys).

TLS ends at a reverse proxy, which passes the client's certificate in a header
(``[mtls] client_cert_header``): PEM, URL-encoded as nginx's ``$ssl_client_escaped_cert``. The
web layer (``idp.web.proxies``) keeps that header only from ``[server] trusted_proxy_networks``
and hands it here as ``HttpRequest.client_cert``; nothing else reads it.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .dpop import b64_sha256

log = logging.getLogger("idp.oidc.mtls")

_MAX_PEM = 16384


def certificate(value: str | None) -> x509.Certificate | None:
    """The certificate a trusted proxy passed (URL-encoded or plain PEM), or None (none sent,
    or not a certificate: then the request has no certificate)."""
    if not value or len(value) > 3 * _MAX_PEM:
        return None
    pem = unquote(value) if "%" in value else value
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        log.info("the client certificate header does not hold a PEM certificate")
        return None


def thumbprint(cert: x509.Certificate) -> str:
    """``x5t#S256`` (RFC 8705 §3.1): base64url SHA-256 of the certificate's DER encoding."""
    return b64_sha256(cert.public_bytes(Encoding.DER))


def thumbprint_of(value: str | None) -> str | None:
    cert = certificate(value)
    return thumbprint(cert) if cert is not None else None


# --- client authentication (RFC 8705 §2) ----------------------------------------------------------

# §2.1.2: the one member a tls_client_auth client registers, and the SAN type it names.
SUBJECT_DN = "tls_client_auth_subject_dn"
SAN_FIELDS = {
    "tls_client_auth_san_dns": x509.DNSName,
    "tls_client_auth_san_uri": x509.UniformResourceIdentifier,
    "tls_client_auth_san_ip": x509.IPAddress,
    "tls_client_auth_san_email": x509.RFC822Name,
}


def subject_matches(cert: x509.Certificate, meta: dict) -> bool:
    """RFC 8705 §2.1.2: the certificate (whose chain the proxy verified) carries the subject
    DN, or the SAN entry, the client registered."""
    if meta.get(SUBJECT_DN) is not None:
        try:
            return cert.subject == x509.Name.from_rfc4514_string(meta[SUBJECT_DN])
        except ValueError:
            return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    for field, kind in SAN_FIELDS.items():
        value = meta.get(field)
        if value is None:
            continue
        if kind is x509.IPAddress:
            try:
                return ipaddress.ip_address(value) in san.get_values_for_type(kind)
            except ValueError:
                return False
        return value in san.get_values_for_type(kind)
    return False


def key_matches(cert: x509.Certificate, keys: list) -> bool:
    """RFC 8705 §2.2: a self-signed certificate authenticates when its public key is one of
    the client's registered keys (``keys``: joserfc keys of its JWK Set)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for key in keys:
        public = getattr(key, "public_key", None)
        if public is not None and hasattr(public, "public_bytes") and public.public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == spki:
            return True
    return False
