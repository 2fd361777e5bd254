"""The only caller of "now". Tests inject a FrozenClock to move time by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)


class FrozenClock(Clock):
    def __init__(self, at: float | None = None) -> None:
        self._t = time.time() if at is None else at

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds
