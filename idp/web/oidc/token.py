"""The back-channel endpoints: token (RFC 6749 §3.2), introspection (RFC 7662) and
revocation (RFC 7009); the work is ``idp.oidc.endpoints``'s."""

from __future__ import annotations

from flask import Blueprint

from ...oidc import endpoints
from ..current import svc
from .respond import plain_request, to_response

bp = Blueprint("oidc_endpoints", __name__)


@bp.post("/oauth2/token")
def token():
    return to_response(endpoints.token(svc(), plain_request()))


@bp.post("/oauth2/introspect")
def introspect():
    return to_response(endpoints.introspect(svc(), plain_request()))


@bp.post("/oauth2/revoke")
def revoke():
    return to_response(endpoints.revoke(svc(), plain_request()))
