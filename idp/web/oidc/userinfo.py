"""UserInfo (OIDC Core §5.3), GET and POST; the work is ``idp.oidc.userinfo``'s."""

from __future__ import annotations

from flask import Blueprint

from ...oidc.userinfo import userinfo as engine_userinfo
from ..current import svc
from .respond import plain_request, to_response

bp = Blueprint("oidc_userinfo", __name__)


@bp.route("/oauth2/userinfo", methods=["GET", "POST"])
def userinfo():
    return to_response(engine_userinfo(svc(), plain_request()))
