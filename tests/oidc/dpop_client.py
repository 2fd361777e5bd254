"""A DPoP client as an application would write one (RFC 9449 §4): proofs built with pyjwt and
the ``cryptography`` keys, thumbprints computed by RFC 7638's recipe, independently of the
IdP's code."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"),
                           sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


class DPoPKey:
    """A client's proof-of-possession key pair (EC P-256 or RSA)."""

    def __init__(self, kind: str = "EC", bits: int = 2048) -> None:
        if kind == "EC":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            self.alg = "ES256"
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            self.jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            self.alg = "PS256"
        self.jkt = thumbprint(self.jwk)

    def private_jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        return algorithm.to_jwk(self.private, as_dict=True)

    def proof(self, htm: str, htu: str, *, access_token: str | None = None,
              nonce: str | None = None, iat: float | None = None,
              header: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
              **claims: Any) -> str:
        """A DPoP proof JWT for ``htm`` ``htu``; ``claims`` add or override, ``drop`` removes,
        ``header`` overrides header members."""
        import time

        body: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": htm, "htu": htu,
                                "iat": int(time.time() if iat is None else iat)}
        if access_token is not None:
            body["ath"] = b64(hashlib.sha256(access_token.encode()).digest())
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims)
        for name in drop:
            body.pop(name, None)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        headers.update(header or {})
        return jwt.encode(body, self.private, algorithm=self.alg, headers=headers)


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """An ``alg: none`` JWS (RFC 7515 with an empty signature)."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), ""])


def hmac_proof(claims: dict[str, Any], jwk: dict[str, Any]) -> str:
    return jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS256",
                      headers={"typ": "dpop+jwt", "jwk": jwk})


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT access token as a resource server reads it (after verifying it;
    here only read)."""
    return jwt.decode(token, options={"verify_signature": False})
