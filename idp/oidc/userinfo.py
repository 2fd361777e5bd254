"""UserInfo (OIDC Core §5.3): GET and POST, bearer token in the header (RFC 6750 §2.1) or the
form body (§2.2); JSON, or a signed JWT when the client registered
``userinfo_signed_response_alg``. Claims come from the claims mapper."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from ..services import Services
from .clients import OAuthClient
from .tokens import SIGNING_ALGS


def user_claims(svc: Services, user_id: int, client: OAuthClient, scopes: list[str],
                claims_request: dict | None) -> dict[str, Any]:
    """The user's claims released to this client for these scopes (never ``sub``). Claims
    named in the ``claims`` request are released only when their scope is one the client may
    be granted now (OIDC Core §5.5 does not widen what the client is allowed)."""
    from ..storage.claims import oidc_claims
    from .server import engine

    requestable = None
    if claims_request:
        requestable = engine(svc).permitted_scope(client, user_id, None).split()
    with svc.sessions() as db:
        return oidc_claims(db, user_id, client_id=client.client_id, scopes=scopes,
                           claims_request=claims_request, requestable_scopes=requestable or [])


def claims_release(svc: Services, client: OAuthClient, user_id: int, scope: str,
                   claims_request: dict | None) -> tuple[dict | None, list[str]]:
    """What to keep of an authorization request's ``claims`` parameter (OIDC Core §5.5), and
    the claims it asks for beyond the granted ``scope`` (which the user must consent to one by
    one). A claim is kept when a rule without a scope or of a granted scope produces it, or
    when its scope is one the client may be granted (registered ``scope``; admin/scim only
    with the user's permission); any other claim is dropped, as §5.5.1 lets the OP do."""
    if not claims_request:
        return claims_request, []
    from ..core.claims import REGISTERED_CLAIMS
    from ..storage.claims import claim_release_scopes
    from .server import engine

    names = {n for member in claims_request.values() if isinstance(member, dict)
             for n in member}
    with svc.sessions() as db:
        by_name = claim_release_scopes(db, client.client_id)
    granted = set(scope.split())
    wanted = {s for n in names for s in by_name.get(n, ()) if s is not None}
    requestable = set(engine(svc).permitted_scope(client, user_id, " ".join(sorted(wanted)))
                      .split()) if wanted else set()
    kept, beyond = set(), []
    for name in sorted(names):
        scopes = by_name.get(name, set())
        if name in REGISTERED_CLAIMS or None in scopes or scopes & granted:
            kept.add(name)  # registered claims are the token service's; the mapper skips them
        elif scopes & requestable:
            kept.add(name)
            beyond.append(name)
    filtered = {member: ({n: v for n, v in spec.items() if n in kept}
                         if isinstance(spec, dict) else spec)
                for member, spec in claims_request.items()}
    return filtered, beyond


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
    from .clients import client_cache

    client = client_cache(svc).get(claims["client_id"])
    if client is None:
        return bearer_error("invalid_token", "The client is no longer registered.", 401)
    with svc.sessions() as db:
        user = db.query(User).filter_by(uuid=claims["sub"]).one_or_none()
        if user is None or not eng.account_usable(user):
            return bearer_error("invalid_token", "The user is no longer active.", 401)
        user_id = user.id
    body = user_claims(svc, user_id, client, scopes, eng.userinfo_claims_request(claims))
    body["sub"] = claims["sub"]
    alg = client.setting("userinfo_signed_response_alg")
    if alg in SIGNING_ALGS:
        body.update(iss=eng.issuer, aud=client.client_id)
        resp = Response(eng.signer.sign(body, alg), mimetype="application/jwt")
    else:
        resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp
