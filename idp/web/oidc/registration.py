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
    """Every registration counts against the address (``[rate_limits]
    client_registration_per_address``), whether it makes a client or not: 429 with Retry-After
    once over, before the request is read."""
    refused = ratelimit.hit("client_registration")
    if refused is not None:
        return ratelimit.too_many(refused)
    return to_response(registration.register(svc(), plain_request(with_json=True)))


@bp.route("/oauth2/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str):
    return to_response(registration.manage(svc(), plain_request(with_json=True), client_id))
