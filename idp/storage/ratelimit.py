"""Rate-limit counters (``idp.core.ratelimit``'s rules) in the short-lived store: one atomic
``incr`` with a TTL per counter, so every worker process and node counts together (SQL store or
Redis).

An account is counted under a keyed hash of what the request named (a client_id, a typed
username or e-mail address): no personal data in store keys, and the same calls whether or not
the account exists, so neither the answer nor the work done tells.
"""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..core.ratelimit import ACCOUNT, ADDRESS, Rule, Verdict, address_subject, judge


class RateLimiter:
    """The counters of ``rules`` on ``store``; ``hasher`` names accounts in keys."""

    def __init__(self, store: Any, clock: Clock, rules: dict[str, Rule], hasher: Any) -> None:
        self.store, self.clock, self.rules, self.hasher = store, clock, rules, hasher

    def _keys(self, rule: Rule, address: str | None, account: str | None, now: float):
        """The counters of this request, per scope, for the limits that are on."""
        subjects = {
            ADDRESS: address_subject(address),
            ACCOUNT: self.hasher.hash(f"rl:{rule.name}:{account.strip().lower()}")
            if account is not None
            else None,
        }
        return {
            scope: rule.key(scope, subject, now)
            for scope, subject in subjects.items()
            if subject is not None and rule.limit(scope) > 0
        }

    def check(self, name: str, address: str | None, account: str | None = None) -> Verdict | None:
        """Before an attempt whose failures count: refused once the failures reached a limit."""
        rule, now = self.rules[name], self.clock.now()
        keys = self._keys(rule, address, account, now)
        if not keys:
            return None
        values = self.store.get_many(list(keys.values()))
        counts = {scope: int(v or 0) for scope, v in zip(keys, values, strict=True)}
        return judge(rule, counts, now, after_count=False)

    def fail(self, name: str, address: str | None, account: str | None = None) -> None:
        """Count a failed attempt."""
        rule, now = self.rules[name], self.clock.now()
        ttl = rule.window_end(now) - now
        for key in self._keys(rule, address, account, now).values():
            self.store.incr(key, ttl)

    def hit(self, name: str, address: str | None, account: str | None = None) -> Verdict | None:
        """Count a request that sends a message; refused when it is over a limit."""
        rule, now = self.rules[name], self.clock.now()
        ttl = rule.window_end(now) - now
        keys = self._keys(rule, address, account, now)
        counts = {scope: self.store.incr(key, ttl) for scope, key in keys.items()}
        return judge(rule, counts, now, after_count=True)

    def forget(self, name: str, account: str) -> None:
        """Drop an account's counter of the current window (a person's erasure)."""
        rule, now = self.rules[name], self.clock.now()
        for key in self._keys(rule, None, account, now).values():
            self.store.delete(key)
