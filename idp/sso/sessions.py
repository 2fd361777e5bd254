"""SSO sessions (server-side, in the short-lived store) and pending authentication requests.

The browser holds a random 256-bit value in an HttpOnly cookie (named ``COOKIE``; the web
layer sets and clears it, idp.web.sso). That value is kept nowhere on the server: the session's
id (``sid``) is a SHA-256 of it (``session_id_of``), and only the id is stored — the store key
``ssoh:<sid>``, the per-user index, known-device links, refresh tokens — and published (OIDC
``sid``, the admin's session lists). Someone who reads the database or the store learns ids,
none of which is a cookie: a cookie is hashed before it is looked up. The server-side record
carries the AuthnResult plus the relying parties that received tokens or assertions in this
session (for logout propagation). Idle and absolute lifetimes come from ``[session]``.

Sessions of a version that kept the cookie value itself (store key ``sso:<cookie>``) are not
found under ``ssoh:``: their browsers are signed out once, their index rows are pruned when
read and their store entries expire on their own (docs/security.md).

Nothing here reads a web request: callers pass the session id (the web layer hashes the
browser's cookie, ``session_id_of``). A caller that serves requests may give the manager a
``request_cache`` (a dict per request, None outside one) so a request reads a session record
from the store once; the web layer does (idp.web.sso.BrowserSessions).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..core.authn import AuthnRequest, AuthnResult, public_sid
from ..storage.models_auth import SsoSessionIndex

if TYPE_CHECKING:  # the container's type only: it is built above the hub
    from ..services import Services

log = logging.getLogger("idp.sso")

COOKIE = "idp_session"
_SSO = "ssoh:"  # + the session id (a hash of the cookie); "sso:" held the cookie value itself
_AUTHREQ = "authreq:"
AUTHREQ_TTL = 1800
MAX_COOKIE = 64  # a longer cookie value is no session of ours


def session_id_of(cookie: str | None) -> str | None:
    """The session id behind a browser's cookie value (None for no or an overlong cookie): a
    SHA-256 of it, the only form in which the server keeps or shows it."""
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    return public_sid(cookie)


LogoutListener = Callable[[dict[str, Any]], None]
SignoutListener = Callable[["UserSignout"], None]
RequestCache = Callable[[], "dict[str, Any] | None"]


def _no_request_cache() -> None:
    return None


class LogoutListeners:
    """Callables told about every ended SSO session (OIDC back-channel, SAML SLO...), added
    once at app set-up (e.g. from a blueprint's ``record_once``)."""

    def __init__(self) -> None:
        self._listeners: list[LogoutListener] = []

    def add(self, listener: LogoutListener) -> None:
        self._listeners.append(listener)

    def notify(self, record: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:  # one failing protocol must not stop the others
                log.exception("logout listener failed")


@dataclass(frozen=True)
class UserSignout:
    """Every session of a user was ended ("sign out everywhere", a password change, a lock):
    the protocols revoke what outlives a session. ``keep_sid`` (a public sid) is the session
    that stays (the browser that asked); ``offline``: the user's offline grants go too, except
    those of the relying parties in ``keep_clients``."""

    user_id: int
    keep_sid: str | None = None
    offline: bool = True
    keep_clients: frozenset[str] = field(default_factory=frozenset)


class SignoutListeners:
    """Callables told when all of a user's sessions were ended (the OIDC engine revokes the
    user's remaining refresh tokens), added once at app set-up like ``LogoutListeners``."""

    def __init__(self) -> None:
        self._listeners: list[SignoutListener] = []

    def add(self, listener: SignoutListener) -> None:
        self._listeners.append(listener)

    def notify(self, event: UserSignout) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one failing protocol must not stop the others
                log.exception("sign-out listener failed")


@dataclass(frozen=True)
class NewSession:
    """A session just made: its ``result`` (``result.sid``: the session id) and the value for
    the browser's cookie, which exists nowhere else (never stored, never logged)."""

    result: AuthnResult
    cookie: str = field(repr=False)

    @property
    def sid(self) -> str:
        """The session's id (what the server keeps and shows)."""
        return self.result.sid


class SessionManager:
    def __init__(self, svc: Services, request_cache: RequestCache | None = None) -> None:
        self.svc = svc
        self.store = svc.store
        cfg = svc.settings.session
        self.idle = cfg.idle_minutes * 60
        self.absolute = cfg.max_hours * 3600
        self.secure_cookie = svc.settings.issuer.startswith("https://")
        self.logout_listeners = LogoutListeners()
        self.signout_listeners = SignoutListeners()
        self._request_cache: RequestCache = request_cache or _no_request_cache

    # --- pending authentication requests -------------------------------------------------------

    def save_request(self, req: AuthnRequest) -> str:
        """Store a pending request; a ``{rid}`` in its resume_url becomes the request's id."""
        rid = secrets.token_urlsafe(24)
        req.resume_url = req.resume_url.replace("{rid}", rid)
        self.store.put(_AUTHREQ + rid, req.to_dict(), AUTHREQ_TTL)
        return rid

    def load_request(self, rid: str | None) -> AuthnRequest | None:
        if not rid or len(rid) > 64:
            return None
        data = self.store.get(_AUTHREQ + rid)
        return AuthnRequest.from_dict(data) if data else None

    def finish_request(self, rid: str) -> AuthnRequest | None:
        """Take the request once: a resumed request cannot be replayed."""
        data = self.store.take(_AUTHREQ + rid)
        return AuthnRequest.from_dict(data) if data else None

    # --- SSO sessions --------------------------------------------------------------------------

    def create(
        self,
        user_uuid: str,
        amr: list[str],
        acr: str,
        auth_time: int | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
        lifetime: int | None = None,
    ) -> NewSession:
        """A new session. ``lifetime`` (seconds): a "keep me signed in" session, which lasts
        that long whether used or not, in place of the [session] idle and absolute limits."""
        now = int(self.svc.clock.now())
        cookie = secrets.token_urlsafe(32)
        sid = public_sid(cookie)
        result = AuthnResult(
            user_uuid=user_uuid, auth_time=auth_time or now, amr=amr, acr=acr, sid=sid
        )
        record = {
            "result": result.to_dict(),
            "created": now,
            "last_seen": now,
            "rps": {},
            "ua": (user_agent or "")[:300],
            "ip": ip,
        }
        if lifetime:
            record["idle"] = record["absolute"] = lifetime
        idle, absolute = self.limits(record)
        self.store.put(_SSO + sid, record, min(idle, absolute))
        return NewSession(result, cookie)

    def limits(self, rec: dict[str, Any]) -> tuple[int, int]:
        """The idle and absolute lifetimes of a session record (seconds): its own for a
        "keep me signed in" session, else the [session] settings."""
        return rec.get("idle", self.idle), rec.get("absolute", self.absolute)

    def _record(self, sid: str | None) -> dict[str, Any] | None:
        if not sid or len(sid) > 64:
            return None
        # One store read per session and request: a sign-in reads the session, then its
        # relying parties, then adds one; this request's own writes keep the copy current.
        memo = self._request_cache()
        if memo is not None and sid in memo:
            return memo[sid]
        rec = self.store.get(_SSO + sid)
        if rec is not None:
            now = self.svc.clock.now()
            idle, absolute = self.limits(rec)
            if now - rec["created"] > absolute or now - rec["last_seen"] > idle:
                self.store.delete(_SSO + sid)
                rec = None
        if memo is not None:
            memo[sid] = rec
        return rec

    def peek(self, sid: str | None) -> dict[str, Any] | None:
        """The live record of a session, without touching its idle timer."""
        return self._record(sid)

    def current_by_sid(self, sid: str | None) -> AuthnResult | None:
        """The session ``sid`` (``session_id_of`` the browser's cookie, or a published sid),
        refreshed (idle timer) when found."""
        rec = self._record(sid)
        if rec is None:
            return None
        now = self.svc.clock.now()
        if now - rec["last_seen"] > 60:  # refresh the idle timer at most once a minute
            rec["last_seen"] = int(now)
            self._save(sid, rec)
        return AuthnResult.from_dict(rec["result"])

    def _save(self, sid: str, rec: dict[str, Any]) -> None:
        now = self.svc.clock.now()
        idle, absolute = self.limits(rec)
        left = min(idle, absolute - (now - rec["created"]))
        if left > 0:
            self.store.put(_SSO + sid, rec, left)
        memo = self._request_cache()
        if memo is not None:
            memo[sid] = rec if left > 0 else None

    def add_relying_party(self, sid: str, key: str, info: dict[str, Any]) -> None:
        """Remember that ``key`` (e.g. "oidc:<client_id>") was served in this session."""
        rec = self._record(sid)
        if rec is not None:
            rec["rps"][key] = info
            self._save(sid, rec)

    def relying_parties(self, sid: str) -> dict[str, Any]:
        rec = self._record(sid)
        return rec["rps"] if rec else {}

    def destroy(
        self, sid: str | None, propagate: bool = True, handled: str | None = None
    ) -> dict[str, Any] | None:
        """End a session and return its record, or None. With ``propagate`` every registered
        logout listener (OIDC back-channel, SAML SLO...) is told, whoever ended the session.
        ``handled`` names a protocol ("saml") whose caller tells its own parties in this
        browser (an SP-initiated Single Logout): its listener leaves the record alone."""
        if not sid or len(sid) > 64:
            return None
        record = self.store.take(_SSO + sid)
        memo = self._request_cache()
        if memo is not None:
            memo[sid] = None
        if record is None:
            return None
        record["sid"] = record["public_sid"] = sid
        record["handled"] = handled
        if propagate:
            self.logout_listeners.notify(record)
        return record

    def end(self, sid: str | None, db: Session | None = None) -> dict[str, Any] | None:
        """End one SSO session and drop it from its user's index. Returns the session record
        (with ``rps``: the relying parties to notify) or None when there was none. For
        RP-initiated logout and the logout page."""
        if not sid or len(sid) > 64:
            return None
        record = self.destroy(sid)
        if db is None:
            with self.svc.sessions.begin() as own:
                own.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid == sid))
        else:
            db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid == sid))
        return record

    def alive(self, sid: str) -> bool:
        """Is the session with this (published) id still alive? Its idle timer is untouched."""
        return self._record(sid) is not None

    def cookie_attributes(self) -> dict[str, Any]:
        """Where and how the browser keeps ``COOKIE`` (besides HttpOnly and its lifetime,
        ``absolute``): the web layer sets and clears the cookie with these."""
        return {"path": "/", "secure": self.secure_cookie, "samesite": "Lax"}


def session_manager(svc: Services) -> SessionManager:
    """The app's one SessionManager (``Services.sso_sessions``): ``create_app`` builds the web
    layer's request-bound subclass, so every caller shares that one and its record cache."""
    return svc.sso_sessions
