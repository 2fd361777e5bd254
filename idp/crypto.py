"""Small cryptographic helpers shared by several parts: keyed hashes and sealed values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(master: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from a master secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"idp-v1", info=purpose.encode()).derive(
        master.encode()
    )


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token with ``8 * nbytes`` bits of entropy."""
    return secrets.token_urlsafe(nbytes)


class KeyedHasher:
    """HMAC-SHA256 for high-entropy secrets (client secrets, one-time tokens): a password hash
    would only add CPU cost, since such secrets cannot be guessed."""

    PREFIX = "hs256$"

    def __init__(self, key: bytes) -> None:
        self._key = key

    def hash(self, secret: str) -> str:
        mac = hmac.new(self._key, secret.encode(), hashlib.sha256).digest()
        return self.PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def verify(self, secret: str, stored: str | None) -> bool:
        if not stored:
            return False
        return hmac.compare_digest(self.hash(secret), stored)


class Sealer:
    """AES-256-GCM for values that must be read back (TOTP seeds, client_secret_jwt secrets)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, data: bytes, context: str = "") -> str:
        nonce = os.urandom(12)
        return (
            "v1:"
            + base64.b64encode(nonce + self._aead.encrypt(nonce, data, context.encode())).decode()
        )

    def open(self, blob: str, context: str = "") -> bytes:
        if not blob.startswith("v1:"):
            raise ValueError("unknown sealed format")
        raw = base64.b64decode(blob[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except InvalidTag:
            raise ValueError("sealed value cannot be opened with this key") from None
