"""The authorization endpoint (RFC 6749 §3.1, §4.1; OIDC Core §3.1.2) and consent.

The request is checked by authlib's grant (client, redirect_uri, response_type, scope, PKCE,
nonce) and then by the list of small checks below, in order. An error about the client or the
redirect_uri is shown as a page and never redirected (RFC 6749 §4.1.2.1); every other error goes
back to the client with ``state`` and ``iss`` (RFC 9207). Login is handed to the hosted pages
through the protocol-neutral AuthnRequest, and the request resumes at ``/oauth2/authorize/resume``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, redirect, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SubmitField

from ..app import services
from ..core.authn import ACR_LEVELS, AuthnRequest, AuthnResult, public_sid, session_satisfies
from ..errors import new_reference
from ..sso.sessions import COOKIE, session_manager
from ..sso.stepup import required_acr_values
from ..sso.users import account_usable, load_user
from ..storage.models_oauth import Consent
from .clients import OAuthClient
from .server import DictRequest, InvalidTargetError, Subject, engine
from .tokens import InvalidToken
from .userinfo import claims_release

bp = Blueprint("oidc_authorize", __name__)
log = logging.getLogger("idp.oidc.authorize")

PROMPTS = {"none", "login", "consent", "select_account"}
RESPONSE_MODES = {"query", "form_post"}
# Scopes in plain words for the consent page.
SCOPE_WORDS = {
    "openid": "Sign you in with your account",
    "profile": "Your name, picture, language and time zone",
    "email": "Your e-mail address",
    "phone": "Your phone number",
    "address": "Your postal address",
    "offline_access": "Keep access while you are away (until you revoke it)",
    "groups": "The groups you belong to",
    "roles": "Your roles",
    "admin": "Manage this identity provider on your behalf",
    "scim": "Read and change users and groups on your behalf",
}

# Claims asked for one by one (the claims parameter, OIDC Core §5.5) beyond the scopes, in plain
# words; a claim not listed is shown by its name.
CLAIM_WORDS = {
    "name": _l("Your full name"),
    "given_name": _l("Your first name"),
    "family_name": _l("Your last name"),
    "middle_name": _l("Your middle name"),
    "nickname": _l("Your nickname"),
    "preferred_username": _l("Your username"),
    "profile": _l("The address of your profile page"),
    "picture": _l("Your picture"),
    "website": _l("Your website"),
    "gender": _l("Your gender"),
    "birthdate": _l("Your date of birth"),
    "zoneinfo": _l("Your time zone"),
    "locale": _l("Your language"),
    "updated_at": _l("When your profile was last changed"),
    "email": _l("Your e-mail address"),
    "email_verified": _l("Whether your e-mail address is verified"),
    "phone_number": _l("Your phone number"),
    "phone_number_verified": _l("Whether your phone number is verified"),
    "address": _l("Your postal address"),
    "groups": _l("The groups you belong to"),
    "roles": _l("Your roles"),
}
# How a claim consented to one by one is remembered among the consented scopes.
CLAIM_CONSENT = "claim:"


def claim_words(name: str) -> str:
    words = CLAIM_WORDS.get(name)
    return str(words) if words is not None else _("Your “%(claim)s” information", claim=name)


class AuthorizationError(Exception):
    """An error to send back to the client's redirect_uri."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class ErrorPage(Exception):
    """An error to show to the person at the browser (never redirected)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ConsentForm(FlaskForm):
    approve = SubmitField("Allow")
    deny = SubmitField("Deny")


# --- responses -----------------------------------------------------------------------------------

def _respond(redirect_uri: str, params: dict[str, str], response_mode: str | None) -> Response:
    params = {k: v for k, v in params.items() if v is not None}
    params["iss"] = services().settings.issuer
    if response_mode == "form_post":
        resp = Response(render_template("form_post.html", action=redirect_uri,
                                        fields=params.items()))
    else:
        parts = urlsplit(redirect_uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
        resp = redirect(urlunsplit(parts._replace(query=urlencode(query))), 302)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _error_page(message: str, status: int = 400) -> Response:
    ref = new_reference()
    log.info("authorization request refused: %s", message, extra={"reference": ref})
    resp = Response(render_template("error.html", code=status, title=_("Sign-in request refused"),
                                    message=message, reference=ref), status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# --- the checks ----------------------------------------------------------------------------------

def _single_valued(values) -> dict[str, str]:
    """Every parameter at most once (RFC 6749 §3.1)."""
    params: dict[str, str] = {}
    for key in values:
        items = values.getlist(key)
        if len(items) > 1:
            raise ErrorPage(_("The parameter %(name)s was sent more than once.", name=key))
        if len(items[0]) > 4096:
            raise ErrorPage(_("The parameter %(name)s is too long.", name=key))
        params[key] = items[0]
    return params


def check_response_mode(params: dict[str, str]) -> None:
    mode = params.get("response_mode")
    if mode is not None and mode not in RESPONSE_MODES:
        raise AuthorizationError("invalid_request", "response_mode must be query or form_post")


def check_request_objects(params: dict[str, str]) -> None:
    # OIDC Core §6: allowed to refuse when not supported; never ignore silently.
    if "request" in params:
        raise AuthorizationError("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        raise AuthorizationError("request_uri_not_supported",
                                 "request_uri is not supported")


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
    if not raw.isdigit() or len(raw) > 10:
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


def check_resources(client: OAuthClient, values: list[str]) -> list[str]:
    """RFC 8707 §2: absolute URIs without a fragment, each a resource server this client may
    use (its registered ``resources`` or ``oidc.resource_servers``); else invalid_target."""
    try:
        return engine(services()).check_resources(client, values)
    except InvalidTargetError as exc:
        raise AuthorizationError("invalid_target", exc.description) from None


def _id_token_hint_sub(hint: str | None, client: OAuthClient) -> str | None:
    """OIDC Core §3.1.2.1: the hint must be an ID token we issued to this client (expired is
    fine); access tokens, logout tokens and other JWTs we signed are refused."""
    if not hint:
        return None
    eng = engine(services())
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

@bp.route("/oauth2/authorize", methods=["GET", "POST"])
def authorize():
    try:
        params = _single_valued(request.values)
        resources = request.values.getlist("resource")
    except ErrorPage as exc:
        return _error_page(str(exc), exc.status)
    if resources:
        params["resource_list"] = resources
    return process(params)


@bp.get("/oauth2/authorize/resume")
def resume():
    rid = request.args.get("r", "")
    req = session_manager(services()).finish_request(rid)
    if req is None or req.protocol != "oidc":
        return _error_page(_("This sign-in request has expired or was already used. "
                           "Go back to the application and start again."))
    return process(req.params, accepted_auth_time=req.params.get("_created", 0))


def process(params: dict[str, Any], accepted_auth_time: int | None = None,
            consent_given: bool = False) -> Response:
    """Answer an authorization request. ``accepted_auth_time``: set when resuming (after the
    login, or after consent): a session whose login is at least that recent is accepted
    without re-checking prompt=login / max_age, which that login has just satisfied."""
    svc = services()
    eng = engine(svc)
    oauth_req = DictRequest("GET", f"{svc.settings.issuer}/oauth2/authorize",
                            {k: v for k, v in params.items() if isinstance(v, str)})
    try:
        grant = eng.server.get_consent_grant(oauth_req, end_user=None)
    except OAuth2Error as exc:
        if exc.redirect_uri:
            return _respond(exc.redirect_uri, {"error": exc.error,
                                               "error_description": exc.description,
                                               "state": params.get("state")},
                            params.get("response_mode"))
        return _error_page(_page_message(exc))
    client: OAuthClient = oauth_req.client
    redirect_uri = grant.redirect_uri
    mode = params.get("response_mode")
    try:
        return _authorize(svc, eng, grant, oauth_req, client, redirect_uri, params,
                          accepted_auth_time, consent_given)
    except AuthorizationError as exc:
        return _respond(redirect_uri, {"error": exc.error, "error_description": exc.description,
                                       "state": params.get("state")},
                        mode if mode in RESPONSE_MODES else None)


def _page_message(exc: OAuth2Error) -> str:
    if exc.error == "invalid_client":
        return _("The application that sent you here is not registered with this sign-in "
                 "service.")
    if exc.error == "invalid_request" and "redirect" in (exc.description or "").lower():
        return _("The application sent you to an address it has not registered.")
    return _("The sign-in request is not valid (%(error)s): %(description)s",
             error=exc.error, description=exc.description)


def _authorize(svc, eng, grant, oauth_req, client: OAuthClient, redirect_uri: str,
               params: dict[str, Any], accepted_auth_time: int | None,
               consent_given: bool) -> Response:
    check_response_mode(params)
    check_request_objects(params)
    prompt = check_prompt(params)
    max_age = check_max_age(params)
    claims_request = check_claims(params)
    resources = check_resources(client, params.get("resource_list") or [])
    hinted_sub = _id_token_hint_sub(params.get("id_token_hint"), client)

    mgr = session_manager(svc)
    now = svc.clock.now()
    result = mgr.current_by_sid(request.cookies.get(COOKIE))
    want = AuthnRequest(
        protocol="oidc", resume_url="", client_id=client.client_id, client_name=client.name,
        prompt=prompt, max_age=max_age, acr_values=params.get("acr_values", "").split(),
        login_hint=params.get("login_hint"), ui_locales=params.get("ui_locales", "").split())
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
    if ok and hinted_sub is not None and result.user_uuid != hinted_sub:
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

    scope = eng.permitted_scope(client, user.user_id, oauth_req.scope)
    oauth_req.scope = scope
    claims_request, extra_claims = claims_release(svc, client, user.user_id, scope,
                                                  claims_request)
    wanted = scope.split() + [CLAIM_CONSENT + name for name in extra_claims]
    if not consent_given and _needs_consent(svc, client, user, wanted, prompt):
        if "none" in prompt:
            raise AuthorizationError("consent_required", "The user has not consented.")
        params = dict(params, _auth_ok=result.auth_time)
        rid = mgr.save_request(AuthnRequest(protocol="oidc", resume_url="",
                                            client_id=client.client_id,
                                            client_name=client.name, params=params))
        return redirect(f"/oauth2/consent?r={rid}", 303)

    params = dict(params, claims_parsed=claims_request, resource_list=resources, scope=scope)
    psid = public_sid(result.sid)
    oauth_req.code_context = eng.code_context(result, user, params, psid)
    status, _, headers = grant.create_authorization_response(redirect_uri, user)
    location = dict(headers)["Location"]
    mgr.add_relying_party(result.sid, f"oidc:{client.client_id}", {
        "client_id": client.client_id, "sub": user.uuid, "sid": psid})
    query = dict(parse_qsl(urlsplit(location).query))
    return _respond(redirect_uri, {"code": query["code"], "state": params.get("state")},
                    params.get("response_mode"))


def _to_login(mgr, want: AuthnRequest, params: dict[str, Any], now: float) -> Response:
    want.params = dict(params, _created=int(now))
    want.resume_url = "/oauth2/authorize/resume?r={rid}"
    rid = mgr.save_request(want)
    return redirect(f"/login?r={rid}", 303)


def _active_user(svc, result: AuthnResult) -> Subject | None:
    with svc.sessions() as db:
        user = load_user(db, uuid=result.user_uuid)
        if user is None or not account_usable(svc, user):
            return None
        return Subject(user.id, user.uuid)


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

@bp.route("/oauth2/consent", methods=["GET", "POST"])
def consent():
    svc = services()
    mgr = session_manager(svc)
    rid = request.args.get("r", "")
    req = mgr.load_request(rid)
    result = mgr.current_by_sid(request.cookies.get(COOKIE))
    if req is None or req.protocol != "oidc":
        return _error_page(_("This consent request has expired or was already answered. "
                           "Go back to the application and start again."))
    if result is None:
        return _error_page(_("Your session has ended. Go back to the application and sign in "
                           "again."), 401)
    client = engine(svc).server.query_client(req.client_id)
    user = _active_user(svc, result)
    if client is None or user is None:
        return _error_page(_("This consent request is no longer valid."))
    scope = engine(svc).permitted_scope(client, user.user_id, req.params.get("scope"))
    try:
        asked = check_claims(req.params)
    except AuthorizationError:
        asked = None
    extra_claims = claims_release(svc, client, user.user_id, scope, asked)[1]
    form = ConsentForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return _error_page(_("The form expired. Go back to the application and start again."))
        req = mgr.finish_request(rid)
        if req is None:
            return _error_page(_("This consent request was already answered."))
        if form.deny.data:
            redirect_uri = req.params.get("redirect_uri") or client.get_default_redirect_uri()
            if not redirect_uri or not client.check_redirect_uri(redirect_uri):
                return _error_page(_("You declined the request."))
            return _respond(redirect_uri, {"error": "access_denied",
                                           "error_description": "The user declined.",
                                           "state": req.params.get("state")},
                            req.params.get("response_mode"))
        remember_consent(svc, user.user_id, client.client_id,
                         scope.split() + [CLAIM_CONSENT + name for name in extra_claims])
        return process(req.params, accepted_auth_time=req.params.get("_auth_ok", 0),
                       consent_given=True)
    resp = Response(render_template(
        "consent.html", form=form, client=client, logo=client.shown_uri("logo_uri"),
        policy_uri=client.shown_uri("policy_uri"), tos_uri=client.shown_uri("tos_uri"),
        scopes=[(s, SCOPE_WORDS.get(s, s)) for s in scope.split()],
        claims=[(name, claim_words(name)) for name in extra_claims]))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.record_once
def _consent_source(state) -> None:
    from ..web.account import CONSENT_SOURCES, register_consent_source

    if (list_consents, withdraw_consent) not in CONSENT_SOURCES:
        register_consent_source(list_consents, withdraw_consent)


def list_consents(svc, user) -> list[dict[str, Any]]:
    """For the account page: the clients this user consented to."""
    from .clients import client_cache

    with svc.sessions() as db:
        rows = db.scalars(select(Consent).where(Consent.user_id == user.id)).all()
    out = []
    for row in rows:
        client = client_cache(svc).get(row.client_id)
        if client is not None:
            scopes = [s.removeprefix(CLAIM_CONSENT) for s in row.scopes]
            out.append({"key": row.client_id, "name": client.name, "scopes": scopes,
                        "logo_uri": client.shown_uri("logo_uri")})
    return out


def withdraw_consent(svc, user, key: str) -> None:
    """Withdrawing consent also ends what it allowed: the client's refresh tokens, offline
    ones included."""
    with svc.sessions.begin() as db:
        row = db.scalar(select(Consent).where(Consent.user_id == user.id,
                                              Consent.client_id == key))
        if row is not None:
            db.delete(row)
    engine(svc).revoke_refresh_tokens(user_id=user.id, client_id=key, offline=True)


def remember_consent(svc, user_id: int, client_id: str, scopes: list[str]) -> None:
    with svc.sessions.begin() as db:
        row = db.scalar(select(Consent).where(Consent.user_id == user_id,
                                              Consent.client_id == client_id))
        if row is None:
            db.add(Consent(user_id=user_id, client_id=client_id, scopes=sorted(set(scopes))))
        else:
            row.scopes = sorted(set(row.scopes) | set(scopes))
