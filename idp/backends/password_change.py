"""Checking a new password against the policy (core.policy.check_password, with the user's
password history) and storing it: history kept, flags cleared. The caller writes the audit row
and turns violations into words."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..core.policy import PasswordPolicy, Violation, check_password
from ..storage.models import User
from ..storage.models_auth import PasswordHistory
from .passwords import PasswordHasher


def history_check(db: Session, hasher: PasswordHasher, user: User, n: int) -> Callable[[str], bool]:
    """A test: is a password one of the user's last ``n`` (the current one included)?"""

    def check(password: str) -> bool:
        hashes = [user.password_hash] if user.password_hash else []
        hashes += db.scalars(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(max(n - 1, 0))
        ).all()
        return any(hasher.verify(password, h)[0] for h in hashes[:n])

    return check


def password_violations(
    db: Session, hasher: PasswordHasher, policy: PasswordPolicy, user: User, new: str
) -> list[Violation]:
    """What the policy has against ``new`` as the password of ``user``."""
    return check_password(
        policy,
        new,
        username=user.username,
        email=user.email,
        names=(user.given_name, user.family_name),
        in_history=history_check(db, hasher, user, policy.history) if policy.history else None,
    )


def store_password(
    db: Session,
    hasher: PasswordHasher,
    policy: PasswordPolicy,
    user: User,
    new: str,
    *,
    now: datetime,
) -> None:
    """Store a new (already checked) password: the old one joins the history (trimmed to the
    policy's length), the must-change flag is cleared."""
    if user.password_hash and policy.history:
        db.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash, created_at=now))
        db.flush()
        keep = db.scalars(
            select(PasswordHistory.id)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(policy.history)
        ).all()
        db.execute(
            delete(PasswordHistory).where(
                PasswordHistory.user_id == user.id, PasswordHistory.id.not_in(keep)
            )
        )
    user.password_hash = hasher.hash(new)
    user.password_changed_at = now
    user.must_change_password = False
