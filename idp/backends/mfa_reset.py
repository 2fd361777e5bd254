"""Removing every second factor of a user (an administrator's reset, after identity proofing):
each registered factor's ``reset`` and every remembered device. Used by ``idp.manage.users``
(the API, ``idp users mfa reset``); the caller audits, commits and tells the user."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from ..core.steps import enrolled_factors, factors
from ..storage.models_mfa import MfaRememberedDevice


def reset_user_mfa(s: Any, db: Any, user: Any) -> list[str]:
    """Remove every second factor of ``user`` and every remembered device; returns the ids of
    the factors that were enrolled. The caller commits."""
    had = sorted(f.id for f in enrolled_factors(s, user, db))
    for factor in factors(s).values():
        reset = getattr(factor, "reset", None)
        if reset is not None:
            reset(s, db, user)
    db.execute(delete(MfaRememberedDevice).where(MfaRememberedDevice.user_id == user.id))
    return had
