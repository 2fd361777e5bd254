"""The service-provider endpoints of each ``saml`` upstream (docs/brokering.md, "Upstream SAML
IdPs"): our SP metadata (``/broker/<alias>/saml/metadata``), the assertion consumer service
(``…/saml/acs``, HTTP-POST) and the single logout service (``…/saml/sls``). Thin: the checks are
``idp.broker.saml`` / ``idp.broker.saml_logout``; the sign-in finishes in
``idp.web.broker.complete`` like every upstream's.

The ACS reads the flight behind the RelayState without taking it, has the Response judged, and
takes the flight only once the Response passed: a refused Response changes nothing (but for
the replay marker of an assertion that passed every check).

The upstream's page posts the Response to us cross-site, and our session cookie is
``SameSite=Lax``: a browser does not send it with that POST, so the flight's browser binding
could not be checked. A POST that arrives without it is bounced once: an auto-submitted form on
our own origin posts the same fields back to the ACS (with ``bounced``), and that same-site POST
carries the cookie.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    Response,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from ..broker import UpstreamError, protocol
from ..broker.saml import Refused
from ..broker.saml_logout import logout_response, upstream_logout_request
from ..broker.saml_metadata import sp_metadata
from ..broker.saml_upstream import SamlUpstreamProtocol
from ..errors import new_reference
from ..sso import broker as hub
from ..sso.broker import Flight
from ..storage.models_broker import UpstreamProvider
from .broker import complete
from .broker_start import BROWSER_KEY, refused_page
from .current import svc
from .requestinfo import audit
from .saml.respond import received, respond, session_id
from .sso import sessions

log = logging.getLogger("idp.broker")

bp = Blueprint("broker_saml", __name__)


@bp.record_once
def _exempt_from_csrf(state) -> None:
    """SAML messages are cross-site POSTs by design; they carry their own integrity checks."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


def _saml_upstream(alias: str) -> UpstreamProvider | None:
    with svc().sessions() as db:
        prov = hub.provider(db, alias)
    return prov if prov is not None and prov.kind == "saml" else None


def _refuse(alias: str, reason: str, detail: str = "") -> tuple[str, int]:
    log.info("upstream %s SAML sign-in refused: %s %s", alias, reason, detail)
    with svc().sessions.begin() as db:
        audit(db, "broker.refused", provider=alias[:64], reason=reason)
    return refused_page()


def _engine() -> SamlUpstreamProtocol:
    found = protocol("saml")
    assert isinstance(found, SamlUpstreamProtocol)
    return found


@bp.get("/broker/<alias>/saml/metadata")
def metadata(alias: str) -> Any:
    prov = _saml_upstream(alias)
    if prov is None:
        return refused_page(404)
    try:
        up = _engine().upstream(svc(), prov)
    except UpstreamError:
        return refused_page(404)
    xml = sp_metadata(
        svc(),
        alias,
        name_id_format=up.name_id_format,
        authn_requests_signed=up.signs_requests,
        want_assertions_signed=up.want_assertions_signed,
    )
    resp = Response(xml, mimetype="application/samlmetadata+xml")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.post("/broker/<alias>/saml/acs")
def acs(alias: str) -> Any:
    """The upstream's Response (saml-bindings 3.5, HTTP-POST)."""
    prov = _saml_upstream(alias)
    if prov is None or not prov.enabled:
        return _refuse(alias, hub.REFUSED_DISABLED)
    relay = request.form.get("RelayState")
    secret = session.get(BROWSER_KEY)
    if secret is None and not request.form.get("bounced"):
        return _bounce(alias)
    flight = hub.peek_flight(svc(), relay, secret)
    if flight is not None and flight.provider != alias:
        flight = None
    # No flight of this browser's: only an unsolicited Response may pass (where allowed).
    judged = flight or Flight(
        state="", provider=alias, rid=None, next_url=None, browser="", nonce="", verifier=""
    )
    try:
        identity = _engine().finish(svc(), prov, judged, request.form.to_dict())
    except UpstreamError as exc:
        return _refuse(alias, exc.reason, exc.detail)
    if flight is not None and hub.take_flight(svc(), relay, secret) is None:
        return _refuse(alias, "unknown_state", "the flight was taken meanwhile")
    return complete(judged, identity)


def _bounce(alias: str) -> Response:
    fields = [(k, request.form[k]) for k in ("SAMLResponse", "RelayState") if k in request.form]
    page = render_template(
        "form_post.html",
        action=url_for("broker_saml.acs", alias=alias),
        fields=[*fields, ("bounced", "1")],
    )
    resp = Response(page, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _error_page(message: str) -> tuple[str, int]:
    reference = new_reference()
    log.info("upstream SAML logout message refused: %s", message, extra={"reference": reference})
    page = render_template(
        "error.html",
        code=400,
        title=_("The sign-out message was refused"),
        message=message,
        reference=reference,
    )
    return page, 400


@bp.route("/broker/<alias>/saml/sls", methods=["GET", "POST"])
def sls(alias: str) -> Any:
    """Single logout: the upstream's LogoutRequest (it signed the person out) or its
    LogoutResponse (to ours), by HTTP-Redirect or HTTP-POST."""
    prov = _saml_upstream(alias)
    if prov is None:
        return refused_page(404)
    try:
        up = _engine().upstream(svc(), prov)
    except UpstreamError:
        return refused_page(404)
    source = request.args if request.method == "GET" else request.form
    try:
        if source.get("SAMLRequest") is not None:
            ended, answer = upstream_logout_request(svc(), up, received("SAMLRequest"))
            with svc().sessions.begin() as db:
                audit(db, "broker.upstream_logout", provider=alias, sessions=ended)
            if answer is None:
                resp = Response(
                    render_template("logged_out.html", next_url=None), mimetype="text/html"
                )
            else:
                resp = make_response(respond(answer))
            if sessions().peek(session_id()) is None:
                sessions().clear_cookie(resp)
            return resp
        return redirect(logout_response(svc(), up, received("SAMLResponse")), 303)
    except Refused as exc:
        return _error_page(str(exc))
