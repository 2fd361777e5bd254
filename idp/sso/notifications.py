"""Which security mails a user gets: "new_device" (a sign-in from a device not known for them),
"password_expiry" (the warning before the password expires) and "mfa_changes" (a second factor
added or removed). Every kind is on; the user may turn off the kinds the policy lists in
``[notifications] user_may_disable``, the others always go out. Only opt-outs are stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ..errors import ValidationError
from ..settings import NOTIFICATION_KINDS
from ..storage.models_devices import SecurityMailOptOut

KINDS = NOTIFICATION_KINDS


@dataclass(frozen=True)
class Choice:
    kind: str
    enabled: bool
    forced: bool  # the policy sends it whatever the user says


def may_disable(settings: Any, kind: str) -> bool:
    return kind in settings.notifications.user_may_disable


def wants(db: Session, settings: Any, user_id: int, kind: str) -> bool:
    """Does the user get mails of ``kind``? (Policy-forced kinds: always.)"""
    if not may_disable(settings, kind):
        return True
    return not db.scalar(
        select(SecurityMailOptOut.kind).where(
            SecurityMailOptOut.user_id == user_id, SecurityMailOptOut.kind == kind
        )
    )


def choices(db: Session, settings: Any, user_id: int) -> list[Choice]:
    off = set(
        db.scalars(select(SecurityMailOptOut.kind).where(SecurityMailOptOut.user_id == user_id))
    )
    out = []
    for kind in KINDS:
        forced = not may_disable(settings, kind)
        out.append(Choice(kind, forced or kind not in off, forced))
    return out


def choose(
    db: Session, settings: Any, user_id: int, enabled: Iterable[str], now: datetime
) -> list[str]:
    """Store the user's choice (``enabled``: the kinds they want); the kinds whose setting
    changed. Turning off a kind the policy forces, or naming an unknown kind, is refused
    (ValidationError) and nothing is stored."""
    wanted = set(enabled)
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise ValidationError(f"unknown kind of mail: {unknown[0]}")
    refused = [k for k in KINDS if k not in wanted and not may_disable(settings, k)]
    if refused:
        raise ValidationError(f"the policy always sends {refused[0]} mails")
    before = {c.kind: c.enabled for c in choices(db, settings, user_id)}
    changed = [k for k in KINDS if before[k] != (k in wanted)]
    if not changed:
        return []
    db.execute(
        delete(SecurityMailOptOut).where(
            SecurityMailOptOut.user_id == user_id, SecurityMailOptOut.kind.in_(changed)
        )
    )
    off = [k for k in changed if k not in wanted]
    if off:
        db.execute(
            insert(SecurityMailOptOut),
            [{"user_id": user_id, "kind": k, "created_at": now} for k in off],
        )
    return changed
