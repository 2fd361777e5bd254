"""One-time tokens for mailed links (password reset, magic sign-in, e-mail verification,
administrator approval), kept in the short-lived store.

Only a keyed hash of a token is stored, so a read of the store does not give usable links; a
token expires on its own and is consumed once."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

TOKEN_PURPOSES = ("reset", "magic", "verify", "approve")
MAX_TOKEN_LENGTH = 100


class _Hasher(Protocol):
    def hash(self, value: str) -> str: ...


class OneTimeTokens:
    """Single-use tokens on ``store`` (the short-lived store), keyed by ``hasher`` (a keyed
    hash, idp.crypto.KeyedHasher); ``minutes`` is the default lifetime."""

    def __init__(self, store: Any, hasher: _Hasher, minutes: int) -> None:
        self.store = store
        self.hasher = hasher
        self.minutes = minutes

    def _key(self, purpose: str, token: str) -> str:
        return f"ott:{purpose}:{self.hasher.hash(token)}"

    def issue(self, purpose: str, data: dict[str, Any], minutes: int | None = None) -> str:
        """A new token carrying ``data``, valid ``minutes`` (else the default)."""
        token = secrets.token_urlsafe(32)
        self.store.put(self._key(purpose, token), data, 60 * (minutes or self.minutes))
        return token

    def peek(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The token's data, leaving it usable."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        return self.store.get(self._key(purpose, token))

    def take(self, purpose: str, token: str) -> dict[str, Any] | None:
        """Consume the token: of two concurrent uses exactly one succeeds."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        return self.store.take(self._key(purpose, token))
