"""The brute-force counters (idp.backends.lockout) of the running app."""

from __future__ import annotations

from ..backends.lockout import Lockout
from ..core.policy import LockoutPolicy
from .current import svc


def lockout() -> Lockout:
    """The counters on this app's store under its ``[lockout]`` settings."""
    s = svc()
    return Lockout(s.store, LockoutPolicy.from_settings(s.settings.lockout), s.clock)


def unlock(user_id: int) -> None:
    """Lift a temporary lockout (admin action; also done by a completed password reset)."""
    lockout().unlock(user_id)
