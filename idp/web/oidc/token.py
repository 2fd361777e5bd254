"""The back-channel endpoints: token (RFC 6749 §3.2), pushed authorization requests (RFC 9126),
introspection (RFC 7662) and revocation (RFC 7009); the work is ``idp.oidc.endpoints``'s and
``idp.oidc.par``'s. The token and PAR endpoints first apply the network rules of the client
the request names (idp.sso.network)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote

from flask import Blueprint

from ... import metrics
from ...oidc import endpoints
from ...oidc.http import HttpRequest
from ...oidc.par import push
from ...sso import network
from ..current import svc
from ..netguard import refused
from ..ratelimit import client_auth_limited
from ..requestinfo import client_ip
from .respond import plain_request, to_response

bp = Blueprint("oidc_endpoints", __name__)


@bp.post("/oauth2/token")
def token():
    req = plain_request()
    refusal = network.check_client(svc(), claimed_client_id(req), client_ip())
    if refusal is not None:
        return refused(refusal)
    response = client_auth_limited(
        claimed_client_id(req), lambda: to_response(endpoints.token(svc(), req))
    )
    if response.status_code == 200:
        metrics.token_issued(req.post_form().get("grant_type") or "")
    return response


@bp.post("/oauth2/par")
def pushed_authorization_request():
    req = plain_request()
    refusal = network.check_client(svc(), claimed_client_id(req), client_ip())
    if refusal is not None:
        return refused(refusal)
    return client_auth_limited(claimed_client_id(req), lambda: to_response(push(svc(), req)))


def claimed_client_id(req: HttpRequest) -> str | None:
    """The client a token request names, before it is authenticated: HTTP Basic's user name
    (RFC 6749 §2.3.1), the ``client_id`` parameter, or a client assertion's ``sub`` (RFC 7523
    §3). Only used to pick the network rules: refusing a request that merely claims a client
    costs the real client nothing, and authentication still follows for the rest."""
    auth = req.header("Authorization")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(user) or None
    form = req.post_form()
    if form.get("client_id"):
        return form.get("client_id")
    assertion = form.get("client_assertion") or ""
    parts = assertion.split(".")
    if len(parts) == 3 and len(assertion) < 16384:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, ValueError):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub if isinstance(sub, str) else None
    return None


@bp.post("/oauth2/introspect")
def introspect():
    req = plain_request()
    return client_auth_limited(
        claimed_client_id(req), lambda: to_response(endpoints.introspect(svc(), req))
    )


@bp.post("/oauth2/revoke")
def revoke():
    req = plain_request()
    return client_auth_limited(
        claimed_client_id(req), lambda: to_response(endpoints.revoke(svc(), req))
    )
