"""What every second factor's ``enrolled()`` does with its ``enrolled_clause`` (idp.core.steps)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select


class ClauseEnrolled:
    """``enrolled()`` for a factor that states "this user has it" as ``enrolled_clause``: the
    same condition the login's one combined query asks, so the two cannot disagree. The factor
    defines ``enrolled_clause(svc, user_id)``."""

    def enrolled(self, svc: Any, user: Any) -> bool:
        clause = self.enrolled_clause(svc, user.id)
        if clause is None:  # the factor is switched off
            return False
        with svc.sessions() as db:
            return bool(db.scalar(select(clause)))
