"""The pushed authorization request endpoint, POST /oauth2/par (RFC 9126 §2).

The client authenticates exactly as at the token endpoint (every configured method; a public
client with ``none``) and pushes the whole authorization request, which is validated now with
every check that needs no browser (client, redirect_uri, response_type, scope, PKCE, nonce,
response_mode, prompt, max_age, claims, resource, id_token_hint, a request object when
``request`` is sent, RFC 9101). It is stored (``idp.oidc.pushed``) and answered with
201 ``{"request_uri", "expires_in"}``; errors are RFC 6749 §5.2 JSON. A ``request_uri`` in the
pushed body is refused (RFC 9126 §2.1). Pushes are not audited (too frequent).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from ..services import Services
from . import fapi, jar, pushed
from .authorize import SIGNED, AuthorizationError, check_client_and_redirect, check_params
from .endpoints import NO_STORE, oauth_error, precheck
from .http import HttpRequest
from .results import ErrorPage, JsonResult
from .sender import proof_key
from .server import ALL_AUTH_METHODS, DictRequest, engine

# Client authentication parameters (RFC 6749 §2.3.1, RFC 7523 §2.2): not part of the request.
_AUTH_PARAMS = ("client_secret", "client_assertion", "client_assertion_type")


def push(svc: Services, req: HttpRequest) -> JsonResult:
    bad = precheck(req, repeatable=("resource",))
    if bad is not None:
        return bad
    eng = engine(svc)
    try:
        client = eng.server.authenticate_client(eng.server.create_oauth2_request(req),
                                                ALL_AUTH_METHODS, "pushed_authorization_request")
    except OAuth2Error as exc:
        return eng.server.handle_error_response(None, exc)
    form = req.post_form()
    params: dict[str, Any] = {k: form[k] for k in form
                              if k not in _AUTH_PARAMS and k != "resource"
                              and not k.startswith("_")}
    if form.getlist("resource"):
        params["resource_list"] = form.getlist("resource")
    if "request_uri" in params:
        return oauth_error("invalid_request", "request_uri must not be pushed (RFC 9126 §2.1).")
    if params.get("client_id", client.client_id) != client.client_id:
        return oauth_error("invalid_request", "client_id is not the authenticated client.")
    if "request" in params:
        try:
            params = dict(jar.verify(svc, client, params["request"]), **{SIGNED: True})
        except jar.RequestObjectError as exc:
            return oauth_error(exc.error, exc.description)
    params["client_id"] = client.client_id
    # RFC 9449 §10.1: a proof at PAR binds the code to its key, as dpop_jkt would.
    jkt = proof_key(svc, req, "/oauth2/par")
    if isinstance(jkt, JsonResult):
        return jkt
    if jkt is not None:
        if params.get("dpop_jkt", jkt) != jkt:
            return oauth_error("invalid_dpop_proof",
                               "dpop_jkt is not the thumbprint of the DPoP proof's key.")
        params["dpop_jkt"] = jkt
    refused = _validate(svc, params)
    if refused is not None:
        return refused
    request_uri, expires_in = pushed.save(svc, client.client_id, params)
    return JsonResult(201, {"request_uri": request_uri, "expires_in": expires_in}, NO_STORE)


def _validate(svc: Services, params: dict[str, Any]) -> JsonResult | None:
    """The authorization endpoint's checks, answered as JSON instead of pages or redirects."""
    checked = check_client_and_redirect(svc, params)
    if isinstance(checked, ErrorPage):
        message = checked.message
        return oauth_error("invalid_request", message.msgid % message.params
                           if message.params else message.msgid)
    client, _ = checked
    if not params.get("response_type"):
        return oauth_error("invalid_request", "response_type is missing.")
    eng = engine(svc)
    oauth_req = DictRequest("GET", f"{eng.issuer}/oauth2/authorize",
                            {k: v for k, v in params.items() if isinstance(v, str)})
    try:
        eng.server.get_consent_grant(oauth_req, end_user=None)
        check_params(svc, client, params)
        fapi.check_push(client, params)
    except OAuth2Error as exc:
        return oauth_error(exc.error, exc.description or exc.error)
    except AuthorizationError as exc:
        return oauth_error(exc.error, exc.description)
    return None
