"""Brute-force counters in the shared short-lived store, so every worker and node sees the same
counts: per account (failures in a window lock it for a while) and per client IP (failures slow
and finally refuse its requests). The limits are ``[lockout]`` (core.policy.LockoutPolicy)."""

from __future__ import annotations

import math
from typing import Any

from ..clock import Clock
from ..core.policy import LockoutPolicy


def lock_key(user: Any | None, login: str) -> str:
    """The counter key of an account: the user's id, else the login name typed in."""
    # Unknown names lock exactly like real ones, so a lockout says nothing about existence.
    return f"u{user.id}" if user is not None else "n:" + login.strip().lower()[:200]


class Lockout:
    """The counters on ``store`` under ``policy``; ``clock`` stamps a lock."""

    def __init__(self, store: Any, policy: LockoutPolicy, clock: Clock) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    def is_locked(self, key: str) -> bool:
        return self.store.get(f"lock:{key}") is not None

    def locked_for(self, key: str) -> int | None:
        """Whole seconds until the account's lock ends; None when it is not locked."""
        lock = self.store.get(f"lock:{key}")
        return None if lock is None else self.lock_retry_after(lock)

    def state(self, key: str) -> tuple[bool, bool]:
        """(locked, failures counted) for an account key, in one store round trip."""
        lock, fails = self.store.get_many([f"lock:{key}", f"fail:{key}"])
        return lock is not None, fails is not None

    def lock_retry_after(self, lock: Any) -> int:
        """Whole seconds until a lock (its stored value) ends under the current policy, at
        least 1: the ``Retry-After`` of a locked-out sign-in (RFC 9110 §10.2.3)."""
        at = lock.get("at") if isinstance(lock, dict) else None
        length = self.policy.lock_minutes * 60
        if not isinstance(at, int | float):
            return max(1, length)
        return max(1, min(length, math.ceil(at + length - self.clock.now())))

    def record_failure(self, key: str) -> bool:
        """Count a failed login for an account key; True when this failure locked it."""
        policy = self.policy
        if policy.max_failures <= 0:
            return False
        n = self.store.incr(f"fail:{key}", policy.window_minutes * 60)
        if n >= policy.max_failures:
            self.store.put(f"lock:{key}", {"at": int(self.clock.now())}, policy.lock_minutes * 60)
            self.store.delete(f"fail:{key}")
            return True
        return False

    def clear_failures(self, key: str) -> None:
        self.store.delete(f"fail:{key}")

    def record_code_failure(self, key: str) -> bool:
        """Count a wrong second-factor code for the account; True when this one locked it.
        Counted apart from wrong passwords, because a correct password clears those: otherwise
        knowing the password would buy unlimited code guesses, a few at a time. The lock is the
        password lock, so a locked account can neither sign in nor keep guessing."""
        policy = self.policy
        if policy.max_failures <= 0:
            return False
        if self.store.incr(f"fail:mfa:{key}", policy.window_minutes * 60) < policy.max_failures:
            return False
        self.store.put(f"lock:{key}", {"at": int(self.clock.now())}, policy.lock_minutes * 60)
        self.store.delete(f"fail:mfa:{key}")
        return True

    def clear_code_failures(self, key: str) -> None:
        self.store.delete(f"fail:mfa:{key}")

    def unlock(self, user_id: int) -> None:
        """Lift a temporary lockout (admin action; also done by a completed password reset)."""
        self.store.delete(f"lock:u{user_id}")
        self.store.delete(f"fail:u{user_id}")

    def ip_retry_after(self) -> int:
        """Seconds an address refused for its failures waits (``Retry-After``): its readable
        count lives ``window_minutes`` from its last failure, and a refusal counts none, so
        it is gone by then at the latest."""
        return max(1, self.policy.window_minutes * 60)

    def ip_failures(self, ip: str | None) -> int:
        if not ip:
            return 0
        return int(self.store.get(f"ipfails:{ip}") or 0)

    def ip_failures_and(self, ip: str | None, key: str | None) -> tuple[int, Any]:
        """``ip_failures`` and the value of one more store key (None: not asked), in one store
        round trip: both are read before every password check."""
        if not ip or key is None:
            return self.ip_failures(ip), None
        fails, value = self.store.get_many([f"ipfails:{ip}", key])
        return int(fails or 0), value

    def record_ip_failure(self, ip: str | None) -> None:
        if not ip:
            return
        window = self.policy.window_minutes * 60
        n = self.store.incr(f"ipfail:{ip}", window)
        # Counters are not readable through get() on every backend; keep a readable copy.
        self.store.put(f"ipfails:{ip}", n, window)
