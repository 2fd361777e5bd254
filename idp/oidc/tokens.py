"""JWTs we sign (ID tokens, RFC 9068 access tokens, logout tokens, signed userinfo) and verify
(our own id_token_hint and access tokens). Keys come parsed from the cached KeyRing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import warnings
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..core.client_metadata import SIGNING_ALGS
from ..keys import ALG_KTY, KeyManager

# RFC 9864 prefers "Ed25519" to "EdDSA"; clients still ask for EdDSA, so we keep serving it.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")

_HASH = {"RS256": hashlib.sha256, "PS256": hashlib.sha256, "ES256": hashlib.sha256,
         "EdDSA": hashlib.sha512}


# Claims of the other JWTs we sign that an ID token never carries: RFC 9068 access tokens
# (client_id, scope) and Back-Channel Logout tokens (events).
_NOT_IN_ID_TOKENS = ("client_id", "scope", "events")


class InvalidToken(Exception):
    pass


def new_jti() -> str:
    return secrets.token_urlsafe(18)


def half_hash(value: str, alg: str) -> str:
    """at_hash / c_hash (OIDC Core §3.1.3.6): left half of the hash, base64url."""
    digest = _HASH[alg](value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")


class Signer:
    def __init__(self, keys: KeyManager) -> None:
        self.keys = keys

    def sign(self, claims: dict[str, Any], alg: str = "RS256", typ: str = "JWT") -> str:
        if alg not in ALG_KTY:
            raise ValueError(f"unsupported signing algorithm {alg}")
        key = self.keys.ring().signing_key(alg)
        header = {"alg": alg, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key.jwk, algorithms=[alg])

    def _keyset(self) -> KeySet:
        ring = self.keys.ring()
        return KeySet([k.jwk for k in ring.keys])

    def verify(self, token: str, *, typ: str | None = None,
               algorithms: tuple[str, ...] = SIGNING_ALGS) -> dict[str, Any]:
        """Verify a JWT we signed (signature with a published or recent key, allowed alg).
        Time-based claims are the caller's business (an expired id_token_hint is fine)."""
        if not isinstance(token, str) or len(token) > 16384 or token.count(".") != 2:
            raise InvalidToken("not a compact JWT")
        try:
            decoded = jwt.decode(token, self._keyset(), algorithms=list(algorithms))
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc) or type(exc).__name__) from None
        if typ is not None and decoded.header.get("typ", "").lower() not in (
                typ.lower(), f"application/{typ.lower()}"):
            raise InvalidToken("unexpected token type")
        return dict(decoded.claims)

    def verify_id_token(self, token: str, issuer: str) -> dict[str, Any]:
        """Verify an ``id_token_hint`` (OIDC Core §3.1.2.1, RP-Initiated Logout §2): one of
        our ID tokens, never another JWT we signed. Access tokens (``typ: at+jwt``, with
        ``client_id`` and ``scope``), logout tokens (``typ: logout+jwt``, ``events``) and signed
        userinfo answers (no ``exp``/``iat``) are refused. Expiry is not checked: a hint may
        be an expired ID token."""
        claims = self.verify(token, typ="JWT")
        if claims.get("iss") != issuer:
            raise InvalidToken("issued by another issuer")
        if any(name in claims for name in _NOT_IN_ID_TOKENS):
            raise InvalidToken("not an ID token")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not auds or not all(isinstance(a, str) and a for a in auds):
            raise InvalidToken("no audience")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("no subject")
        for name in ("exp", "iat"):
            if not isinstance(claims.get(name), int) or isinstance(claims[name], bool):
                raise InvalidToken(f"no {name}")
        return claims
