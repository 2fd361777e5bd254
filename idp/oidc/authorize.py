"""The authorization endpoint (RFC 6749 §3.1, §4.1; OIDC Core §3.1.2) and consent.

The request is checked by authlib's grant (client, redirect_uri, response_type, scope, PKCE,
nonce) and then by the list of small checks below, in order. An error about the client or the
redirect_uri is shown as a page and never redirected (RFC 6749 §4.1.2.1); every other error goes
back to the client with ``state`` and ``iss`` (RFC 9207), or as one JWT in the JARM response
modes (``jarm.py``). Login is handed to the hosted pages
through the protocol-neutral AuthnRequest, and the request resumes at ``/oauth2/authorize/resume``.

A pushed request (RFC 9126 §4, ``request_uri`` from /oauth2/par) or a request object (RFC 9101
§6.3, ``request``) replaces the query: only its parameters count, and ``client_id`` must match.
A ``request_uri`` the client registered (``request_uris``) is fetched as a request object.
An unknown, expired, completed or foreign pushed ``request_uri`` is refused with a page; a
refused request object goes back to a redirect_uri registered for the client, else to a page.
Parameters starting with ``_`` are the engine's own markers and are dropped from the query.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlalchemy import select

from ..core.authn import ACR_LEVELS, AuthnRequest, AuthnResult, session_satisfies
from ..errors import new_reference
from ..services import Services
from ..sso import network
from ..sso.network import Origin
from ..sso.sessions import session_manager
from ..sso.stepup import required_acr_values
from ..sso.users import account_usable, load_user
from ..storage import audit as audit_rows
from ..storage.models_oauth import Consent
from . import fapi, jar, pushed, sender
from .claims import claims_release
from .clients import OAuthClient, client_cache
from .http import HttpRequest, Values
from .jarm import JWT_MODES, JarmUnavailable, Responder, responder
from .jarm import respond as jarm_respond
from .results import ConsentPrompt, ErrorPage, FormPost, Message, Redirect, Result, _
from .server import DictRequest, InvalidTargetError, Subject, engine
from .tokens import InvalidToken

log = logging.getLogger("idp.oidc.authorize")

PROMPTS = {"none", "login", "consent", "select_account"}
# Set on a request whose parameters came from a verified request object (RFC 9101).
SIGNED = "_jar"
RESPONSE_MODES = {"query", "form_post", *JWT_MODES}
# How a claim consented to one by one is remembered among the consented scopes.
CLAIM_CONSENT = "claim:"


class AuthorizationError(Exception):
    """An error to send back to the client's redirect_uri."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class _Refused(Exception):
    """An error to show to the person at the browser (never redirected)."""

    def __init__(self, message: Message, status: int = 400) -> None:
        super().__init__(message.msgid)
        self.message = message
        self.status = status


# --- responses -----------------------------------------------------------------------------------

def _respond(svc: Services, redirect_uri: str, params: dict[str, str],
             response_mode: str | None,
             jarm: Responder | None = None) -> Redirect | FormPost | ErrorPage:
    """The authorization response; ``jarm``: set for the JARM modes (``*.jwt``)."""
    params = {k: v for k, v in params.items() if v is not None}
    if jarm is not None and response_mode in JWT_MODES:
        try:
            return jarm_respond(svc, jarm, redirect_uri, response_mode, params)
        except JarmUnavailable as exc:  # the key was read, yet encrypting to it failed
            return _jarm_refused(jarm.client_id, exc)
    params["iss"] = svc.settings.issuer
    if response_mode == "form_post":
        return FormPost(redirect_uri, list(params.items()))
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return Redirect(urlunsplit(parts._replace(query=urlencode(query))), 302, no_store=True)


def _jarm_responder(svc: Services, client: OAuthClient,
                    mode: str | None) -> Responder | ErrorPage | None:
    """For a JARM mode, how the response is packed; an error page when it cannot be (the
    client registered encryption and its keys cannot be had): the response is neither sent
    unencrypted nor sent at all, so nothing (no code) is issued."""
    if mode not in JWT_MODES:
        return None
    try:
        return responder(svc, client)
    except JarmUnavailable as exc:
        return _jarm_refused(client.client_id, exc)


def _jarm_refused(client_id: str, exc: JarmUnavailable) -> ErrorPage:
    log.warning("JARM response cannot be encrypted: %s", exc.reason,
                extra={"client_id": client_id})
    return error_page(_("The application's keys cannot be used to protect the answer to "
                        "this sign-in request. Contact the application's support."))


def error_page(message: Message, status: int = 400, *, back: str | None = None) -> ErrorPage:
    """A refusal page; ``back``: a verified address of the application to return to."""
    ref = new_reference()
    log.info("authorization request refused: %s", message.msgid % message.params
             if message.params else message.msgid, extra={"reference": ref})
    return ErrorPage(_("Sign-in request refused"), message, ref, status, back)


# --- the checks ----------------------------------------------------------------------------------

# RFC 8707 §2: "Multiple resource parameters MAY be used" (the authorize endpoint reads them
# with getlist; PAR and the token endpoint let them repeat too).
_REPEATABLE = ("resource",)


def _single_valued(values: Values) -> dict[str, str]:
    """Every parameter at most once (RFC 6749 §3.1), but ``resource``; each one bounded."""
    params: dict[str, str] = {}
    for key in values:
        items = values.getlist(key)
        if len(items) > 1 and key not in _REPEATABLE:
            raise _Refused(_("The parameter %(name)s was sent more than once.", name=key))
        for item in items:
            if len(item) > (jar.MAX_LENGTH if key == "request" else 4096):
                raise _Refused(_("The parameter %(name)s is too long.", name=key))
        params[key] = items[0]
    return params


def check_response_mode(params: dict[str, str]) -> None:
    mode = params.get("response_mode")
    if mode is not None and mode not in RESPONSE_MODES:
        raise AuthorizationError("invalid_request", "response_mode must be one of "
                                 + ", ".join(sorted(RESPONSE_MODES)))


def check_request_uri(params: dict[str, str]) -> None:
    # OIDC Core §6.2: a request_uri neither pushed nor registered by the client (whose
    # request objects are resolved before these checks) is refused, never ignored silently.
    if "request_uri" in params:
        raise AuthorizationError("request_uri_not_supported",
                                 "request_uri must come from the pushed authorization request "
                                 "endpoint or be one of the client's registered request_uris")


def check_pushed(svc: Services, client: OAuthClient, params: dict[str, Any]) -> None:
    """RFC 9126 §5, §6: ``oidc.require_par`` or the client's
    ``require_pushed_authorization_requests`` allows only pushed requests."""
    if pushed.LOADED not in params and (
            svc.settings.oidc.require_par
            or client.setting("require_pushed_authorization_requests", False)):
        raise AuthorizationError("invalid_request", "this client must use pushed "
                                                    "authorization requests (RFC 9126)")


def check_signed(svc: Services, client: OAuthClient, params: dict[str, Any]) -> None:
    """RFC 9101 §10.5: ``oidc.require_signed_request_object`` or the client's
    ``require_signed_request_object`` allows only requests from a signed request object."""
    if not params.get(SIGNED) and (
            svc.settings.oidc.require_signed_request_object
            or client.setting("require_signed_request_object", False)):
        raise AuthorizationError("invalid_request", "this client must send a signed "
                                                    "request object (RFC 9101)")


def check_prompt(params: dict[str, str]) -> list[str]:
    prompt = params.get("prompt", "").split()
    if any(p not in PROMPTS for p in prompt):
        raise AuthorizationError("invalid_request", "unknown prompt value")
    if "none" in prompt and len(prompt) > 1:
        raise AuthorizationError("invalid_request", "prompt=none cannot be combined")
    return prompt


def check_max_age(params: dict[str, str]) -> int | None:
    if "max_age" not in params:
        return None
    raw = params["max_age"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise AuthorizationError("invalid_request", "max_age must be a non-negative integer")
    return int(raw)


def check_claims(params: dict[str, str]) -> dict | None:
    if "claims" not in params:
        return None
    try:
        claims = json.loads(params["claims"])
    except ValueError:
        raise AuthorizationError("invalid_request", "claims is not valid JSON") from None
    if not isinstance(claims, dict) or not all(
            k in ("userinfo", "id_token") and (v is None or isinstance(v, dict))
            for k, v in claims.items()):
        raise AuthorizationError("invalid_request", "claims must be an object with "
                                                    "userinfo and/or id_token members")
    return claims


def check_resources(svc: Services, client: OAuthClient, values: list[str]) -> list[str]:
    """RFC 8707 §2: absolute URIs without a fragment, each a resource server this client may
    use (its registered ``resources`` or ``oidc.resource_servers``); else invalid_target."""
    try:
        return engine(svc).check_resources(client, values)
    except InvalidTargetError as exc:
        raise AuthorizationError("invalid_target", exc.description) from None


def check_dpop_jkt(params: dict[str, str]) -> None:
    """RFC 9449 §10: the thumbprint of the key the code will be redeemed with."""
    if not sender.check_dpop_jkt(params.get("dpop_jkt")):
        raise AuthorizationError("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint")


def _id_token_hint_sub(svc: Services, hint: str | None, client: OAuthClient) -> str | None:
    """OIDC Core §3.1.2.1: the hint must be an ID token we issued to this client (expired is
    fine); access tokens, logout tokens and other JWTs we signed are refused."""
    if not hint:
        return None
    eng = engine(svc)
    try:
        claims = eng.signer.verify_id_token(hint, eng.issuer)
    except InvalidToken:
        raise AuthorizationError("invalid_request", "id_token_hint is not a valid ID token "
                                                    "of this issuer") from None
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if client.client_id not in auds:
        raise AuthorizationError("invalid_request", "id_token_hint was not issued to this "
                                                    "client")
    return claims.get("sub")


# --- the endpoint --------------------------------------------------------------------------------

def authorize(svc: Services, req: HttpRequest, session_id: str | None, *,
              origin: Origin) -> Result:
    """The authorization endpoint, GET or POST (RFC 6749 §3.1); ``origin``: where the request
    came from (the client's and the user's network rules)."""
    values = req.values
    try:
        params: dict[str, Any] = _single_valued(values)
        resources = values.getlist("resource")
    except _Refused as exc:
        return error_page(exc.message, exc.status)
    if resources:
        params["resource_list"] = resources
    params = {k: v for k, v in params.items() if not k.startswith("_")}
    resolved = _from_request_objects(svc, params)
    if not isinstance(resolved, dict):
        return resolved
    return process(svc, resolved, session_id, origin=origin)


def _from_request_objects(svc: Services, params: dict[str, Any]) -> dict[str, Any] | Result:
    """The request's parameters: those pushed before (RFC 9126 §4), those of a verified
    request object (RFC 9101 §6.3), or the query's own; or why not."""
    uri = params.get("request_uri")
    if uri is None and "request" not in params:
        return params
    if isinstance(uri, str) and uri.startswith(pushed.PAR_URN):
        loaded = pushed.load(svc, uri, params.get("client_id"))
        if loaded is None or "request" in params:
            return error_page(_("This sign-in request has expired or was already used. "
                                "Go back to the application and start again."))
        return loaded
    client = client_cache(svc).get(params.get("client_id"))
    registered = client is not None and uri in (client.setting("request_uris") or [])
    if "request" not in params and not registered:
        return params
    try:
        if client is None:
            raise jar.RequestObjectError("unknown client")
        if "request" in params and "request_uri" in params:
            log.info("request object refused: request and request_uri are exclusive")
            raise jar.RequestObjectError("request and request_uri are exclusive")
        token = params["request"] if "request" in params else jar.fetch(svc, client, uri)
        inner = jar.verify(svc, client, token)
    except jar.RequestObjectError as exc:
        checked = check_client_and_redirect(svc, params)
        if isinstance(checked, ErrorPage):
            return checked
        return _respond(svc, checked[1], {"error": exc.error, "error_description":
                                          exc.description, "state": params.get("state")}, None)
    return dict(inner, client_id=client.client_id, **{SIGNED: True})


def resume(svc: Services, rid: str, session_id: str | None, *, origin: Origin) -> Result:
    """Back from the login: the pending request ``rid``, taken once."""
    req = session_manager(svc).finish_request(rid)
    if req is None or req.protocol != "oidc":
        return error_page(_("This sign-in request has expired or was already used. "
                            "Go back to the application and start again."))
    return process(svc, req.params, session_id, origin=origin,
                   accepted_auth_time=req.params.get("_created", 0))


def process(svc: Services, params: dict[str, Any], session_id: str | None, *, origin: Origin,
            accepted_auth_time: int | None = None, consent_given: bool = False) -> Result:
    """Answer an authorization request. ``session_id``: the browser's SSO session id (a hash
    of its cookie). ``accepted_auth_time``: set when resuming (after the login, or after
    consent): a session whose login is at least that recent is accepted without re-checking
    prompt=login / max_age, which that login has just satisfied."""
    eng = engine(svc)
    checked = check_client_and_redirect(svc, params)
    if isinstance(checked, ErrorPage):
        return checked
    _client, verified_uri = checked
    mode = params.get("response_mode")
    if mode not in RESPONSE_MODES:
        mode = None  # refused below (check_response_mode), in the default mode
    how = _jarm_responder(svc, _client, mode)
    if isinstance(how, ErrorPage):
        return how
    refusal = network.check_client(svc, _client.client_id, origin.ip)
    if refusal is not None:
        # The client and redirect_uri are verified: the refusal goes back there (RFC 6749
        # §4.1.2.1 access_denied), before any login is offered.
        network.record(svc, refusal, origin.ip, request_id=origin.request_id)
        return _respond(svc, verified_uri, {
            "error": "access_denied",
            "error_description": "sign-in from this network is not allowed for this client",
            "state": params.get("state")}, mode, how)
    if not params.get("response_type"):
        # RFC 6749 §4.1.2.1: with the client and redirect_uri verified, the other errors go back
        # to the client.
        return _respond(svc, verified_uri, {"error": "invalid_request",
                                            "error_description": "response_type is missing",
                                            "state": params.get("state")},
                        mode, how)
    oauth_req = DictRequest("GET", f"{svc.settings.issuer}/oauth2/authorize",
                            {k: v for k, v in params.items() if isinstance(v, str)})
    try:
        grant = eng.server.get_consent_grant(oauth_req, end_user=None)
    except OAuth2Error as exc:
        # The client and the redirect_uri are verified above: authlib's errors without a
        # redirect_uri of their own (unsupported_response_type) go back there too.
        return _respond(svc, exc.redirect_uri or verified_uri,
                        {"error": exc.error, "error_description": exc.description,
                         "state": params.get("state")},
                        mode, how)
    client: OAuthClient = oauth_req.client
    redirect_uri = grant.redirect_uri
    try:
        return _authorize(svc, eng, grant, oauth_req, client, redirect_uri, params,
                          session_id, accepted_auth_time, consent_given, origin, how)
    except (AuthorizationError, fapi.ProfileError) as exc:
        return _respond(svc, redirect_uri, {"error": exc.error,
                                            "error_description": exc.description,
                                            "state": params.get("state")},
                        mode, how)


def back_link(client: OAuthClient) -> str | None:
    """Where an error page may send the person back to the application: its ``client_uri``
    when that shares an origin with a registered redirect URI, else the origin of its first
    registered https (or loopback http) redirect URI. Never a URL the request brought."""
    origins = []
    for uri in client.redirect_uris:
        parts = urlsplit(uri)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in (
                "127.0.0.1", "localhost", "::1")):
            origins.append(f"{parts.scheme}://{parts.netloc}")
    home = client.meta.get("client_uri")
    if isinstance(home, str) and home:
        parts = urlsplit(home)
        if f"{parts.scheme}://{parts.netloc}" in origins:
            return home
    return origins[0] + "/" if origins else None


def check_client_and_redirect(svc: Services, params: dict[str, Any]
                              ) -> ErrorPage | tuple[OAuthClient, str]:
    """The two checks whose failure is shown as a page, never redirected (RFC 6749 §3.1.2.4,
    §4.1.2.1): a known client, and a redirect_uri registered for it (or its only one)."""
    client_id = params.get("client_id")
    if not client_id:
        return error_page(_("The sign-in request is not valid (%(error)s): %(description)s",
                            error="invalid_request", description="client_id is missing"))
    client = client_cache(svc).get(client_id)
    if client is None:
        return error_page(_("The application that sent you here is not registered with this "
                            "sign-in service."))
    uri = params.get("redirect_uri")
    if uri is None:
        uri = client.get_default_redirect_uri()
        if uri is None:
            return error_page(_("The application did not say where to return after the "
                                "sign-in (redirect_uri is missing)."), back=back_link(client))
    elif not client.check_redirect_uri(uri):
        return error_page(_("The application sent you to an address it has not registered."),
                          back=back_link(client))
    return client, uri


def check_params(svc: Services, client: OAuthClient, params: dict[str, Any]
                 ) -> tuple[list[str], int | None, dict | None, list[str], str | None]:
    """The checks after authlib's, in order; also run when a request is pushed (RFC 9126
    §2.1). Returns prompt, max_age, the claims request, resources and the hinted subject."""
    check_response_mode(params)
    check_request_uri(params)
    check_signed(svc, client, params)
    prompt = check_prompt(params)
    max_age = check_max_age(params)
    claims_request = check_claims(params)
    resources = check_resources(svc, client, params.get("resource_list") or [])
    check_dpop_jkt(params)
    hinted_sub = _id_token_hint_sub(svc, params.get("id_token_hint"), client)
    return prompt, max_age, claims_request, resources, hinted_sub


def _authorize(svc, eng, grant, oauth_req, client: OAuthClient, redirect_uri: str,
               params: dict[str, Any], session_id: str | None,
               accepted_auth_time: int | None, consent_given: bool, origin: Origin,
               how: Responder | None) -> Result:
    check_pushed(svc, client, params)
    fapi.check_authorization(client, params)
    prompt, max_age, claims_request, resources, hinted_sub = check_params(svc, client, params)

    mgr = session_manager(svc)
    now = svc.clock.now()
    result = mgr.current_by_sid(session_id)
    want = AuthnRequest(
        protocol="oidc", resume_url="", client_id=client.client_id, client_name=client.name,
        prompt=prompt, max_age=max_age, acr_values=params.get("acr_values", "").split(),
        login_hint=params.get("login_hint"), ui_locales=params.get("ui_locales", "").split(),
        idp_hint=params.get("idp_hint"))
    if result is not None:
        # An MFA policy for this user at this client (idp.sso.stepup) raises the bar: a
        # single-factor session must not answer the request; the login steps up instead.
        for acr in required_acr_values(svc, want, result.user_uuid):
            if acr not in want.acr_values:
                want.acr_values.append(acr)
    if accepted_auth_time is not None:
        ok = (result is not None and result.auth_time >= accepted_auth_time
              and ACR_LEVELS.get(result.acr, 0) >= want.wanted_acr_level())
    else:
        ok = result is not None and session_satisfies(result, want, now)
    if ok and hinted_sub is not None and eng.subject(client, result.user_uuid) != hinted_sub:
        ok = False
    if not ok:
        if "none" in prompt:
            raise AuthorizationError("login_required", "The user is not signed in.")
        return _to_login(mgr, want, params, now)

    user = _active_user(svc, result)
    if user is None:
        if "none" in prompt:
            raise AuthorizationError("login_required", "The user must sign in again.")
        return _to_login(mgr, want, params, now)
    if _user_refused(svc, user, origin):
        raise AuthorizationError("access_denied", "sign-in from this network is not allowed "
                                                  "for this user")

    scope = eng.permitted_scope(client, user.user_id, oauth_req.scope)
    oauth_req.scope = scope
    claims_request, extra_claims = claims_release(eng, client, user.user_id, scope,
                                                  claims_request)
    wanted = scope.split() + [CLAIM_CONSENT + name for name in extra_claims]
    if not consent_given and _needs_consent(svc, client, user, wanted, prompt):
        if "none" in prompt:
            raise AuthorizationError("consent_required", "The user has not consented.")
        params = dict(params, _auth_ok=result.auth_time)
        rid = mgr.save_request(AuthnRequest(protocol="oidc", resume_url="",
                                            client_id=client.client_id,
                                            client_name=client.name, params=params))
        return Redirect(f"/oauth2/consent?r={rid}", 303)

    params = dict(params, claims_parsed=claims_request, resource_list=resources, scope=scope)
    psid = result.sid  # the session id: a hash of the cookie, published as the sid claim
    oauth_req.code_context = eng.code_context(result, user, params, psid)
    if pushed.LOADED in params and not pushed.complete(svc, params[pushed.LOADED]):
        raise AuthorizationError("invalid_request", "the request_uri was used already")
    status, _, headers = grant.create_authorization_response(redirect_uri, user)
    location = dict(headers)["Location"]
    mgr.add_relying_party(result.sid, f"oidc:{client.client_id}", {
        "client_id": client.client_id, "sub": eng.subject(client, user.uuid), "sid": psid})
    query = dict(parse_qsl(urlsplit(location).query))
    return _respond(svc, redirect_uri, {"code": query["code"], "state": params.get("state")},
                    params.get("response_mode"), how)


def _to_login(mgr, want: AuthnRequest, params: dict[str, Any], now: float) -> Redirect:
    want.params = dict(params, _created=int(now))
    want.resume_url = "/oauth2/authorize/resume?r={rid}"
    rid = mgr.save_request(want)
    return Redirect(f"/login?r={rid}", 303)


def _active_user(svc, result: AuthnResult) -> Subject | None:
    with svc.sessions() as db:
        user = load_user(db, uuid=result.user_uuid)
        if user is None or not account_usable(svc, user):
            return None
        return Subject(user.id, user.uuid)


def _user_refused(svc, user: Subject, origin: Origin) -> bool:
    """Do the network rules of the user's roles and groups refuse a reused SSO session from
    the request's address? (A refusal is audited.)"""
    with svc.sessions() as db:
        refusal = network.check_user(svc, db, user.user_id, origin.ip)
    if refusal is None:
        return False
    network.record(svc, refusal, origin.ip, request_id=origin.request_id, user=user.uuid)
    return True


def _needs_consent(svc, client: OAuthClient, user: Subject, wanted: list[str],
                   prompt: list[str]) -> bool:
    """``wanted``: the scopes, and ``claim:<name>`` for each claim asked for by the claims
    parameter beyond those scopes; consent is asked again for anything not granted yet."""
    if "consent" in prompt:
        return True
    if client.first_party and svc.settings.oidc.first_party_skip_consent:
        return False
    with svc.sessions() as db:
        granted = db.scalar(select(Consent.scopes).where(Consent.user_id == user.user_id,
                                                         Consent.client_id == client.client_id))
    return not set(wanted) <= set(granted or [])


# --- consent -------------------------------------------------------------------------------------

def consent_prompt(svc: Services, rid: str, session_id: str | None,
                   ) -> ConsentPrompt | ErrorPage:
    """What the consent page for the pending request ``rid`` asks, or why it cannot."""
    eng = engine(svc)
    mgr = session_manager(svc)
    req = mgr.load_request(rid)
    result = mgr.current_by_sid(session_id)
    if req is None or req.protocol != "oidc":
        return error_page(_("This consent request has expired or was already answered. "
                            "Go back to the application and start again."))
    if result is None:
        return error_page(_("Your session has ended. Go back to the application and sign in "
                            "again."), 401)
    client = eng.server.query_client(req.client_id)
    user = _active_user(svc, result)
    if client is None or user is None:
        return error_page(_("This consent request is no longer valid."))
    scope = eng.permitted_scope(client, user.user_id, req.params.get("scope"))
    try:
        asked = check_claims(req.params)
    except AuthorizationError:
        asked = None
    extra_claims = claims_release(eng, client, user.user_id, scope, asked)[1]
    return ConsentPrompt(rid, client, user, scope.split(), extra_claims)


def answer_consent(svc: Services, prompt: ConsentPrompt, session_id: str | None,
                   approve: bool, *, origin: Origin) -> Result:
    """The user allowed or declined (the form already checked by the caller)."""
    req = session_manager(svc).finish_request(prompt.rid)
    if req is None:
        return error_page(_("This consent request was already answered."))
    client: OAuthClient = prompt.client
    if not approve:
        redirect_uri = req.params.get("redirect_uri") or client.get_default_redirect_uri()
        if not redirect_uri or not client.check_redirect_uri(redirect_uri):
            return error_page(_("You declined the request."))
        mode = req.params.get("response_mode")
        how = _jarm_responder(svc, client, mode)
        if isinstance(how, ErrorPage):
            return how
        return _respond(svc, redirect_uri, {"error": "access_denied",
                                            "error_description": "The user declined.",
                                            "state": req.params.get("state")}, mode, how)
    remember_consent(svc, prompt.user.user_id, client.client_id,
                     prompt.scopes + [CLAIM_CONSENT + name for name in prompt.claims],
                     granted_by=(prompt.user.uuid, origin))
    return process(svc, req.params, session_id, origin=origin,
                   accepted_auth_time=req.params.get("_auth_ok", 0), consent_given=True)


def list_consents(svc: Services, user) -> list[dict[str, Any]]:
    """For the account page: the clients this user consented to."""
    with svc.sessions() as db:
        rows = db.scalars(select(Consent).where(Consent.user_id == user.id)).all()
    out = []
    for row in rows:
        client = client_cache(svc).get(row.client_id)
        if client is not None:
            scopes = [s.removeprefix(CLAIM_CONSENT) for s in row.scopes]
            out.append({"key": row.client_id, "name": client.name, "scopes": scopes,
                        "logo_uri": client.shown_uri("logo_uri"),
                        "client_uri": client.shown_uri("client_uri")})
    return out


def withdraw_consent(svc: Services, user, key: str) -> None:
    """Withdrawing consent also ends what it allowed: the client's refresh tokens, offline
    ones included."""
    with svc.sessions.begin() as db:
        row = db.scalar(select(Consent).where(Consent.user_id == user.id,
                                              Consent.client_id == key))
        if row is not None:
            db.delete(row)
    engine(svc).revoke_refresh_tokens(user_id=user.id, client_id=key, offline=True)


def remember_consent(svc: Services, user_id: int, client_id: str, scopes: list[str], *,
                     granted_by: tuple[str, Origin] | None = None) -> None:
    """Add ``scopes`` to the user's consent for the client. ``granted_by`` (the user's uuid and
    where the answer came from): a ``consent.granted`` audit row in the same transaction,
    naming the scopes granted now and all the consent holds."""
    with svc.sessions.begin() as db:
        row = db.scalar(select(Consent).where(Consent.user_id == user_id,
                                              Consent.client_id == client_id))
        held = set(row.scopes) if row is not None else set()
        if row is None:
            db.add(Consent(user_id=user_id, client_id=client_id, scopes=sorted(set(scopes))))
        else:
            row.scopes = sorted(held | set(scopes))
        if granted_by is not None:
            uuid, origin = granted_by
            audit_rows.audit(db, "consent.granted", at=svc.clock.utcnow(), actor=uuid,
                             target=uuid, ip=origin.ip, request_id=origin.request_id,
                             client_id=client_id, scopes=sorted(set(scopes) - held),
                             consented=sorted(held | set(scopes)))
