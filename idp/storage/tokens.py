"""One-time tokens for mailed links (password reset, magic sign-in, e-mail verification,
administrator approval), kept in the short-lived store.

Only a keyed hash of a token is stored, so a read of the store does not give usable links; a
token expires on its own and is consumed once."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

TOKEN_PURPOSES = ("reset", "magic", "verify", "approve")
MAX_TOKEN_LENGTH = 100
# The e-mail address a user asked to change to, waiting for the link in the mail to be opened.
EMAIL_PENDING_PREFIX = "emailchange:"
# Which tokens were issued for a user (data with a "uid"): an erasure revokes them all, so no
# mailed link and no address inside one outlives the account (the store is not enumerable).
_USER_INDEX = "ott-user:"
_INDEX_KEEP = 50


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
        """A new token carrying ``data``, valid ``minutes`` (else the default). A token for a
        user (data with an int "uid") joins that user's index; any other token joins an index
        of its own that nobody reads, so both make the same store calls (a reset for an unknown
        address must not be told apart from one for a known address by its work)."""
        token = secrets.token_urlsafe(32)
        key, ttl = self._key(purpose, token), 60 * (minutes or self.minutes)
        self.store.put(key, data, ttl)
        uid = data.get("uid")
        owner = str(uid) if isinstance(uid, int) else "-" + secrets.token_hex(8)
        index = _USER_INDEX + owner
        # The newest keys only: an index entry of an expired token is harmless (revoke_user
        # finds nothing under it), and mail rate limits keep far fewer links live at once.
        keys = [*(self.store.get(index) or [])[-(_INDEX_KEEP - 1) :], key]
        # A week covers every link's lifetime; a longer one extends it.
        self.store.put(index, keys, max(ttl, 7 * 86400) if isinstance(uid, int) else ttl)
        return token

    def revoke_user(self, user_id: int) -> int:
        """Drop every token issued for this user (their erasure); how many were still live."""
        index = _USER_INDEX + str(user_id)
        live = 0
        for key in self.store.take(index) or []:
            live += self.store.take(key) is not None
        return live

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
