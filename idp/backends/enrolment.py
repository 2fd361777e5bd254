"""What every second factor's ``enrolled()`` does with its ``enrolled_clause`` (idp.core.steps),
and the one query that asks all of them together at the login (``Services.enrolment_query``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, bindparam, select


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


class EnrolmentQuery:
    """Every factor's "enrolled" condition as one ``SELECT EXISTS(...), EXISTS(...)``: one round
    trip at the login instead of one query (and connection) per factor. The statement depends
    only on the factors and settings, so it is built once per app, the user id a parameter.
    Called by ``idp.core.steps.enrolled_factors`` as ``svc.enrolment_query(...)``."""

    def __init__(self) -> None:
        self._built: tuple[tuple[str, ...], list[str], Any] | None = None

    def __call__(self, svc: Any, db: Any, user_id: int, asked: list[Any]) -> set[str]:
        key = tuple(f.id for f in asked)
        built = self._built
        if built is None or built[0] != key:
            uid = bindparam("user_id", type_=Integer)
            conditions = {
                f.id: c for f in asked if (c := f.enrolled_clause(svc, uid)) is not None
            }
            stmt = (
                select(*(c.label(f"f{i}") for i, c in enumerate(conditions.values())))
                if conditions
                else None
            )
            built = self._built = (key, list(conditions), stmt)
        _key, ids, stmt = built
        if stmt is None:
            return set()
        if db is None:
            with svc.sessions() as own:
                row = own.execute(stmt, {"user_id": user_id}).one()
        else:
            row = db.execute(stmt, {"user_id": user_id}).one()
        return {fid for fid, yes in zip(ids, row, strict=True) if yes}
