"""Dynamic client registration (RFC 7591) and management (RFC 7592); the work is
``idp.oidc.registration``'s."""

from __future__ import annotations

from flask import Blueprint

from ...oidc import registration
from ..current import svc
from .respond import plain_request, to_response

bp = Blueprint("oidc_registration", __name__)


@bp.post("/oauth2/register")
def register():
    return to_response(registration.register(svc(), plain_request(with_json=True)))


@bp.route("/oauth2/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str):
    return to_response(registration.manage(svc(), plain_request(with_json=True), client_id))
