"""The ways from this IdP to an upstream identity provider (docs/brokering.md): the login page's
"Sign in with …" buttons (``POST /broker/start``), the ``idp_hint`` of an authorization request,
home-realm discovery (an e-mail address whose domain an upstream claims), and the upstream's
logout after ours. The answer comes back to ``idp.web.broker``.

A started sign-in is a flight (``idp.sso.broker.Flight``) bound to the pending AuthnRequest and
to this browser by a secret in its signed session cookie (``BROWSER_KEY``).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, redirect, render_template, request, session
from flask_babel import gettext as _
from flask_wtf.csrf import validate_csrf
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from ..broker import UpstreamError, protocol
from ..core.authn import AuthnRequest
from ..errors import new_reference
from ..sso import broker as hub
from ..storage.models_broker import UpstreamProvider
from .current import svc
from .requestinfo import absolute, audit, safe_next
from .sso import sessions

log = logging.getLogger("idp.broker")

bp = Blueprint("broker_start", __name__)

BROWSER_KEY = "broker_b"


def browser_secret() -> str:
    """This browser's secret binding its flights and pending links (created on first use)."""
    secret = session.get(BROWSER_KEY)
    if not secret:
        secret = session[BROWSER_KEY] = secrets.token_urlsafe(24)
    return secret


def refused_page(status: int = 403) -> tuple[str, int]:
    """The page of every refused upstream sign-in, with a reference id that is also logged
    (the reason is in the log line before it and in the ``broker.refused`` audit row)."""
    reference = new_reference()
    log.info("upstream sign-in refused (%s)", status, extra={"reference": reference})
    return render_template(
        "message.html",
        title=_("Sign-in through this provider is not possible"),
        message=_(
            "The identity provider you chose cannot be used to sign in here right now. "
            "Go back to the application and start again, or sign in another way."
        ),
        reference=reference,
    ), status


def buttons(rid: str | None) -> tuple[tuple[str, str], ...]:
    """(alias, display name) of the upstreams the login page offers for request ``rid``."""
    with svc().sessions() as db:
        if not hub.any_enabled(db):
            return ()
        req = sessions().load_request(rid) if rid else None
        return tuple((p.alias, p.display_name) for p in hub.offered(db, req))


def start(prov: UpstreamProvider, rid: str | None, next_url: str | None,
          login_hint: str | None = None) -> Response:
    """Send the browser to ``prov`` for a sign-in that answers ``rid`` (or goes to
    ``next_url``)."""
    flight = hub.new_flight(svc(), prov.alias, rid=rid, next_url=next_url,
                            browser_secret=browser_secret(), login_hint=login_hint)
    try:
        out = protocol(prov.kind).begin(svc(), prov, flight)
    except UpstreamError as exc:
        log.warning("upstream %s cannot be reached: %s", prov.alias, exc)
        with svc().sessions.begin() as db:
            audit(db, "broker.refused", provider=prov.alias, reason=exc.reason)
        return Response(*refused_page(502), mimetype="text/html")
    hub.save_flight(svc(), flight)
    if out.form is None:
        return redirect(out.url, 303)
    page = render_template("form_post.html", action=out.url, fields=list(out.form.items()))
    return Response(page, mimetype="text/html")


def _refuse(alias: str, reason: str) -> Response:
    with svc().sessions.begin() as db:
        audit(db, "broker.refused", provider=alias[:64], reason=reason)
    return Response(*refused_page(), mimetype="text/html")


def hinted(req: AuthnRequest, rid: str, next_url: str | None) -> Response | None:
    """The request's ``idp_hint`` upstream, straight away (an upstream this sign-in may not
    use is ignored: the login page shows as usual, Keycloak's ``kc_idp_hint`` does the same)."""
    if not req.idp_hint:
        return None
    with svc().sessions() as db:
        prov, _why = hub.usable(db, req, req.idp_hint)
    return start(prov, rid, next_url, req.login_hint) if prov else None


def home_realm(login: str, req: AuthnRequest | None, rid: str | None,
               next_url: str | None) -> Response | None:
    """The upstream that owns the domain of ``login``, if any: its sign-in replaces ours."""
    with svc().sessions() as db:
        if not hub.any_enabled(db):
            return None
        prov = hub.home_realm(db, req, login)
    return start(prov, rid, next_url, login.strip()) if prov else None


@bp.post("/broker/start")
def start_button():
    """A "Sign in with …" button of the login page."""
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return Response(*refused_page(400), mimetype="text/html")
    alias = request.form.get("upstream", "")
    rid = request.form.get("r") or None
    req = sessions().load_request(rid) if rid else None
    if rid and req is None:
        return _refuse(alias, "request_expired")
    with svc().sessions() as db:
        prov, why = hub.usable(db, req, alias)
    if prov is None:
        return _refuse(alias, why)
    return start(prov, rid, safe_next(request.form.get("next")))


_AFTER_LOGOUT = "broker:logout:"
AFTER_LOGOUT_TTL = 600  # seconds the upstream has to send the browser back


def upstream_logout(upstream: dict[str, Any] | None, then: str | None) -> str | None:
    """Where to send the browser to end the upstream session behind the SSO session that just
    ended (RP-initiated logout with ``id_token_hint``), or None. The upstream sends it back to
    ``/logout`` with a ``state`` that leads on to ``then`` (a checked URL), if given."""
    if not upstream:
        return None
    with svc().sessions() as db:
        prov = hub.provider(db, str(upstream.get("provider", "")))
    if prov is None or not prov.enabled:
        return None
    state = secrets.token_urlsafe(24)
    try:
        away = protocol(prov.kind).logout_url(svc(), prov, str(upstream["ref"]),
                                              absolute("login.logout"), state)
    except UpstreamError:
        return None
    if away and then:
        svc().store.put(_AFTER_LOGOUT + state, then, AFTER_LOGOUT_TTL)
    return away


def after_upstream_logout(state: str | None) -> str | None:
    """Back from the upstream's logout: where the sign-out was going (once), or None."""
    if not state or len(state) > 64:
        return None
    then = svc().store.take(_AFTER_LOGOUT + state)
    return str(then) if then else None
