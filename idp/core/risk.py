"""Suspicious-activity thresholds and the adaptive-authentication risk score, as data
(docs/risk.md). Standard library only: the sign-in hub (idp.sso.risk) gathers the facts from the
store, the sign-in history and GeoIP; these functions judge them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What the score does at or above each threshold (the strongest that applies wins).
ALLOW = "allow"
NOTIFY = "notify"
STEP_UP = "step_up"
DENY = "deny"

# The score's factors, in the order the reasons list them.
FACTORS = (
    "new_device",
    "new_country",
    "impossible_travel",
    "velocity",
    "account_failures",
    "address_failures",
)


@dataclass(frozen=True)
class RiskPolicy:
    """``[risk]``: the suspicious-activity rules and the adaptive-authentication policy."""

    stuffing_accounts: int = 10
    stuffing_window_minutes: int = 5
    stuffing_block_minutes: int = 15
    max_speed_kmh: int = 1000
    impossible_travel_lock: bool = False
    new_country: bool = True
    new_country_lock: bool = False
    refresh_replay: bool = True
    mfa_burst_failures: int = 5
    mfa_burst_window_minutes: int = 10
    mfa_burst_lock: bool = False
    history_days: int = 180
    adaptive: bool = False
    notify_at: int = 40
    step_up_at: int = 50
    deny_at: int = 90
    step_up_without_factor: str = "deny"
    points_new_device: int = 20
    points_new_country: int = 30
    points_impossible_travel: int = 60
    points_velocity: int = 15
    velocity_per_hour: int = 10
    points_account_failures: int = 15
    account_failures: int = 3
    points_address_failures: int = 15
    address_failures: int = 10
    failure_window_minutes: int = 60

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> RiskPolicy:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})

    @property
    def keeps_history(self) -> bool:
        """Whether successful sign-ins are recorded (travel, countries, devices, velocity)."""
        return self.adaptive or self.max_speed_kmh > 0 or self.new_country


def stuffing_detected(policy: RiskPolicy, distinct_accounts: int) -> bool:
    """Credential stuffing: ``distinct_accounts`` different names failed from one address
    within the window. True exactly when the count reaches the threshold (0 = rule off)."""
    return policy.stuffing_accounts > 0 and distinct_accounts >= policy.stuffing_accounts


def mfa_burst_detected(policy: RiskPolicy, failures: int) -> bool:
    """A burst of wrong second-factor codes for one user within the window (0 = rule off)."""
    return policy.mfa_burst_failures > 0 and failures >= policy.mfa_burst_failures


def speed_kmh(km: float, seconds: float) -> float:
    """The speed two sign-ins ``km`` apart and ``seconds`` apart need. Simultaneous sign-ins
    from two places need an infinite speed; from the same place none."""
    if km <= 0:
        return 0.0
    if seconds <= 0:
        return float("inf")
    return km / (seconds / 3600)


def impossible_travel(policy: RiskPolicy, km: float | None, seconds: float) -> bool:
    """Above ``max_speed_kmh`` (0 = rule off; no distance = unknown places: never)."""
    if policy.max_speed_kmh <= 0 or km is None:
        return False
    return speed_kmh(km, seconds) > policy.max_speed_kmh


@dataclass(frozen=True)
class SignInFacts:
    """What is known about a sign-in whose first factor passed, against the user's history.
    ``has_history`` False (the user's first recorded sign-in): nothing to compare with, so no
    device or country counts as new."""

    has_history: bool
    known_device: bool
    country: str | None
    new_country: bool
    travel_km: float | None
    travel_seconds: float
    recent_sign_ins: int  # successful sign-ins of the user in the last hour
    account_failures: int  # failed passwords for the account within failure_window_minutes
    address_failures: int  # failed passwords from this address within the same window


@dataclass(frozen=True)
class RiskScore:
    score: int
    reasons: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # (factor, points)

    def as_details(self) -> dict[str, Any]:
        """The audit row's ``risk`` value: ``{"score", "reasons": [{"factor", "points"}]}``."""
        return {
            "score": self.score,
            "reasons": [{"factor": f, "points": p} for f, p in self.reasons],
        }


def score(policy: RiskPolicy, facts: SignInFacts) -> RiskScore:
    """Add the points of every factor that applies (docs/risk.md, "The score")."""
    hits = {
        "new_device": facts.has_history and not facts.known_device,
        "new_country": facts.has_history and facts.new_country,
        "impossible_travel": impossible_travel(policy, facts.travel_km, facts.travel_seconds),
        "velocity": policy.velocity_per_hour > 0
        and facts.recent_sign_ins >= policy.velocity_per_hour,
        "account_failures": policy.account_failures > 0
        and facts.account_failures >= policy.account_failures,
        "address_failures": policy.address_failures > 0
        and facts.address_failures >= policy.address_failures,
    }
    reasons = tuple(
        (name, getattr(policy, f"points_{name}"))
        for name in FACTORS
        if hits[name] and getattr(policy, f"points_{name}") > 0
    )
    return RiskScore(sum(p for _, p in reasons), reasons)


def decide(policy: RiskPolicy, risk: RiskScore) -> str:
    """ALLOW, NOTIFY, STEP_UP or DENY for a score (a threshold of 0 is off)."""
    if not policy.adaptive:
        return ALLOW
    for verdict, at in ((DENY, policy.deny_at), (STEP_UP, policy.step_up_at)):
        if at > 0 and risk.score >= at:
            return verdict
    if policy.notify_at > 0 and risk.score >= policy.notify_at:
        return NOTIFY
    return ALLOW


def notifies(policy: RiskPolicy, risk: RiskScore) -> bool:
    """Whether the score alone raises ``security.risky_sign_in``."""
    return policy.adaptive and policy.notify_at > 0 and risk.score >= policy.notify_at
