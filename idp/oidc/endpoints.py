"""Back-channel endpoints: token (RFC 6749 §3.2), userinfo (OIDC Core §5.3), introspection
(RFC 7662) and revocation (RFC 7009). All answer JSON; errors are RFC 6749 §5.2 objects."""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, jsonify, request

from ..app import services
from .permissions import service_account_grants
from .server import ALL_AUTH_METHODS, engine
from .userinfo import userinfo_response

bp = Blueprint("oidc_endpoints", __name__)
log = logging.getLogger("idp.oidc.endpoints")

CONFIDENTIAL = [m for m in ALL_AUTH_METHODS if m != "none"]
# A form body larger than this is not an OAuth request.
MAX_FORM = 64 * 1024


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _precheck() -> Response | None:
    """RFC 6749 §3.2: POST with form encoding; each parameter at most once."""
    if request.content_length and request.content_length > MAX_FORM:
        return _oauth_error("invalid_request", "The request is too large.", 413)
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request",
                            "Use application/x-www-form-urlencoded.")
    for key in request.form:
        if len(request.form.getlist(key)) > 1:
            return _oauth_error("invalid_request", f"Parameter {key!r} sent more than once.")
    if request.args:
        return _oauth_error("invalid_request", "Send parameters in the body, not the URL.")
    return None


@bp.post("/oauth2/token")
def token():
    bad = _precheck()
    if bad is not None:
        return bad
    return engine(services()).server.create_token_response(request)


@bp.route("/oauth2/userinfo", methods=["GET", "POST"])
def userinfo():
    return userinfo_response(services())


def _client_and_token(endpoint: str):
    """Introspection and revocation start alike: a form POST from an authenticated confidential
    client naming a ``token``. Returns (client, token) or an error Response."""
    bad = _precheck()
    if bad is not None:
        return bad
    eng = engine(services())
    try:
        client = eng.server.authenticate_client(eng.server.create_oauth2_request(request),
                                                CONFIDENTIAL, endpoint)
    except OAuth2Error as exc:
        return eng.server.handle_error_response(None, exc)
    value = request.form.get("token")
    if not value:
        return _oauth_error("invalid_request", "Missing 'token'.")
    return client, value


@bp.post("/oauth2/introspect")
def introspect():
    got = _client_and_token("introspection")
    if isinstance(got, Response):
        return got
    client, value = got
    svc = services()
    eng = engine(svc)
    inactive = jsonify(active=False)
    inactive.headers["Cache-Control"] = "no-store"
    hint = request.form.get("token_type_hint")
    claims = None if hint == "refresh_token" else eng.validate_access_token(value)
    if claims is not None:
        if not _may_introspect(svc, client, claims.get("client_id"), claims.get("aud")):
            return inactive
        body = {"active": True, "token_type": "Bearer"}
        body.update({k: claims[k] for k in ("scope", "client_id", "sub", "iss", "exp", "iat",
                                            "aud", "jti", "auth_time", "acr", "sid")
                     if k in claims})
        resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp
    row = eng.find_refresh_token(value)
    if row is None or row.revoked or row.used_at is not None:
        return inactive
    if row.expires_at <= svc.clock.utcnow() or not _may_introspect(svc, client, row.client_id,
                                                                   None):
        return inactive
    subject = eng.load_subject(row.user_id)
    if subject is None:
        return inactive
    resp = jsonify({"active": True, "token_type": "refresh_token", "scope": row.scope,
                    "client_id": row.client_id, "sub": subject.uuid, "iss": eng.issuer,
                    "exp": int(row.expires_at.timestamp())})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _may_introspect(svc, client, token_client: str | None, aud) -> bool:
    """A client may introspect its own tokens, tokens meant for it (aud), or any token when
    its service account holds ``oauth:tokens:introspect``."""
    from ..core import rbac

    if token_client == client.client_id:
        return True
    auds = aud if isinstance(aud, list) else [aud]
    if client.client_id in auds:
        return True
    with svc.sessions() as db:
        return rbac.allows(service_account_grants(db, client.client_id),
                           "oauth:tokens:introspect")


@bp.post("/oauth2/revoke")
def revoke():
    got = _client_and_token("revocation")
    if isinstance(got, Response):
        return got
    client, value = got
    eng = engine(services())
    hint = request.form.get("token_type_hint")
    if hint not in (None, "access_token", "refresh_token"):
        return _oauth_error("unsupported_token_type", "Unknown token_type_hint.")
    # RFC 7009 §2.2: answer 200 whether or not the token was valid; only the owner revokes.
    row = eng.find_refresh_token(value) if hint != "access_token" else None
    if row is not None and row.client_id == client.client_id:
        eng.revoke_grant(row.grant_id)
    else:
        claims = eng.validate_access_token(value)
        if claims is not None and claims.get("client_id") == client.client_id:
            eng.revoke_access_token(value)
    resp = Response("", status=200)
    resp.headers["Cache-Control"] = "no-store"
    return resp
