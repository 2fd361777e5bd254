"""Concurrent-session limits (docs/sessions.md): ``[session] max_per_user`` and the limits stored
on roles and groups, the smallest that applies winning; at the limit a new sign-in either ends
the user's oldest sessions (``limit_action = "end_oldest"``, relying parties told) or is refused
("refuse").

Two sign-ins of one user at the same moment, in two worker processes or on two nodes, must not
both see room for one more session. The check and the new session's index row are serialized
per user by a lock in the shared short-lived store (``store.add`` is an atomic
put-if-absent in both the SQL table and Redis), not by a database lock: the login writes the
store while it holds the lock, and on SQLite a database write lock held meanwhile would make
the store's own connection wait. The per-user index table stays the truth for what is live.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..storage.models_auth import SsoSessionIndex
from ..storage.session_limits import user_limit
from .sessions import SessionManager

_LOCK = "sesslimit:lock:"
LOCK_TTL = 15  # seconds: a worker that died holding the lock stops blocking after this
LOCK_WAIT = 20  # seconds a sign-in waits for the lock (longer than LOCK_TTL: it always gets it)


@dataclass
class Slot:
    """May the new session be created; the sessions ended to make room (their index rows are
    the caller's to delete, in the transaction that adds the new one)."""

    allowed: bool = True
    ended: list[str] = field(default_factory=list)


@contextmanager
def _user_lock(mgr: SessionManager, user_id: int) -> Iterator[None]:
    store, key, token = mgr.store, f"{_LOCK}{user_id}", secrets.token_hex(8)
    deadline = time.monotonic() + LOCK_WAIT
    while not store.add(key, token, LOCK_TTL) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield
    finally:
        if store.get(key) == token:
            store.delete(key)


@contextmanager
def session_slot(
    mgr: SessionManager, db: Session, user_id: int, replacing: str | None
) -> Iterator[Slot]:
    """Room for one new session of the user, held until the block ends (the caller creates the
    session, adds its index row and commits inside). ``replacing``: this browser's own session,
    which the new one replaces, so it does not count. No limit, no lock."""
    cfg = mgr.svc.settings.session
    limit = user_limit(db, mgr.store, mgr.svc.clock, user_id, cfg.max_per_user)
    if limit is None:
        yield Slot()
        return
    with _user_lock(mgr, user_id):
        sids = db.scalars(
            select(SsoSessionIndex.sid)
            .where(SsoSessionIndex.user_id == user_id)
            .order_by(SsoSessionIndex.created_at, SsoSessionIndex.sid)
        ).all()
        live = [sid for sid in sids if sid != replacing and mgr.peek(sid) is not None]
        over = len(live) - limit + 1
        if over <= 0:
            yield Slot()
        elif cfg.limit_action == "refuse":
            yield Slot(allowed=False)
        else:
            ended = live[:over]
            for sid in ended:
                mgr.destroy(sid)  # the oldest first; OIDC and SAML parties told
            yield Slot(ended=ended)
