"""UserInfo (OIDC Core §5.3): GET and POST, bearer token in the header (RFC 6750 §2.1) or the
form body (§2.2), a DPoP-bound token as ``Authorization: DPoP`` with its proof (RFC 9449 §7);
JSON, or a signed JWT when the client registered ``userinfo_signed_response_alg``. Claims come
from the claims mapper (``claims.py``); sender constraints are checked by ``sender.py``."""

from __future__ import annotations

from sqlalchemy import select

from ..services import Services
from ..storage.models import User
from .claims import user_claims
from .clients import client_cache
from .dpop import nonce_headers
from .http import HttpRequest
from .results import BodyResult, JsonResult
from .sender import challenge, check_holder, presentation, split_authorization
from .server import engine
from .tokens import SIGNING_ALGS


def bearer_error(error: str, description: str, status: int, *, dpop: bool = False,
                 headers: dict[str, str] | None = None) -> JsonResult:
    """RFC 6750 §3, RFC 9449 §7.1: the error goes in WWW-Authenticate (and the body, for
    humans)."""
    value = challenge("" if error == "missing_token" else error, description, dpop=dpop)
    return JsonResult(status, {"error": error, "error_description": description},
                      {"WWW-Authenticate": value, "Cache-Control": "no-store", **(headers or {})})


def extract_token(req: HttpRequest) -> tuple[str, str | None, str | None]:
    """(scheme, token, error): exactly one way of sending the token (RFC 6750 §2); the scheme
    is ``bearer`` or ``dpop`` (the header only)."""
    header = req.header("Authorization")
    scheme, from_header = "bearer", None
    if header:
        split = split_authorization(header)
        if split is None:
            return scheme, None, "invalid_request"
        scheme, from_header = split
    from_body = req.post_form().get("access_token") if req.method == "POST" else None
    if from_header and from_body:
        return scheme, None, "invalid_request"
    if req.args.get("access_token"):
        return scheme, None, "invalid_request"  # tokens in URLs leak into logs (RFC 6750 §5.3)
    token = from_header or from_body
    return (scheme, token, None) if token else (scheme, None, "missing_token")


def userinfo(svc: Services, req: HttpRequest) -> JsonResult | BodyResult:
    eng = engine(svc)
    scheme, token, error = extract_token(req)
    if error == "missing_token":  # RFC 6750 §3.1: no error code when no credentials came
        return bearer_error("missing_token", "No access token was sent.", 401)
    if error:
        return bearer_error("invalid_request", "Send the access token once, in the "
                                               "Authorization header or the form body.", 400)
    claims = eng.validate_access_token(token)
    if claims is None:
        return bearer_error("invalid_token", "The access token is invalid or expired.", 401,
                            dpop=scheme == "dpop")
    refused = check_holder(svc, claims, scheme, token,
                           presentation(req, f"{eng.issuer}/oauth2/userinfo"))
    if refused is not None:
        return bearer_error(refused.error, refused.description, 401, dpop=refused.dpop,
                            headers=refused.headers)
    scopes = claims.get("scope", "").split()
    if "openid" not in scopes or claims.get("sub") == claims.get("client_id"):
        return bearer_error("insufficient_scope", "The token was not issued with the "
                                                  "openid scope.", 403)
    client = client_cache(svc).get(claims["client_id"])
    if client is None:
        return bearer_error("invalid_token", "The client is no longer registered.", 401)
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.uuid == eng.token_user(claims)))
        if user is None or not eng.account_usable(user):
            return bearer_error("invalid_token", "The user is no longer active.", 401)
        body = user_claims(
            eng, user.id, client, scopes, eng.userinfo_claims_request(claims), db=db, user=user
        )
    body["sub"] = claims["sub"]
    alg = client.setting("userinfo_signed_response_alg")
    headers = {"Cache-Control": "no-store", **(nonce_headers(svc) if scheme == "dpop" else {})}
    if alg in SIGNING_ALGS:
        body.update(iss=eng.issuer, aud=client.client_id)
        return BodyResult(200, eng.signer.sign(body, alg), "application/jwt", headers)
    return JsonResult(200, body, headers)
