"""A user's SSO sessions: list them, end one, end them all ("log out everywhere").

Permissions: ``users:accounts:read`` to list, ``users:sessions:revoke`` to end, both over the
user. The sessions live in the short-lived store; the ``sso_session_index`` table says which
are the user's. The session store is passed in (``SessionRecords``: the SSO session manager the
running app built, whose ``destroy`` tells every protocol's logout listener), so this layer
needs no web framework. Sessions are shown by their public id (OIDC ``sid`` / SAML
SessionIndex), never by the secret cookie value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..core.authn import public_sid
from ..storage import session_index
from ..storage.models import User
from ..storage.session_index import SessionRecords
from .context import Context


@dataclass(frozen=True)
class SessionInfo:
    id: str  # the public session id
    created_at: datetime | None
    ip: str | None
    user_agent: str | None
    amr: str | None


def list_for_user(ctx: Context, user: User, sessions: SessionRecords) -> list[SessionInfo]:
    """The user's live sessions, newest first; index rows of ended sessions are pruned."""
    ctx.require("users:accounts:read", user.id)
    return [
        SessionInfo(public_sid(s.sid), s.created_at, s.ip, s.user_agent, s.amr)
        for s in session_index.list_sessions(ctx.db, sessions, user.id, None)
    ]


def end_all(ctx: Context, user: User, sessions: SessionRecords) -> int:
    """End every SSO session of the user (relying parties are told); how many ended."""
    ctx.require("users:sessions:revoke", user.id)
    ended = session_index.end_user_sessions(ctx.db, sessions, user.id)
    ctx.audit("session.revoked", user.uuid, count=ended, by_admin=True)
    return ended


def end_one(ctx: Context, user: User, sessions: SessionRecords, session_id: str) -> bool:
    """End the user's session with this public id (relying parties are told); False when the
    user has no live session of that id (ended meanwhile, or never theirs)."""
    ctx.require("users:sessions:revoke", user.id)
    live = session_index.list_sessions(ctx.db, sessions, user.id, None)
    chosen = {s.sid for s in live if public_sid(s.sid) == session_id}
    if not chosen:
        return False
    ended = session_index.end_user_sessions(ctx.db, sessions, user.id, only=chosen)
    ctx.audit("session.revoked", user.uuid, count=ended, session=session_id, by_admin=True)
    return ended > 0
