"""Dynamic client registration (RFC 7591) and management (RFC 7592); the work is
``idp.oidc.registration``'s."""

from __future__ import annotations

from flask import Blueprint

from ...oidc import registration
from .. import ratelimit
from ..current import svc
from .respond import plain_request, to_response

bp = Blueprint("oidc_registration", __name__)


@bp.post("/oauth2/register")
def register():
    """Registrations count against the address (``[rate_limits]
    client_registration_per_address``): with open registration every request, before it is
    read; else only a request whose initial access token was refused (a valid one is a
    one-time token the operator issued, so it needs no limit of its own). 429 with
    Retry-After once over."""
    if svc().settings.oidc.open_registration:
        refused = ratelimit.hit("client_registration")
        if refused is not None:
            return ratelimit.too_many(refused)
        return to_response(registration.register(svc(), plain_request(with_json=True)))
    refused = ratelimit.check("client_registration")
    if refused is not None:
        return ratelimit.too_many(refused)
    resp = to_response(registration.register(svc(), plain_request(with_json=True)))
    if resp.status_code == 401:
        ratelimit.fail("client_registration")
    return resp


@bp.route("/oauth2/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str):
    return to_response(registration.manage(svc(), plain_request(with_json=True), client_id))
