"""The sign-in pages' side of suspicious-activity detection and adaptive authentication
(docs/risk.md): the request's facts (address, device name) handed to ``idp.sso.risk``, and its
findings written as ``security.<rule>`` audit rows; a rule set to lock locks the account through
the administrators' own lock operation (``idp.manage.users.lock``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import g, request

from ..core.risk import DENY, STEP_UP, RiskPolicy, notifies
from ..manage import users as manage_users
from ..manage.context import Actor, Context
from ..sso import devices
from ..sso.risk import RiskEngine, SecurityEvent
from ..storage.models import User
from .current import svc
from .devices import describe
from .requestinfo import audit, audit_now, client_ip

# Who the audit rows name as the actor of a lock the rules make.
RISK_ACTOR = "risk-engine"
_VERSION = re.compile(r" [\d.]+$")


def engine() -> RiskEngine:
    s = svc()
    return RiskEngine(s.store, s.clock, RiskPolicy.from_settings(s.settings.risk), s.geoip)


def device_name(user_agent: str | None = None) -> str | None:
    """The request's device (or that of ``user_agent``) as ua-parser names it, without version
    numbers (an updated browser is the same device): "Chrome|Linux|", "Mobile Safari|iOS|iPhone"."""
    found = describe(request.user_agent.string if user_agent is None else user_agent)
    if not any((found.browser, found.os, found.device)):
        return None
    return "|".join(
        _VERSION.sub("", part or "") for part in (found.browser, found.os, found.device)
    )


def write_events(db: Any, events: list[SecurityEvent], user: User | None, *, now: bool) -> None:
    """One ``security.<rule>`` row per finding (``now``: sent at once, for hot paths)."""
    write = audit_now if now else audit
    for event in events:
        write(
            db,
            event.action,
            target=user.uuid if user is not None else None,
            **event.details,
            locks=event.lock,
        )


def block_key() -> str | None:
    """The store key of this address's credential-stuffing block (None: the rule is off)."""
    return engine().block_key(client_ip())


def block_retry_after(block: Any) -> int:
    """Seconds until this address's credential-stuffing block (its stored value) ends."""
    return engine().block_retry_after(block)


def password_failed(db: Any, login: str, user: User | None) -> None:
    """After a wrong password: the counters, and the stuffing finding in ``db``'s unit of work."""
    events = engine().password_failed(client_ip(), login, user.id if user else None)
    write_events(db, events, None, now=False)


def mfa_failed(db: Any, user: User) -> bool:
    """After a wrong second-factor code: the burst finding; True when it locked the account."""
    events = engine().mfa_failed(user.id)
    write_events(db, events, user, now=False)
    if any(e.lock for e in events):
        lock(db, user)
        return True
    return False


def lock(db: Any, user: User) -> None:
    """Lock the account as an administrator would (status "locked"; the lock operation ends
    what a lock ends), audited as done by the risk engine, and commit it with the findings."""
    actor = Actor("operator", RISK_ACTOR, ip=client_ip(), request_id=g.get("request_id"))
    ctx = Context(db, svc(), actor)
    if user.status != "locked":
        manage_users.lock(ctx, user)
    db.commit()
    ctx.committed()


@dataclass(frozen=True)
class Judgement:
    """What the rules and the score make of a sign-in whose first factor passed."""

    refused: str | None = None  # "locked" (a rule locked the account) | "denied" (the score)
    step_up: bool = False  # ask a second factor even when the MFA policy would not
    risk: dict[str, Any] | None = None  # {"score", "reasons"} for the sign-in's audit row


def _cookie_device_matches(db: Any, user: User) -> bool:
    """The browser carries the user's device cookie (idp.sso.devices) and is still the browser
    that device was first seen as: a cookie copied to another kind of device is no proof."""
    s = svc()
    cookie = request.cookies.get(devices.COOKIE)
    device_id = devices.current_device_id(db, s.hasher, user.id, cookie)
    known = devices.device_of(db, user.id, device_id) if device_id is not None else None
    return known is not None and device_name(known.user_agent or "") == device_name()


def judge(db: Any, user: User, has_factor: bool) -> Judgement:
    """Judge a sign-in whose first factor passed; its findings and a refusal are written and
    committed here (at once: the sign-in may stop on them)."""
    risk = engine()
    if not risk.active():
        return Judgement()
    found = risk.assess(
        db,
        user.id,
        client_ip(),
        device_name(),
        cookie_known=risk.policy.adaptive and _cookie_device_matches(db, user),
    )
    details = found.risk.as_details() if found.risk else None
    events = list(found.events)
    verdict = found.verdict
    no_factor = verdict == STEP_UP and not has_factor
    if no_factor and risk.policy.step_up_without_factor == "deny":
        verdict = DENY
    if found.risk is not None and notifies(risk.policy, found.risk):
        evidence = {**(details or {}), "verdict": verdict}
        if no_factor:
            evidence["no_second_factor"] = True
        events.append(SecurityEvent("risky_sign_in", evidence))
    write_events(db, events, user, now=False)
    if found.locks:
        lock(db, user)
        return Judgement(refused="locked", risk=details)
    if verdict == DENY:
        audit(
            db,
            "login.risk_denied",
            actor=user.uuid,
            target=user.uuid,
            risk=details,
            no_second_factor=no_factor,
        )
        db.commit()
        return Judgement(refused="denied", risk=details)
    if events:
        db.commit()
    return Judgement(step_up=verdict == STEP_UP and has_factor, risk=details)


def record_sign_in(db: Any, user: User) -> None:
    """Keep a completed sign-in in the user's history, in ``db``'s unit of work."""
    risk = engine()
    if risk.active():
        risk.record_sign_in(db, user.id, client_ip(), device_name())
