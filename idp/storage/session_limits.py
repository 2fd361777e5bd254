"""Reading and writing the concurrent-session limits of roles and groups, and the limit that
applies to one user (the smallest of the setting and every role and group they hold)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models_sessions import SessionLimit
from .rbac import cached_graph, grants_for


def limit_of(db: Session, *, role_id: int | None = None, group_id: int | None = None) -> int | None:
    """The stored limit of one role or group (None: none stored)."""
    column = SessionLimit.role_id if role_id is not None else SessionLimit.group_id
    return db.scalar(
        select(SessionLimit.max_sessions).where(column == (role_id if role_id else group_id))
    )


def limits_of(db: Session, *, role_ids: Any = (), group_ids: Any = ()) -> dict[str, dict[int, int]]:
    """Stored limits by role id and group id, for list screens."""
    out: dict[str, dict[int, int]] = {"role": {}, "group": {}}
    rows = db.execute(
        select(SessionLimit.role_id, SessionLimit.group_id, SessionLimit.max_sessions).where(
            SessionLimit.role_id.in_(list(role_ids)) | SessionLimit.group_id.in_(list(group_ids))
        )
    )
    for role_id, group_id, value in rows:
        if role_id is not None:
            out["role"][role_id] = value
        else:
            out["group"][group_id] = value
    return out


def set_limit(
    db: Session, value: int | None, *, role_id: int | None = None, group_id: int | None = None
) -> None:
    """Store (or with None remove) the limit of one role or group."""
    column = SessionLimit.role_id if role_id is not None else SessionLimit.group_id
    ref = role_id if role_id is not None else group_id
    db.execute(delete(SessionLimit).where(column == ref))
    if value is not None:
        db.add(SessionLimit(role_id=role_id, group_id=group_id, max_sessions=value))
    db.flush()


def user_limit(db: Session, store: Any, clock: Any, user_id: int, default: int) -> int | None:
    """The most sessions the user may hold: the smallest of ``default`` (0 = none) and the
    limits of the roles they hold (effective: through groups and composite roles, temporary
    grants while they last) and of the groups they belong to (and the groups above those).
    None when no limit applies. Reads nothing more when no role or group limit is stored."""
    found = [default] if default > 0 else []
    if db.scalar(select(SessionLimit.id).limit(1)) is None:
        return min(found) if found else None
    now: datetime = clock.utcnow()
    role_ids = grants_for(db, store, user_id, clock=clock).role_ids
    graph = cached_graph(db, user_id)
    groups: set[int] = set()
    for m in graph.memberships:
        if m.expires_at is None or m.expires_at > now:
            gid: int | None = m.group_id
            while gid is not None and gid not in groups:
                groups.add(gid)
                gid = graph.group_parent.get(gid)
    stored = limits_of(db, role_ids=role_ids, group_ids=groups)
    found += list(stored["role"].values()) + list(stored["group"].values())
    return min(found) if found else None
