"""Client certificates for certificate-bound access tokens (RFC 8705 §3).

TLS ends at a reverse proxy, which passes the client's certificate in a header
(``[mtls] client_cert_header``): PEM, URL-encoded as nginx's ``$ssl_client_escaped_cert``. The
web layer (``idp.web.proxies``) keeps that header only from ``[server] trusted_proxy_networks``
and hands it here as ``HttpRequest.client_cert``; nothing else reads it.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
