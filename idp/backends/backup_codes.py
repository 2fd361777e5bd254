"""Backup codes: single-use lookup secrets for when the usual factor is lost.

Each code is 8 characters from a 32-letter alphabet without look-alikes (40 bits; ASVS 5
6.5.4 asks for at least 20), shown as ``XXXX-XXXX`` and accepted with or without the dash, in
any case. Only a keyed hash is stored (ASVS 5 6.5.2: codes under 112 bits are hashed), and a new
set replaces the old one entirely.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, exists, func, select, update

from ..core.authn import AMR_OTP
from ..core.steps import PendingLogin
from ..storage.models_mfa import MfaBackupCode
from .enrolment import ClauseEnrolled

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 8


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize(code: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be one."""
    text = "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-").upper()
    if len(text) != LENGTH or any(ch not in ALPHABET for ch in text):
        return None
    return text


def _hash(svc: Any, user_id: int, canonical: str) -> str:
    # Bound to the user: another user's code never matches, even with equal text.
    return svc.hasher.hash(f"backup:{user_id}:{canonical}")


def regenerate(svc: Any, db: Any, user_id: int) -> list[str]:
    """A new set (the old one stops working); returns the codes to show once."""
    db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))
    codes = [_new_code() for _ in range(svc.settings.mfa.backup_codes)]
    now = svc.clock.utcnow()
    for code in codes:
        db.add(
            MfaBackupCode(
                user_id=user_id, code_hash=_hash(svc, user_id, normalize(code)), created_at=now
            )
        )
    return codes


def remaining(db: Any, user_id: int) -> int:
    return (
        db.scalar(
            select(func.count())
            .select_from(MfaBackupCode)
            .where(MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None))
        )
        or 0
    )


def spend(svc: Any, user_id: int, code: str) -> bool:
    """Use a code up; exactly one of two concurrent uses of the same code passes."""
    canonical = normalize(code)
    if canonical is None:
        return False
    with svc.sessions.begin() as db:
        spent = db.execute(
            update(MfaBackupCode)
            .where(
                MfaBackupCode.user_id == user_id,
                MfaBackupCode.code_hash == _hash(svc, user_id, canonical),
                MfaBackupCode.used_at.is_(None),
            )
            .values(used_at=svc.clock.utcnow())
        )
        return spent.rowcount == 1


def remove_all(db: Any, user_id: int) -> None:
    db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))


class BackupCodeFactor(ClauseEnrolled):
    id = "backup"
    amr = AMR_OTP
    label = _l("Backup code")
    manage_endpoint = "mfa.backup"

    def enrolled_clause(self, svc: Any, user_id: Any) -> Any:
        if svc.settings.mfa.backup_codes <= 0:
            return None
        # Enrolled while at least one code is left: the last one spent ends the enrolment.
        return exists().where(MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None))

    def begin(self, svc: Any, user: Any, pending: PendingLogin) -> dict[str, Any]:
        return {"prompt": _l("Enter one of your backup codes (XXXX-XXXX). Each works once.")}

    def verify(self, svc: Any, user: Any, pending: PendingLogin, form: Mapping[str, str]) -> bool:
        if svc.settings.mfa.backup_codes <= 0:
            return False
        if spend(svc, user.id, form.get("code", "")):
            pending.data["backup_used"] = True
            return True
        return False

    def reset(self, svc: Any, db: Any, user: Any) -> None:
        remove_all(db, user.id)
