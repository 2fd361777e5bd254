"""SSO sessions (server-side, in the short-lived store) and pending authentication requests.

The browser holds only a random 256-bit session id in an HttpOnly cookie. The server-side record
carries the AuthnResult plus the relying parties that received tokens or assertions in this
session (for logout propagation). Idle and absolute lifetimes come from ``[session]``.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, request

from ..core.authn import AuthnRequest, AuthnResult
from ..services import Services

COOKIE = "idp_session"
_SSO = "sso:"
_AUTHREQ = "authreq:"
AUTHREQ_TTL = 1800


class SessionManager:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.store = svc.store
        cfg = svc.settings.session
        self.idle = cfg.idle_minutes * 60
        self.absolute = cfg.max_hours * 3600
        self.secure_cookie = svc.settings.issuer.startswith("https://")

    # --- pending authentication requests -------------------------------------------------------

    def save_request(self, req: AuthnRequest) -> str:
        rid = secrets.token_urlsafe(24)
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
    ) -> AuthnResult:
        now = int(self.svc.clock.now())
        sid = secrets.token_urlsafe(32)
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
        self.store.put(_SSO + sid, record, min(self.idle, self.absolute))
        return result

    def _record(self, sid: str | None) -> dict[str, Any] | None:
        if not sid or len(sid) > 64:
            return None
        rec = self.store.get(_SSO + sid)
        if rec is None:
            return None
        now = self.svc.clock.now()
        if now - rec["created"] > self.absolute or now - rec["last_seen"] > self.idle:
            self.store.delete(_SSO + sid)
            return None
        return rec

    def current(self) -> AuthnResult | None:
        """The session of this browser, refreshed (idle timer) when found."""
        sid = request.cookies.get(COOKIE)
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
        left = min(self.idle, self.absolute - (now - rec["created"]))
        if left > 0:
            self.store.put(_SSO + sid, rec, left)

    def add_relying_party(self, sid: str, key: str, info: dict[str, Any]) -> None:
        """Remember that ``key`` (e.g. "oidc:<client_id>") was served in this session."""
        rec = self._record(sid)
        if rec is not None:
            rec["rps"][key] = info
            self._save(sid, rec)

    def relying_parties(self, sid: str) -> dict[str, Any]:
        rec = self._record(sid)
        return rec["rps"] if rec else {}

    def destroy(self, sid: str | None) -> dict[str, Any] | None:
        """End a session; return its record (for logout propagation) or None."""
        if not sid:
            return None
        return self.store.take(_SSO + sid)

    # --- cookie --------------------------------------------------------------------------------

    def set_cookie(self, response: Response, result: AuthnResult) -> None:
        response.set_cookie(
            COOKIE,
            result.sid,
            httponly=True,
            secure=self.secure_cookie,
            samesite="Lax",
            path="/",
            max_age=self.absolute,
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", secure=self.secure_cookie, samesite="Lax")


def sessions() -> SessionManager:
    from ..app import services

    svc = services()
    mgr = svc.extras.get("sessions")
    if mgr is None:
        mgr = svc.extras["sessions"] = SessionManager(svc)
    return mgr
