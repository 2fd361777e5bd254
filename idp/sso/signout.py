"""Ending every session of a user: "sign out everywhere" on the account page, the admin's
"end all sessions" (console, API, SCIM deactivation), a password change, a lock, a deactivation.

Everywhere means everywhere (docs/sessions.md): each SSO session ends in the store and its
logout listeners run (OIDC back-channel logout and the online refresh tokens issued in it, SAML
logout by SOAP or on the browser's next page), then the sign-out listeners revoke what outlives
a session: online refresh tokens of sessions that already expired, and the user's offline
grants unless the user chose to keep an application.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from ..storage import session_index
from .sessions import SessionManager, UserSignout


def sign_out_user(
    mgr: SessionManager,
    db: Session,
    user_id: int,
    *,
    keep_sid: str | None = None,
    offline: bool = True,
    keep_clients: Iterable[str] = (),
) -> int:
    """End every session of the user (``mgr``: the app's session manager) but ``keep_sid``
    (the session id of the browser that asked, if it stays signed in) and revoke their refresh
    tokens: online ones of every other session, offline ones too when ``offline``, except
    those of the client ids in ``keep_clients``.
    Returns how many SSO sessions ended.

    Call it before writing rows in ``db``: the revocations commit in their own transactions
    (on SQLite a write held by ``db`` would make them wait)."""
    # Tokens first: a token of a session ending below cannot outlive this call.
    mgr.signout_listeners.notify(
        UserSignout(
            user_id,
            keep_sid=keep_sid,
            offline=offline,
            keep_clients=frozenset(keep_clients),
        )
    )
    return session_index.end_user_sessions(db, mgr, user_id, keep_sid=keep_sid)
