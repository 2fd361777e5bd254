"""The SSO session on the web: the browser's session cookie and a per-request cache of session
records, over the sign-in hub's SessionManager (idp.sso.sessions)."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, g, has_request_context, request

from ..core.authn import AuthnResult
from ..services import Services
from ..sso.sessions import COOKIE, NewSession, SessionManager, session_id_of
from .current import svc


def browser_sid() -> str | None:
    """The id of this browser's SSO session: a hash of its cookie (None without one). The
    cookie value itself goes no further than this."""
    return session_id_of(request.cookies.get(COOKIE))


def request_records() -> dict[str, Any] | None:
    """Session records read or written during this request (None outside a request)."""
    if not has_request_context():
        return None
    memo = g.get("_sso_records")
    if memo is None:
        memo = g._sso_records = {}
    return memo


class BrowserSessions(SessionManager):
    """The hub's SessionManager bound to Flask: records cached per request, the browser's
    session read from its cookie, the cookie set and cleared on responses. ``create_app``
    makes it the app's one manager (``Services.sso_sessions``)."""

    def __init__(self, svc: Services) -> None:
        super().__init__(svc, request_cache=request_records)

    def current(self) -> AuthnResult | None:
        """The session of this browser, refreshed (idle timer) when found."""
        return self.current_by_sid(browser_sid())

    def set_cookie(self, response: Response, made: NewSession, lifetime: int | None = None) -> None:
        """The session cookie: kept by the browser for ``lifetime`` seconds ("keep me signed
        in"), else a browser-session cookie, gone when the browser closes (the server-side
        record ends by the [session] limits either way)."""
        response.set_cookie(
            COOKIE, made.cookie, httponly=True, max_age=lifetime, **self.cookie_attributes()
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, **self.cookie_attributes())


def sessions() -> BrowserSessions:
    """The app's session manager, for code serving a request."""
    return cast(BrowserSessions, svc().sso_sessions)
