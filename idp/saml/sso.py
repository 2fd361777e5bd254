"""Web SSO (saml-profiles 4.1): an AuthnRequest answered from the SSO session, or handed to the
login as a pending request and finished when the login returns; IdP-initiated SSO.

Each function takes the services, the request's plain values (``idp.saml.results.Received``,
the browser's SSO session id) and the sign-in hub's session manager, and returns an answer
from ``idp.saml.results`` for the web layer to send.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..core.authn import AuthnRequest, AuthnResult, session_satisfies
from ..services import Services
from ..sso import network
from ..sso.network import Origin
from ..sso.sessions import AUTHREQ_TTL, SessionManager
from ..sso.stepup import required_acr_for
from ..storage.models import User
from ..storage.userview import UserView, user_view
from .acr import NoAuthnContext, class_ref_for, wanted_acr
from .engine import SamlIdp, SpInfo, saml_idp
from .inbound import BadMessage, inspect
from .outbound import post_form
from .registry import FORMAT_NAMES
from .response import Statement
from .results import Answer, LoginNeeded, Received, Refused
from .subject import NameIdUnavailable, issue_name_id, release_filter, user_attributes
from .validate import (
    MAX_RELAY_STATE,
    ST_INVALID_NAMEID,
    ST_NO_AUTHN_CONTEXT,
    ST_NO_PASSIVE,
    ST_REQUEST_DENIED,
    ST_REQUESTER,
    ST_RESPONDER,
    Checked,
    StatusError,
    check_authn_request,
    choose_acs,
    error_relay_state,
    read_message,
)

# Where the login sends the browser back; ``{rid}`` becomes the pending request's id.
RESUME_URL = "/saml/resume?r={rid}"
# The error page of a refusal by network rules (translated by the web layer).
NOT_ALLOWED = "Sign-in is not allowed from your network"


def sso(
    svc: Services, received: Received, sid: str | None, mgr: SessionManager, *, origin: Origin
) -> Answer:
    """An AuthnRequest at the SingleSignOnService (HTTP-Redirect or HTTP-POST); ``origin``:
    where it came from (the SP's and the user's network rules)."""
    idp = saml_idp(svc)
    try:
        binding, relay, xml = read_message(received, "SAMLRequest")
        msg = inspect(xml)
        checked = check_authn_request(idp, binding, msg, received.query_string)
    except BadMessage as exc:
        return Refused(400, str(exc))
    except StatusError as exc:
        return _status_to_acs(idp, exc.checked, exc.status, str(exc), error_relay_state(received))
    refused = _sp_refused(svc, checked.sp.entity_id, origin)
    if refused is not None:
        return refused
    params = {
        "sp": checked.sp.entity_id,
        "request_id": checked.request_id,
        "acs_url": checked.acs_url,
        "relay_state": relay,
        "name_id_format": checked.name_id_format,
        "acr_classes": checked.acr_classes,
        "comparison": checked.comparison,
    }
    areq = AuthnRequest(
        protocol="saml",
        resume_url="",
        client_id=checked.sp.entity_id,
        client_name=checked.sp.name or checked.sp.settings.get("display_name"),
        acr_values=wanted_acr(checked.acr_classes, checked.comparison),
        force_authn=checked.force_authn,
        is_passive=checked.is_passive,
        params=params,
    )
    return _authenticate(idp, mgr, sid, areq, checked, origin)


def _sp_refused(svc: Services, entity_id: str, origin: Origin) -> Refused | None:
    """The SP's network rules: a refusal is an error page here (never a message to the SP)."""
    refusal = network.check_sp(svc, entity_id, origin.ip)
    if refusal is None:
        return None
    network.record(svc, refusal, origin.ip, request_id=origin.request_id)
    return Refused(403, NOT_ALLOWED, f"network rules of sp {entity_id}", refusal.reference)


def idp_initiated(
    svc: Services,
    sp_entity_id: str | None,
    relay_state: str | None,
    sid: str | None,
    mgr: SessionManager,
    *,
    origin: Origin,
) -> Answer:
    """IdP-initiated SSO to one SP (the app launcher's links)."""
    idp = saml_idp(svc)
    sp = idp.sp(sp_entity_id)
    if sp is None:
        return Refused(404, "This application is not registered.")
    refused = _sp_refused(svc, sp.entity_id, origin)
    if refused is not None:
        return refused
    relay = relay_state or sp.settings.get("default_relay_state")
    if relay and len(relay) > MAX_RELAY_STATE:
        return Refused(400, "RelayState is too long.")

    try:
        acs_url = choose_acs(idp, sp)
    except BadMessage as exc:
        return Refused(400, str(exc))
    params = {
        "sp": sp.entity_id,
        "request_id": None,
        "acs_url": acs_url,
        "relay_state": relay,
        "name_id_format": None,
        "acr_classes": [],
        "comparison": None,
    }
    areq = AuthnRequest(
        protocol="saml",
        resume_url="",
        client_id=sp.entity_id,
        client_name=sp.name or sp.settings.get("display_name"),
        params=params,
    )
    return _authenticate(idp, mgr, sid, areq, None, origin)


def resume(
    svc: Services, rid: str, sid: str | None, mgr: SessionManager, *, origin: Origin
) -> Answer:
    """Where the login returns: finish the pending request ``rid`` with the new session."""
    idp = saml_idp(svc)
    areq = mgr.finish_request(rid) if rid and len(rid) <= 64 else None
    if areq is None or areq.protocol != "saml":
        return Refused(400, "This sign-in request is unknown or was already completed.")
    current = mgr.current_by_sid(sid)
    failed = "The sign-in did not complete. Start again from the application."
    if current is None:
        return Refused(400, failed)
    refused = _sp_refused(svc, areq.params["sp"], origin)
    if refused is not None:
        return refused
    now = idp.svc.clock.now()
    with idp.svc.sessions.begin() as db:
        user = _user(db, current)
        wanted = _with_mfa_policy(idp, _without_fresh_login(areq), db, user)
        if not session_satisfies(current, wanted, now):
            return Refused(400, failed)
        if areq.force_authn and now - current.auth_time > AUTHREQ_TTL:
            return Refused(400, failed)
        subject = _subject(idp, mgr, areq.params, current, db, user)
    return _respond(idp, mgr, areq.params, current, subject)


def _with_mfa_policy(
    idp: SamlIdp, areq: AuthnRequest, db: Any, user: User | UserView | None
) -> AuthnRequest:
    """An MFA policy for this user at this SP (idp.sso.stepup) raises the bar, so a
    single-factor session does not answer the SP: the login steps up instead."""
    if user is not None:
        for acr in required_acr_for(idp.svc, db, user, areq):
            if acr not in areq.acr_values:
                areq.acr_values.append(acr)
    return areq


def _authenticate(
    idp: SamlIdp,
    mgr: SessionManager,
    sid: str | None,
    areq: AuthnRequest,
    checked: Checked | None,
    origin: Origin,
) -> Answer:
    current = mgr.current_by_sid(sid)
    if current is not None:
        # One database session for the policy check and, when the SSO session answers the
        # request, the subject of the response.
        with idp.svc.sessions.begin() as db:
            user = _user(db, current)
            _with_mfa_policy(idp, areq, db, user)
            subject = None
            refusal = None
            if session_satisfies(current, areq, idp.svc.clock.now()):
                # A reused session answers only from where the user's roles and groups allow.
                if user is not None:
                    refusal = network.check_user(idp.svc, db, user.id, origin.ip)
                if refusal is None:
                    subject = _subject(idp, mgr, areq.params, current, db, user)
        if refusal is not None:
            network.record(
                idp.svc, refusal, origin.ip, request_id=origin.request_id, user=current.user_uuid
            )
            return Refused(403, NOT_ALLOWED, "network rules of the user", refusal.reference)
        if subject is not None:
            return _respond(idp, mgr, areq.params, current, subject)
    if areq.is_passive and checked is not None:
        return _status_to_acs(
            idp, checked, ST_NO_PASSIVE, "the user is not signed in", areq.params["relay_state"]
        )
    # The login sends the browser to resume_url, which must name the request it resumes.
    areq.resume_url = RESUME_URL
    return LoginNeeded(mgr.save_request(areq))


def _user(db: Any, result: AuthnResult) -> UserView | None:
    """The signed-in user, read-only: a SAML response only reads (idp.storage.userview)."""
    return user_view(db, result.user_uuid)


def _without_fresh_login(areq: AuthnRequest) -> AuthnRequest:
    """After the login ran, ForceAuthn is met by the login itself; only the level is left."""
    return AuthnRequest(
        protocol=areq.protocol, resume_url=areq.resume_url, acr_values=areq.acr_values
    )


def _choose_format(idp: SamlIdp, sp: SpInfo, requested: str | None) -> str:
    if requested:
        return requested
    if sp.settings.get("name_id_format"):
        return sp.settings["name_id_format"]
    for uri in idp.sp_name_id_formats(sp):
        short = FORMAT_NAMES.get(uri)
        if short and short != "unspecified":
            return short
    return idp.cfg.default_name_id_format


def _status_to_acs(
    idp: SamlIdp,
    checked: Checked,
    status: str,
    message: str,
    relay_state: str | None,
    user_locale: str | None = None,
) -> Answer:
    xml = idp.error_response(
        checked.request_id,
        checked.acs_url,
        ST_RESPONDER if status == ST_NO_PASSIVE else ST_REQUESTER,
        status,
        message,
        checked.sp,
    )
    return post_form(checked.sp, checked.acs_url, "SAMLResponse", xml, relay_state, user_locale)


@dataclass
class _Subject:
    """Who a response is about, read in the request's database session."""

    sp: SpInfo
    name_id: Any  # IssuedNameId
    attributes: list[Any]
    # The POST form page is in the user's language; we hold the user already, so the
    # language selector need not read the session and the user again.
    user_locale: str


def _subject(
    idp: SamlIdp,
    mgr: SessionManager,
    params: dict[str, Any],
    result: AuthnResult,
    db: Any,
    user: UserView | None,
) -> _Subject | Answer:
    """The SP, NameID and attributes for a response, or the answer that refuses it."""
    sp = idp.sp(params["sp"])
    if sp is None:
        return Refused(400, "The application is no longer registered.")
    fmt = _choose_format(idp, sp, params.get("name_id_format"))
    checked = Checked(sp, params.get("request_id"), params["acs_url"], fmt, [], None, False, False)
    relay = params.get("relay_state")
    if user is None or user.status != "active":
        return _status_to_acs(idp, checked, ST_REQUEST_DENIED, "the account is not active", relay)
    earlier = mgr.relying_parties(result.sid).get(f"saml:{sp.entity_id}") or {}
    try:
        nid = issue_name_id(db, user, fmt, idp.entity_id, sp.entity_id, earlier.get("name_id"))
    except NameIdUnavailable as exc:
        return _status_to_acs(idp, checked, ST_INVALID_NAMEID, str(exc), relay)
    attrs = release_filter(
        user_attributes(db, user, sp.entity_id, idp.svc.clock.utcnow()),
        sp.settings.get("attributes"),
    )
    return _Subject(sp, nid, attrs, user.locale or "")


def _respond(
    idp: SamlIdp,
    mgr: SessionManager,
    params: dict[str, Any],
    result: AuthnResult,
    subject: _Subject | Answer,
) -> Answer:
    """The signed response for ``result`` about ``subject`` (read by the caller, whose database
    transaction is over: the session write below must not happen inside it), or the refusal
    ``_subject`` answered instead."""
    if not isinstance(subject, _Subject):
        return subject
    svc = idp.svc
    sp, nid, locale = subject.sp, subject.name_id, subject.user_locale
    key = f"saml:{sp.entity_id}"
    known = mgr.relying_parties(result.sid).get(key) or {}
    try:
        # What the session achieved, never more (saml-core 3.3.2.2.1; idp.saml.acr).
        class_ref = class_ref_for(
            result.acr, params.get("acr_classes") or [], params.get("comparison")
        )
    except NoAuthnContext as exc:
        checked = Checked(
            sp, params.get("request_id"), params["acs_url"], None, [], None, False, False
        )
        return _status_to_acs(
            idp, checked, ST_NO_AUTHN_CONTEXT, str(exc), params.get("relay_state"), locale
        )
    session_index = known.get("session_index") or "_" + secrets.token_hex(16)
    rec_end = result.auth_time + svc.settings.session.max_hours * 3600
    statement = Statement(
        auth_time=result.auth_time,
        class_ref=class_ref,
        session_index=session_index,
        not_on_or_after=rec_end,
    )
    xml = idp.authn_response(
        sp=sp,
        in_response_to=params.get("request_id"),
        acs_url=params["acs_url"],
        name_id=nid,
        statement=statement,
        attributes=subject.attributes,
    )
    entry = {"session_index": session_index, "name_id": nid.to_dict()}
    if entry != known:  # a repeat SSO to the same SP changes nothing: skip the write
        mgr.add_relying_party(result.sid, key, entry)
    return post_form(sp, params["acs_url"], "SAMLResponse", xml, params.get("relay_state"), locale)
