"""HTTP-Redirect and HTTP-POST bindings (saml-bindings 3.4 and 3.5) for outbound messages,
and the query-string signature of inbound HTTP-Redirect messages (3.4.4.1).

The redirect signature is computed over the query parameters exactly as they arrived
(still URL-encoded), never over re-encoded values: encoders differ, and re-encoding would
make a valid signature fail or, worse, let an altered message pass.
"""

from __future__ import annotations

import base64
import zlib
from urllib.parse import quote_plus, unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIG_RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
SIG_RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SIG_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIG_RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
# SHA-1 signatures are refused: collisions are practical. A legacy SP may be let off per SP
# (``allow_sha1``), for RSA-SHA1 only.
_HASHES = {
    SIG_RSA_SHA256: hashes.SHA256,
    SIG_RSA_SHA384: hashes.SHA384,
    SIG_RSA_SHA512: hashes.SHA512,
    SIG_ECDSA_SHA256: hashes.SHA256,
}
_SHA1_HASHES = {**_HASHES, SIG_RSA_SHA1: hashes.SHA1}


class RedirectSignatureError(Exception):
    pass


def deflate_b64(xml: str | bytes) -> str:
    data = xml.encode() if isinstance(xml, str) else xml
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(data) + compressor.flush()).decode()


def redirect_url(
    location: str,
    field: str,
    xml: str | bytes,
    relay_state: str | None,
    signing_key: rsa.RSAPrivateKey | None,
) -> str:
    """The Location of an HTTP-Redirect message, signed with RSA-SHA256 when a key is given."""
    parts = [f"{field}={quote_plus(deflate_b64(xml))}"]
    if relay_state:
        parts.append(f"RelayState={quote_plus(relay_state)}")
    if signing_key is not None:
        parts.append(f"SigAlg={quote_plus(SIG_RSA_SHA256)}")
        signed = "&".join(parts).encode()
        sig = signing_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        parts.append(f"Signature={quote_plus(base64.b64encode(sig).decode())}")
    return location + ("&" if "?" in location else "?") + "&".join(parts)


def raw_params(query_string: bytes) -> dict[str, str]:
    """The query parameters as sent (still URL-encoded); the first value of each name wins."""
    out: dict[str, str] = {}
    for pair in query_string.decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        out.setdefault(unquote_plus(name), value)
    return out


def has_redirect_signature(query_string: bytes) -> bool:
    raw = raw_params(query_string)
    return "Signature" in raw or "SigAlg" in raw


def verify_redirect_signature(
    query_string: bytes, field: str, certs_b64: list[str], *, allow_sha1: bool = False
) -> None:
    """Raise RedirectSignatureError unless one of the certificates signed this query."""
    raw = raw_params(query_string)
    if "Signature" not in raw or "SigAlg" not in raw:
        raise RedirectSignatureError("the message is not signed")
    alg = unquote_plus(raw["SigAlg"])
    hash_cls = (_SHA1_HASHES if allow_sha1 else _HASHES).get(alg)
    if hash_cls is None:
        raise RedirectSignatureError(f"signature algorithm {alg} is not accepted")
    signed = "&".join(
        f"{name}={raw[name]}" for name in (field, "RelayState", "SigAlg") if name in raw
    ).encode("latin-1")
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
    except ValueError:
        raise RedirectSignatureError("the signature is not valid base64") from None
    for cert_b64 in certs_b64:
        try:
            key = x509.load_der_x509_certificate(base64.b64decode(cert_b64)).public_key()
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), hash_cls())
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, signed, ec.ECDSA(hash_cls()))
            else:
                continue
            return
        except (InvalidSignature, ValueError):
            continue
    raise RedirectSignatureError("the signature does not verify with the sender's metadata keys")
