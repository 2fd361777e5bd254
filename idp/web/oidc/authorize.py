"""The authorization endpoint and its resumption after the login (RFC 6749 §3.1; OIDC Core
§3.1.2); the checks live in ``idp.oidc.authorize``."""

from __future__ import annotations

from flask import Blueprint, request

from ...oidc import authorize as engine
from ..current import svc
from ..requestinfo import origin
from .respond import plain_request, session_id, to_response

bp = Blueprint("oidc_authorize", __name__)


@bp.route("/oauth2/authorize", methods=["GET", "POST"])
def authorize():
    return to_response(engine.authorize(svc(), plain_request(), session_id(), origin=origin()))


@bp.get("/oauth2/authorize/resume")
def resume():
    return to_response(
        engine.resume(svc(), request.args.get("r", ""), session_id(), origin=origin())
    )
