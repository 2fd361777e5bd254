"""Back-channel endpoints: token (RFC 6749 §3.2), introspection (RFC 7662) and revocation
(RFC 7009). All answer JSON; errors are RFC 6749 §5.2 objects."""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749.errors import OAuth2Error

from ..core import rbac
from ..services import Services
from .clients import OAuthClient, client_cache
from .dpop import nonce_headers
from .http import HttpRequest
from .permissions import service_account_grants
from .results import BodyResult, JsonResult
from .sender import token_request, token_type
from .server import ALL_AUTH_METHODS, engine

log = logging.getLogger("idp.oidc.endpoints")

CONFIDENTIAL = [m for m in ALL_AUTH_METHODS if m != "none"]
# A form body larger than this is not an OAuth request.
MAX_FORM = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def oauth_error(error: str, description: str, status: int = 400) -> JsonResult:
    return JsonResult(status, {"error": error, "error_description": description}, _NO_STORE)


def precheck(req: HttpRequest) -> JsonResult | None:
    """RFC 6749 §3.2: POST with form encoding; each parameter at most once."""
    if req.content_length and req.content_length > MAX_FORM:
        return oauth_error("invalid_request", "The request is too large.", 413)
    if req.content_type != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "Use application/x-www-form-urlencoded.")
    for key, values in req.form.items():
        if len(values) > 1:
            return oauth_error("invalid_request", f"Parameter {key!r} sent more than once.")
    if req.query:
        return oauth_error("invalid_request", "Send parameters in the body, not the URL.")
    return None


def token(svc: Services, req: HttpRequest) -> JsonResult:
    """The token endpoint (RFC 6749 §3.2): the DPoP proof is checked (``idp.oidc.sender``),
    then authlib runs the grant. A fresh ``DPoP-Nonce`` goes with every answer when nonces are
    required (RFC 9449 §8.2)."""
    bad = precheck(req)
    if bad is not None:
        return bad
    oauth_req = token_request(svc, req)
    if isinstance(oauth_req, JsonResult):
        return oauth_req
    result = engine(svc).server.create_token_response(oauth_req)
    result.headers.update(nonce_headers(svc))
    return result


def _client_and_token(svc: Services, req: HttpRequest,
                      endpoint: str) -> tuple[OAuthClient, str] | JsonResult:
    """Introspection and revocation start alike: a form POST from an authenticated confidential
    client naming a ``token``. Returns (client, token) or an error result."""
    bad = precheck(req)
    if bad is not None:
        return bad
    eng = engine(svc)
    try:
        client = eng.server.authenticate_client(eng.server.create_oauth2_request(req),
                                                CONFIDENTIAL, endpoint)
    except OAuth2Error as exc:
        return eng.server.handle_error_response(None, exc)
    value = req.post_form().get("token")
    if not value:
        return oauth_error("invalid_request", "Missing 'token'.")
    return client, value


def introspect(svc: Services, req: HttpRequest) -> JsonResult:
    got = _client_and_token(svc, req, "introspection")
    if isinstance(got, JsonResult):
        return got
    client, value = got
    eng = engine(svc)
    inactive = JsonResult(200, {"active": False}, _NO_STORE)
    hint = req.post_form().get("token_type_hint")
    claims = None if hint == "refresh_token" else eng.validate_access_token(value)
    if claims is not None:
        if not _may_introspect(svc, client, claims.get("client_id"), claims.get("aud")):
            return inactive
        body = {"active": True, "token_type": token_type(claims.get("cnf") or {})}
        body.update({k: claims[k] for k in ("scope", "client_id", "sub", "iss", "exp", "iat",
                                            "aud", "jti", "auth_time", "acr", "sid", "cnf",
                                            "act")
                     if k in claims})
        return JsonResult(200, body, _NO_STORE)
    row = eng.find_refresh_token(value)
    if row is None or row.revoked or row.used_at is not None:
        return inactive
    if row.expires_at <= svc.clock.utcnow() or not _may_introspect(svc, client, row.client_id,
                                                                   None):
        return inactive
    subject = eng.load_subject(row.user_id)
    if subject is None:
        return inactive
    return JsonResult(200, {"active": True, "token_type": "refresh_token", "scope": row.scope,
                            "client_id": row.client_id,
                            "sub": eng.subject(client_cache(svc).get(row.client_id),
                                               subject.uuid),
                            "iss": eng.issuer, "exp": int(row.expires_at.timestamp())},
                      _NO_STORE)


def _may_introspect(svc: Services, client: OAuthClient, token_client: str | None,
                    aud) -> bool:
    """A client may introspect its own tokens, tokens meant for it (aud), or any token when
    its service account holds ``oauth:tokens:introspect``."""
    if token_client == client.client_id:
        return True
    auds = aud if isinstance(aud, list) else [aud]
    if client.client_id in auds:
        return True
    with svc.sessions() as db:
        return rbac.allows(service_account_grants(db, client.client_id),
                           "oauth:tokens:introspect")


def revoke(svc: Services, req: HttpRequest) -> JsonResult | BodyResult:
    got = _client_and_token(svc, req, "revocation")
    if isinstance(got, JsonResult):
        return got
    client, value = got
    eng = engine(svc)
    hint = req.post_form().get("token_type_hint")
    if hint not in (None, "access_token", "refresh_token"):
        return oauth_error("unsupported_token_type", "Unknown token_type_hint.")
    # RFC 7009 §2.2: answer 200 whether or not the token was valid; only the owner revokes.
    row = eng.find_refresh_token(value) if hint != "access_token" else None
    if row is not None and row.client_id == client.client_id:
        eng.revoke_grant(row.grant_id, audit_reason="revocation", request=req)
    else:
        claims = eng.validate_access_token(value)
        if claims is not None and claims.get("client_id") == client.client_id:
            eng.revoke_access_token(value, request=req)
    return BodyResult(200, "", None, _NO_STORE)
