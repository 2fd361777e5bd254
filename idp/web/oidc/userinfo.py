"""UserInfo (OIDC Core §5.3), GET and POST; the work is ``idp.oidc.userinfo``'s."""

from __future__ import annotations

from flask import Blueprint

from ...oidc.userinfo import userinfo as engine_userinfo
from .. import ratelimit
from ..current import svc
from .respond import plain_request, to_response

bp = Blueprint("oidc_userinfo", __name__)


@bp.route("/oauth2/userinfo", methods=["GET", "POST"])
def userinfo():
    """Refused once this address sent ``[rate_limits] userinfo_per_address`` tokens that were
    refused (``invalid_token``) in the window: a token guesser, or a relying party's server
    sending dead tokens in a loop. A request without a token, an ``insufficient_scope`` and a
    DPoP nonce challenge do not count."""
    refused = ratelimit.check("userinfo")
    if refused is not None:
        return ratelimit.too_many(refused)
    resp = to_response(engine_userinfo(svc(), plain_request()))
    if resp.status_code == 401 and ratelimit.oauth_error(resp) == "invalid_token":
        ratelimit.fail("userinfo")
    return resp
