"""Network rules on the web (``idp.sso.network`` checks them): the app-wide gate of the global
rules and ``/api/v1`` / ``/scim/v2``'s allow-list, run before anything else of a request, and
the answer to every refusal: the ``ip.denied`` audit row, then a human page "Sign-in is not
allowed from your network" with its reference, or the JSON / problem+json a program expects.
The console's gate (``[admin] allowed_networks``) is the console guard's first check."""

from __future__ import annotations

import json
import logging

from flask import Flask, g, jsonify, render_template, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from ..sso import network
from ..sso.network import Refusal
from .current import svc
from .requestinfo import client_ip

log = logging.getLogger("idp.network")

# The API's and SCIM's prefixes (idp.web.api.framework.PREFIX, idp.web.scim.PREFIX: those
# packages import the login pages, which import this module).
API_PREFIX = "/api/v1"
SCIM_PREFIX = "/scim/v2"
PROBLEM_TYPE = "https://idp.invalid/problems/network-not-allowed"

# Never gated: a load balancer's health probes and the files a refusal page itself loads.
_EXEMPT = ("/healthz", "/readyz", "/assets/", "/static/", "/favicon")
# Programs, not people: a JSON answer (OAuth error JSON; the API's problem+json).
_PROGRAMS = (
    "/oauth2/token",
    "/oauth2/par",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/userinfo",
    "/oauth2/register",
    "/oauth2/device",
    "/.well-known/",
    "/jwks",
)


def install(app: Flask) -> None:
    @app.before_request
    def _network_gate() -> Response | None:
        path = request.path
        if path.startswith(_EXEMPT):
            return None
        ip = client_ip()
        refusal = network.check_global(svc(), ip)
        if refusal is None and path.startswith((API_PREFIX + "/", SCIM_PREFIX + "/")):
            refusal = network.check_networks("api", svc().settings.api.allowed_networks, ip)
        return refused(refusal) if refusal is not None else None


def refused(refusal: Refusal, *, user: str | None = None) -> Response:
    """Record the refusal and answer it in the form the path's caller reads."""
    ip = client_ip()
    network.record(
        svc(), refusal, ip, request_id=g.get("request_id"), user=user, path=request.path[:200]
    )
    log.info(
        "request refused by the %s network rules",
        refusal.scope,
        extra={"reference": refusal.reference, "request_id": g.get("request_id")},
    )
    path = request.path
    if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
        body = {
            "type": PROBLEM_TYPE,
            "title": "Forbidden",
            "status": 403,
            "detail": "Requests from this network are not allowed.",
            "reference": refusal.reference,
        }
        return _json(body, "application/problem+json")
    if path.startswith(SCIM_PREFIX + "/"):
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "403",
            "detail": "Requests from this network are not allowed "
            f"(reference {refusal.reference}).",
        }
        return _json(body, "application/scim+json")
    if path.startswith(_PROGRAMS):
        # The token endpoint's errors are RFC 6749 §5.2's (400, a code of its list); the other
        # programs' paths answer 403 access_denied.
        token = path == "/oauth2/token"
        resp = jsonify(
            error="unauthorized_client" if token else "access_denied",
            error_description="requests from this network are not allowed",
            reference=refusal.reference,
        )
        resp.status_code = 400 if token else 403
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return not_allowed_page(refusal.reference)


def _json(body: dict[str, object], mimetype: str) -> Response:
    resp = Response(json.dumps(body), status=403, mimetype=mimetype)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def not_allowed_page(reference: str) -> Response:
    """The page of every refusal by network rules (the SAML endpoints' too), in the reader's
    language, with the reference that is also in the ``ip.denied`` audit row."""
    page = render_template(
        "error.html",
        code=403,
        title=_("Sign-in is not allowed from your network"),
        message=_(
            "Your organisation allows this sign-in only from certain networks. Connect "
            "from an allowed network (for example the office or the VPN) and try again."
        ),
        reference=reference,
    )
    resp = Response(page, status=403, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp
