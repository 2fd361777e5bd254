"""A user's SSO sessions: list them, end one, end them all ("log out everywhere").

Permissions: ``users:accounts:read`` to list, ``users:sessions:revoke`` to end, both over the
user. The sessions live in the short-lived store; the ``sso_session_index`` table says which
are the user's. The session store is passed in (``SessionRecords``: the SSO session manager the
running app built, whose ``destroy`` tells every protocol's logout listener), so this layer
needs no web framework. Sessions are shown by their id, the OIDC ``sid``: a hash of the cookie
value that is also the session's key in the store and the index, never the cookie value itself
(idp.sso.sessions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..sso.sessions import SessionManager
from ..sso.signout import sign_out_user
from ..storage import session_index
from ..storage.models import User
from ..storage.session_index import SessionRecords
from .context import Context, transaction


@dataclass(frozen=True)
class SessionInfo:
    id: str  # the public session id
    created_at: datetime | None
    ip: str | None
    user_agent: str | None
    amr: str | None
    last_seen: datetime | None = None  # the last request that used the session (to a minute)


def list_for_user(ctx: Context, user: User, sessions: SessionRecords) -> list[SessionInfo]:
    """The user's live sessions, newest first; index rows of ended sessions are pruned."""
    ctx.require("users:accounts:read", user.id)
    out = []
    for s in session_index.list_sessions(ctx.db, sessions, user.id, None):
        seen = (sessions.peek(s.sid) or {}).get("last_seen")
        out.append(
            SessionInfo(
                s.sid,
                s.created_at,
                s.ip,
                s.user_agent,
                s.amr,
                datetime.fromtimestamp(seen, UTC) if seen else None,
            )
        )
    return out


def end_all(
    ctx: Context, user: User, sessions: SessionManager, *, keep_offline: bool = False
) -> int:
    """Log the user out everywhere: every SSO session (relying parties told: OIDC back-channel,
    SAML), the refresh tokens issued in them, and their offline refresh tokens unless
    ``keep_offline``; how many sessions ended. Call it before other writes in ``ctx.db``."""
    ctx.require("users:sessions:revoke", user.id)
    ended = sign_out_user(sessions, ctx.db, user.id, offline=not keep_offline)
    ctx.audit(
        "session.revoked", user.uuid, count=ended, by_admin=True, offline_revoked=not keep_offline
    )
    return ended


def end_all_after_commit(ctx: Context, user: User, reason: str) -> None:
    """Once this transaction commits (a lock, a deactivation, a new password set by an admin),
    end every session and refresh token of the user as :func:`end_all` does, in a transaction
    of its own: the revocations must not wait on this one's write lock (SQLite)."""
    svc, actor, user_id, uuid = ctx.svc, ctx.actor, user.id, user.uuid

    def run() -> None:
        with transaction(svc, actor) as again:
            ended = sign_out_user(svc.sso_sessions, again.db, user_id)
            again.audit("session.revoked", uuid, count=ended, by_admin=True, reason=reason)

    ctx.after_commit(run)


def end_one(ctx: Context, user: User, sessions: SessionRecords, session_id: str) -> bool:
    """End the user's session with this public id (relying parties are told); False when the
    user has no live session of that id (ended meanwhile, or never theirs)."""
    ctx.require("users:sessions:revoke", user.id)
    live = session_index.list_sessions(ctx.db, sessions, user.id, None)
    chosen = {s.sid for s in live if s.sid == session_id}
    if not chosen:
        return False
    ended = session_index.end_user_sessions(ctx.db, sessions, user.id, only=chosen)
    ctx.audit("session.revoked", user.uuid, count=ended, session=session_id, by_admin=True)
    return ended > 0
