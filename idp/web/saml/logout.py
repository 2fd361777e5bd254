"""Single Logout endpoints (saml-profiles 4.4): /saml/slo (an SP's LogoutRequest or
LogoutResponse, HTTP-Redirect and HTTP-POST) and /saml/logout (logout started here: GET asks,
POST signs out), and the SAML logout of sessions ended elsewhere: SOAP through the outbound
guard, or the browser's next page here sent to /saml/logout/pending first."""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for

from ...oidc.fetch import poster
from ...saml import logout as engine
from ...services import Services
from ..current import svc
from ..requestinfo import safe_next
from ..sso import sessions
from .respond import received, respond, session_id

# Where a browser with an ended session's cookie is not sent to its pending SAML logouts
# first: the SAML logout endpoints themselves, and files.
_NOT_INTERRUPTED = ("/saml/slo", "/saml/logout", "/static/")


def listen(services: Services) -> None:
    """Sessions ended elsewhere reach their SAML SPs; SOAP goes through the outbound guard
    (https only, no private addresses unless [outbound] allows them, bounded time and size)."""
    engine.listen(services, poster(services))


def send_pending_logouts() -> Any:
    """Before any page a browser loads: if its session was ended elsewhere and SAML SPs of it
    still wait for a LogoutRequest, go through them first (one store read, only for a cookie
    whose session is gone)."""
    sid = session_id()
    if request.method != "GET" or not sid or request.path.startswith(_NOT_INTERRUPTED):
        return None
    if sessions().peek(sid) is not None or not engine.has_pending_logout(svc(), sid):
        return None
    return redirect(url_for("saml.pending_logout", then=request.full_path.rstrip("?")), 303)


def pending_logout():
    # A target on this site only, through the one check every return parameter takes
    # (``safe_next``: no "//host", no "\\", no tab or newline a browser would drop).
    then = safe_next(request.args.get("then")) or "/"
    return respond(engine.pending_logout(svc(), session_id(), then))


def slo():
    field = "SAMLRequest" if "SAMLRequest" in request.values else "SAMLResponse"
    return respond(engine.slo(svc(), received(field), field, session_id(), sessions()))


def logout():
    if request.method == "GET":
        return respond(engine.logout_prompt(svc(), session_id(), sessions()))
    token = request.form.get("token", "")
    return respond(engine.logout(svc(), token, session_id(), sessions()))
