"""Suspicious-activity detection and the adaptive-authentication risk score (docs/risk.md).

The web layer tells this module what happened (a failed password, a wrong second-factor code,
a first factor passed, a sign-in completed) with plain facts: the address, the device name, the
user's id. Counters live in the shared short-lived store (every worker and node sees the same
counts); the sign-in history in the ``risk_*`` tables. What a finding means is judged by
``idp.core.risk``; each finding comes back as a :class:`SecurityEvent` for the caller to write
as a ``security.<rule>`` audit row (with its actor, target and request stamp).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..backends.geoip import GeoIp, Location
from ..clock import Clock
from ..core.risk import (
    ALLOW,
    RiskPolicy,
    RiskScore,
    SignInFacts,
    decide,
    impossible_travel,
    mfa_burst_detected,
    score,
    speed_kmh,
    stuffing_detected,
)
from ..storage.models_risk import RiskSignIn, RiskUserCountry

# Sign-ins read per assessment: enough for devices and velocity, bounded for a busy account.
HISTORY_READ = 200


@dataclass(frozen=True)
class SecurityEvent:
    """A finding: the audit row ``security.<rule>`` with ``details`` as its evidence."""

    rule: str
    details: dict[str, Any] = field(default_factory=dict)
    lock: bool = False  # the rule's setting asks to lock the account

    @property
    def action(self) -> str:
        return f"security.{self.rule}"


@dataclass(frozen=True)
class Assessment:
    """A sign-in whose first factor passed: the score, what it asks for, the findings."""

    risk: RiskScore | None  # None: adaptive authentication is off
    verdict: str  # idp.core.risk ALLOW | NOTIFY | STEP_UP | DENY
    events: list[SecurityEvent]

    @property
    def locks(self) -> bool:
        return any(e.lock for e in self.events)


def network_of(ip: str | None) -> str | None:
    """The network an address belongs to for "same device": its /24 (IPv4) or /64 (IPv6), so a
    home router's changing address or a phone's privacy address still counts as the same place."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def device_known(history: list[RiskSignIn], device: str | None, ip: str | None) -> bool:
    """Is this device known to this user without its device cookie (cleared, or another
    browser profile)? Yes when one of the user's earlier successful sign-ins (``history``,
    newest first) came from the same device name from the same network."""
    network = network_of(ip)
    return any(row.device == device and row.network == network for row in history)


def _name_hash(login: str) -> str:
    # The counters name accounts by a hash: the store holds no list of tried usernames.
    return hashlib.sha256(login.strip().lower().encode()).hexdigest()[:24]


class RiskEngine:
    """The rules and the score over ``store`` (shared counters), ``clock`` and ``geoip``."""

    def __init__(self, store: Any, clock: Clock, policy: RiskPolicy, geoip: GeoIp) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.geoip = geoip

    # --- failed passwords: credential stuffing, recent failures ------------------------------

    def block_key(self, ip: str | None) -> str | None:
        """The store key that, while it lives, refuses an address found stuffing credentials
        (None: the rule is off). The caller reads it with the address's other counters."""
        if not ip or self.policy.stuffing_accounts <= 0:
            return None
        return f"risk:block:{ip}"

    def block_retry_after(self, block: Any) -> int:
        """Whole seconds until a stuffing block (its stored value) ends, at least 1."""
        length = self.policy.stuffing_block_minutes * 60
        at = block.get("at") if isinstance(block, dict) else None
        if not isinstance(at, int | float):
            return max(1, length)
        return max(1, min(length, math.ceil(at + length - self.clock.now())))

    def password_failed(
        self, ip: str | None, login: str, user_id: int | None
    ) -> list[SecurityEvent]:
        """Count a failed password; the credential-stuffing finding when this failure made the
        address reach the threshold of distinct accounts (the address is then blocked)."""
        policy = self.policy
        window = policy.failure_window_minutes * 60
        if policy.adaptive and window > 0:
            self._count_readable(f"risk:fail:ip:{ip}" if ip else None, window)
            self._count_readable(f"risk:fail:u{user_id}" if user_id else None, window)
        if not ip or policy.stuffing_accounts <= 0:
            return []
        stuffing_window = policy.stuffing_window_minutes * 60
        if not self.store.add(f"risk:name:{ip}:{_name_hash(login)}", 1, stuffing_window):
            return []  # this name already failed from here in the window
        distinct = self.store.incr(f"risk:names:{ip}", stuffing_window)
        if distinct != policy.stuffing_accounts or not stuffing_detected(policy, distinct):
            return []
        self.store.put(
            f"risk:block:{ip}", {"at": int(self.clock.now())}, policy.stuffing_block_minutes * 60
        )
        return [
            SecurityEvent(
                "credential_stuffing",
                {
                    "address": ip,
                    "distinct_accounts": distinct,
                    "window_minutes": policy.stuffing_window_minutes,
                    "blocked_minutes": policy.stuffing_block_minutes,
                },
            )
        ]

    def _count_readable(self, key: str | None, window: int) -> None:
        if key is None:
            return
        n = self.store.incr(key, window)
        # Counters are not readable through get() on every store: keep a readable copy.
        self.store.put(key + ":n", n, window)

    def _failures(self, ip: str | None, user_id: int) -> tuple[int, int]:
        account, address = self.store.get_many(
            [f"risk:fail:u{user_id}:n", f"risk:fail:ip:{ip}:n" if ip else "risk:fail:none"]
        )
        return int(account or 0), int(address or 0)

    # --- wrong second-factor codes -----------------------------------------------------------

    def mfa_failed(self, user_id: int) -> list[SecurityEvent]:
        """Count a wrong second-factor code; the burst finding exactly when the count reaches
        the threshold within the window."""
        policy = self.policy
        if policy.mfa_burst_failures <= 0:
            return []
        window = policy.mfa_burst_window_minutes * 60
        n = self.store.incr(f"risk:mfa:u{user_id}", window)
        if n != policy.mfa_burst_failures or not mfa_burst_detected(policy, n):
            return []
        return [
            SecurityEvent(
                "mfa_failure_burst",
                {"failures": n, "window_minutes": policy.mfa_burst_window_minutes},
                lock=policy.mfa_burst_lock,
            )
        ]

    # --- a sign-in whose first factor passed -------------------------------------------------

    def _watches_places(self) -> bool:
        return self.geoip.enabled and (self.policy.max_speed_kmh > 0 or self.policy.new_country)

    def active(self) -> bool:
        """Whether sign-ins are assessed and recorded at all (nothing to do otherwise: no
        query on the sign-in path)."""
        return self.policy.adaptive or self._watches_places()

    def _history(self, db: Session, user_id: int, now: datetime) -> list[RiskSignIn]:
        since = now - timedelta(days=self.policy.history_days)
        return list(
            db.scalars(
                select(RiskSignIn)
                .where(RiskSignIn.user_id == user_id, RiskSignIn.at >= since)
                .order_by(RiskSignIn.at.desc(), RiskSignIn.id.desc())
                .limit(HISTORY_READ)
            )
        )

    def assess(
        self,
        db: Session,
        user_id: int,
        ip: str | None,
        device: str | None,
        *,
        cookie_known: bool = False,
    ) -> Assessment:
        """Judge a sign-in against the user's history: the travel and new-country findings,
        and (adaptive authentication on) the score and what it asks for. ``cookie_known``: the
        browser carries the user's device cookie (idp.sso.devices) and is the same kind of
        device, which makes it a known device wherever it signs in from."""
        policy = self.policy
        now = self.clock.utcnow()
        history = self._history(db, user_id, now)
        here = self.geoip.locate(ip)
        country = here.country if here else None
        known_countries = set(
            db.scalars(select(RiskUserCountry.country).where(RiskUserCountry.user_id == user_id))
        )
        events: list[SecurityEvent] = []
        new_country = bool(country) and bool(known_countries) and country not in known_countries
        if new_country and policy.new_country and self.geoip.enabled:
            events.append(
                SecurityEvent(
                    "new_country",
                    {
                        "country": country,
                        "place": here.label() if here else None,
                        "known_countries": sorted(known_countries),
                    },
                    lock=policy.new_country_lock,
                )
            )
        km, seconds, before = self._travel(history, here, now)
        if impossible_travel(policy, km, seconds) and before is not None and km is not None:
            events.append(
                SecurityEvent(
                    "impossible_travel",
                    {
                        "from": {"country": before.country, "at": before.at.isoformat()},
                        "to": {"country": country, "place": here.label() if here else None},
                        "km": round(km),
                        "minutes": round(seconds / 60, 1),
                        "speed_kmh": _rounded_speed(km, seconds),
                        "max_speed_kmh": policy.max_speed_kmh,
                    },
                    lock=policy.impossible_travel_lock,
                )
            )
        if not policy.adaptive:
            return Assessment(None, ALLOW, events)
        account_failures, address_failures = self._failures(ip, user_id)
        hour_ago = now - timedelta(hours=1)
        facts = SignInFacts(
            has_history=bool(history) or bool(known_countries),
            known_device=cookie_known or device_known(history, device, ip),
            country=country,
            new_country=new_country,
            travel_km=km,
            travel_seconds=seconds,
            recent_sign_ins=sum(1 for row in history if row.at >= hour_ago),
            account_failures=account_failures,
            address_failures=address_failures,
        )
        risk = score(policy, facts)
        return Assessment(risk, decide(policy, risk), events)

    def _travel(
        self, history: list[RiskSignIn], here: Location | None, now: datetime
    ) -> tuple[float | None, float, RiskSignIn | None]:
        """(km, seconds, that sign-in) from the latest earlier sign-in with a known place."""
        if here is None or here.latitude is None:
            return None, 0.0, None
        before = next((row for row in history if row.latitude is not None), None)
        if before is None:
            return None, 0.0, None
        km = Location(before.country, None, None, before.latitude, before.longitude).km_to(here)
        return km, max(0.0, (now - before.at).total_seconds()), before

    # --- a completed sign-in ------------------------------------------------------------------

    def record_sign_in(self, db: Session, user_id: int, ip: str | None, device: str | None) -> None:
        """Keep a completed sign-in in the user's history (and its country for good); drop
        sign-ins older than ``history_days``. In the caller's unit of work."""
        now = self.clock.utcnow()
        here = self.geoip.locate(ip)
        db.add(
            RiskSignIn(
                user_id=user_id,
                at=now,
                network=network_of(ip),
                device=(device or "")[:200] or None,
                country=here.country if here else None,
                latitude=here.latitude if here else None,
                longitude=here.longitude if here else None,
            )
        )
        if here is not None and here.country:
            seen = db.get(RiskUserCountry, (user_id, here.country))
            if seen is None:
                db.add(
                    RiskUserCountry(
                        user_id=user_id, country=here.country, first_seen=now, last_seen=now
                    )
                )
            else:
                seen.last_seen = now
        db.execute(
            delete(RiskSignIn).where(
                RiskSignIn.user_id == user_id,
                RiskSignIn.at < now - timedelta(days=self.policy.history_days),
            )
        )


def _rounded_speed(km: float, seconds: float) -> int | None:
    speed = speed_kmh(km, seconds)
    return None if speed == float("inf") else round(speed)
