"""Interfaces the domain depends on; ``idp.storage`` and friends implement them."""

from __future__ import annotations

from typing import Any, Protocol


class ShortLivedStore(Protocol):
    """Codes, sessions, pending logins, rate counters, replay caches.

    Values are JSON-serialisable. ``ttl`` is in seconds (fractions allowed). Every operation is
    atomic across worker processes and nodes sharing the backend.
    """

    def put(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing what was there."""

    def put_many(self, items: list[tuple[str, Any, float]]) -> None:
        """``put`` of several (key, value, ttl) in one round trip and one transaction: all or
        none are stored."""

    def add(self, key: str, value: Any, ttl: float) -> bool:
        """Store only if ``key`` is absent (or expired); True if this call stored it.
        Replay caches use this: the first caller wins."""

    def get(self, key: str) -> Any | None:
        """The value, or None when absent or expired."""

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """``get`` of several keys in one round trip, in the order given."""

    def take(self, key: str) -> Any | None:
        """Get and delete in one step: of concurrent callers exactly one receives the value."""

    def delete(self, key: str) -> None: ...

    def incr(self, key: str, ttl: float) -> int:
        """Add one to a counter and return it; a new (or expired) counter starts at 1 and lives
        ``ttl`` seconds from that first increment (a fixed window)."""

    def ping(self) -> None:
        """Raise if the backend is unreachable."""
