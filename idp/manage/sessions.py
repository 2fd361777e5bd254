"""A user's SSO sessions: list them, end them all ("log out everywhere").

Permissions: ``users:accounts:read`` to list, ``users:sessions:revoke`` to end, both over the
user. The sessions live in the short-lived store; the ``sso_session_index`` table says which
are the user's. The session store is passed in (``SsoSessions``: the SSO session manager the
running app built, whose ``destroy`` tells every protocol's logout listener), so this layer
needs no web framework. Sessions are shown by their public id (OIDC ``sid`` / SAML
SessionIndex), never by the secret cookie value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select

from ..core.authn import public_sid
from ..storage.models import User
from ..storage.models_auth import SsoSessionIndex
from .context import Context


class SsoSessions(Protocol):
    def peek(self, sid: str | None) -> dict[str, Any] | None: ...

    def destroy(self, sid: str | None, propagate: bool = True) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class SessionInfo:
    id: str  # the public session id
    created_at: datetime | None
    ip: str | None
    user_agent: str | None
    amr: str | None


def list_for_user(ctx: Context, user: User, sessions: SsoSessions) -> list[SessionInfo]:
    """The user's live sessions, newest first; index rows of ended sessions are pruned."""
    ctx.require("users:accounts:read", user.id)
    out, dead = [], []
    rows = ctx.db.scalars(
        select(SsoSessionIndex)
        .where(SsoSessionIndex.user_id == user.id)
        .order_by(SsoSessionIndex.created_at.desc())
    )
    for row in rows:
        if sessions.peek(row.sid) is None:
            dead.append(row.sid)
            continue
        out.append(
            SessionInfo(public_sid(row.sid), row.created_at, row.ip, row.user_agent, row.amr)
        )
    if dead:
        ctx.db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(dead)))
    return out


def end_all(ctx: Context, user: User, sessions: SsoSessions) -> int:
    """End every SSO session of the user (relying parties are told); how many ended."""
    ctx.require("users:sessions:revoke", user.id)
    sids = ctx.db.scalars(
        select(SsoSessionIndex.sid).where(SsoSessionIndex.user_id == user.id)
    ).all()
    # Store first, index rows after: no store write while this transaction holds a write lock.
    ended = sum(1 for sid in sids if sessions.destroy(sid) is not None)
    if sids:
        ctx.db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(sids)))
    ctx.audit("session.revoked", user.uuid, count=ended, by_admin=True)
    return ended
