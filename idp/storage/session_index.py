"""The per-user index of SSO sessions: which sessions a user has (for the account page's list
and "sign out everywhere"). The sessions themselves live in the short-lived store; an index row
whose session ended is pruned when read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .models_auth import SsoSessionIndex

_INDEX_INSERT = insert(SsoSessionIndex.__table__)


class SessionRecords(Protocol):
    """The SSO session manager, as far as the index needs it."""

    def peek(self, sid: str | None) -> dict[str, Any] | None: ...

    def destroy(self, sid: str | None, propagate: bool = True) -> dict[str, Any] | None: ...


def index_session(
    db: Session,
    user_id: int,
    sid: str,
    amr: list[str],
    *,
    at: datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    """Add a new SSO session to its user's index: a plain INSERT on the session's connection,
    sent at once (every login runs it). It takes SQLite's write lock, so call it when the
    transaction is about to commit, after any store write."""
    row = {
        "sid": sid,
        "user_id": user_id,
        "created_at": at,
        "ip": ip,
        "user_agent": (user_agent or "")[:300],
        "amr": " ".join(amr)[:100],
    }
    db.connection().execute(_INDEX_INSERT, [row])


@dataclass
class SessionInfo:
    sid: str
    created_at: Any
    ip: str | None
    user_agent: str | None
    amr: str | None
    current: bool


def list_sessions(
    db: Session, records: SessionRecords, user_id: int, current_sid: str | None
) -> list[SessionInfo]:
    """Live sessions of a user; index rows whose session ended are pruned on the way."""
    out, dead = [], []
    rows = db.scalars(
        select(SsoSessionIndex)
        .where(SsoSessionIndex.user_id == user_id)
        .order_by(SsoSessionIndex.created_at.desc())
    )
    for row in rows:
        if records.peek(row.sid) is None:
            dead.append(row.sid)
            continue
        out.append(
            SessionInfo(
                row.sid, row.created_at, row.ip, row.user_agent, row.amr, row.sid == current_sid
            )
        )
    if dead:
        db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(dead)))
    return out


def end_user_sessions(
    db: Session,
    records: SessionRecords,
    user_id: int,
    keep_sid: str | None = None,
    only: set[str] | None = None,
) -> int:
    """End every SSO session of the user except ``keep_sid`` (or only those in ``only``);
    returns how many ended. Call it before changing rows in ``db``."""
    sids = db.scalars(select(SsoSessionIndex.sid).where(SsoSessionIndex.user_id == user_id)).all()
    gone = [sid for sid in sids if sid != keep_sid and (only is None or sid in only)]
    # Store first, index rows after: no store write while this session holds a write lock.
    ended = sum(1 for sid in gone if records.destroy(sid) is not None)
    if gone:
        db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(gone)))
    return ended
