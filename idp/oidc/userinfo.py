"""UserInfo (OIDC Core §5.3): GET and POST, bearer token in the header (RFC 6750 §2.1) or the
form body (§2.2); JSON, or a signed JWT when the client registered
``userinfo_signed_response_alg``. Claims come from the claims mapper."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from ..services import Services
from .tokens import SIGNING_ALGS


def user_claims(svc: Services, user_id: int, client_id: str, scopes: list[str],
                claims_request: dict | None) -> dict[str, Any]:
    """The user's claims released to this client for these scopes (never ``sub``)."""
    from ..storage.claims import oidc_claims

    with svc.sessions() as db:
        return oidc_claims(db, user_id, client_id=client_id, scopes=scopes,
                           claims_request=claims_request)


def bearer_error(error: str, description: str, status: int) -> Response:
    """RFC 6750 §3: the error goes in WWW-Authenticate (and the body, for humans)."""
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    value = "Bearer" if error == "missing_token" else (
        f'Bearer error="{error}", error_description="{description}"')
    resp.headers["WWW-Authenticate"] = value
    resp.headers["Cache-Control"] = "no-store"
    return resp


def extract_bearer() -> tuple[str | None, str | None]:
    """(token, error): exactly one way of sending the token (RFC 6750 §2)."""
    header = request.headers.get("Authorization", "")
    from_header = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "invalid_request"
        from_header = value.strip()
    from_body = request.form.get("access_token") if request.method == "POST" else None
    if from_header and from_body:
        return None, "invalid_request"
    if request.args.get("access_token"):
        return None, "invalid_request"  # tokens in URLs leak into logs (RFC 6750 §5.3)
    token = from_header or from_body
    return (token, None) if token else (None, "missing_token")


def userinfo_response(svc: Services) -> Response:
    from ..storage.models import User
    from .server import engine

    eng = engine(svc)
    token, error = extract_bearer()
    if error == "missing_token":  # RFC 6750 §3.1: no error code when no credentials came
        return bearer_error("missing_token", "No access token was sent.", 401)
    if error:
        return bearer_error("invalid_request", "Send the access token once, in the "
                                               "Authorization header or the form body.", 400)
    claims = eng.validate_access_token(token)
    if claims is None:
        return bearer_error("invalid_token", "The access token is invalid or expired.", 401)
    scopes = claims.get("scope", "").split()
    if "openid" not in scopes or claims.get("sub") == claims.get("client_id"):
        return bearer_error("insufficient_scope", "The token was not issued with the "
                                                  "openid scope.", 403)
    with svc.sessions() as db:
        user = db.query(User).filter_by(uuid=claims["sub"]).one_or_none()
        if user is None or not eng.account_usable(user):
            return bearer_error("invalid_token", "The user is no longer active.", 401)
        user_id = user.id
    body = user_claims(svc, user_id, claims["client_id"], scopes,
                       eng.userinfo_claims_request(claims))
    body["sub"] = claims["sub"]
    from .clients import client_cache

    client = client_cache(svc).get(claims["client_id"])
    alg = client.setting("userinfo_signed_response_alg") if client else None
    if alg in SIGNING_ALGS:
        body.update(iss=eng.issuer, aud=client.client_id)
        resp = Response(eng.signer.sign(body, alg), mimetype="application/jwt")
    else:
        resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp
