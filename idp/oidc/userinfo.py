"""UserInfo (OIDC Core §5.3): GET and POST, bearer token in the header (RFC 6750 §2.1) or the
form body (§2.2); JSON, or a signed JWT when the client registered
``userinfo_signed_response_alg``. Claims come from the claims mapper (``claims.py``)."""

from __future__ import annotations

from ..services import Services
from ..storage.models import User
from .claims import user_claims
from .clients import client_cache
from .http import HttpRequest
from .results import BodyResult, JsonResult
from .server import engine
from .tokens import SIGNING_ALGS


def bearer_error(error: str, description: str, status: int) -> JsonResult:
    """RFC 6750 §3: the error goes in WWW-Authenticate (and the body, for humans)."""
    value = "Bearer" if error == "missing_token" else (
        f'Bearer error="{error}", error_description="{description}"')
    return JsonResult(status, {"error": error, "error_description": description},
                      {"WWW-Authenticate": value, "Cache-Control": "no-store"})


def extract_bearer(req: HttpRequest) -> tuple[str | None, str | None]:
    """(token, error): exactly one way of sending the token (RFC 6750 §2)."""
    header = req.header("Authorization")
    from_header = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "invalid_request"
        from_header = value.strip()
    from_body = req.post_form().get("access_token") if req.method == "POST" else None
    if from_header and from_body:
        return None, "invalid_request"
    if req.args.get("access_token"):
        return None, "invalid_request"  # tokens in URLs leak into logs (RFC 6750 §5.3)
    token = from_header or from_body
    return (token, None) if token else (None, "missing_token")


def userinfo(svc: Services, req: HttpRequest) -> JsonResult | BodyResult:
    eng = engine(svc)
    token, error = extract_bearer(req)
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
    client = client_cache(svc).get(claims["client_id"])
    if client is None:
        return bearer_error("invalid_token", "The client is no longer registered.", 401)
    with svc.sessions() as db:
        user = db.query(User).filter_by(uuid=eng.token_user(claims)).one_or_none()
        if user is None or not eng.account_usable(user):
            return bearer_error("invalid_token", "The user is no longer active.", 401)
        user_id = user.id
    body = user_claims(eng, user_id, client, scopes, eng.userinfo_claims_request(claims))
    body["sub"] = claims["sub"]
    alg = client.setting("userinfo_signed_response_alg")
    if alg in SIGNING_ALGS:
        body.update(iss=eng.issuer, aud=client.client_id)
        return BodyResult(200, eng.signer.sign(body, alg), "application/jwt",
                          {"Cache-Control": "no-store"})
    return JsonResult(200, body, {"Cache-Control": "no-store"})
