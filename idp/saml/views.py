"""SAML 2.0 web endpoints: metadata, Web SSO (saml-profiles 4.1), Single Logout (4.4).

Inbound requests pass the checks of ``_check_authn_request`` in order; any failure before
the ACS URL is trusted gives an error page (never a message to an unverified URL), failures
after it a SAML error status to that ACS. Nothing is written (replay cache, sessions) until
every check passed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, g, make_response, redirect, render_template, request
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import NameID
from saml2.samlp import STATUS_PARTIAL_LOGOUT, STATUS_SUCCESS, Status, StatusCode
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from ..core.authn import AuthnRequest, AuthnResult, session_satisfies
from ..errors import new_reference
from ..sso.sessions import AUTHREQ_TTL, COOKIE, SessionManager, session_manager
from ..sso.stepup import required_acr_for
from ..storage.models import User
from ..storage.userview import UserView, user_view
from ..web.i18n import locale_hints
from ..web.kept import render_kept
from .acr import NoAuthnContext, class_ref_for, wanted_acr
from .authnrequest import AuthnRequestFields, from_pysaml2, read_unsigned
from .bindings import (
    RedirectSignatureError,
    has_redirect_signature,
    redirect_url,
    verify_redirect_signature,
)
from .engine import SamlIdp, SpInfo, b64, saml_idp
from .inbound import (
    BadMessage,
    Inbound,
    check_signature_algorithms,
    decode_post,
    decode_redirect,
    inspect,
    utc_instant,
)
from .registry import FORMAT_NAMES, NAME_ID_FORMATS, location_problem
from .response import Statement
from .subject import NameIdUnavailable, issue_name_id, release_filter, user_attributes

bp = Blueprint("saml", __name__)
log = logging.getLogger("idp.saml")

ST_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
ST_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
ST_NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
ST_NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
ST_INVALID_NAMEID = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"
ST_REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
MAX_RELAY_STATE = 1024
SLO_TTL = 600


@bp.record_once
def _exempt_from_csrf(state) -> None:
    """SAML messages are cross-site POSTs by design; they carry their own integrity checks."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


def _idp() -> SamlIdp:
    from ..app import services

    return saml_idp(services())


def _svc():
    from ..app import services

    return services()


def _sessions() -> SessionManager:
    return session_manager(_svc())


def _current(mgr: SessionManager) -> AuthnResult | None:
    """The browser's SSO session (its cookie), idle timer refreshed."""
    return mgr.current_by_sid(request.cookies.get(COOKIE))


def _clear_cookie(mgr: SessionManager, resp: Response) -> None:
    resp.delete_cookie(COOKIE, **mgr.cookie_attributes())


def _error_page(code: int, message: str, cause: str | None = None) -> tuple[str, int]:
    ref = new_reference()
    log.info(
        "saml request refused: %s",
        cause or message,
        extra={"reference": ref, "request_id": g.get("request_id")},
    )
    title = "The sign-in request was refused" if code < 500 else "Something went wrong"
    return render_template(
        "error.html", code=code, title=title, message=message, reference=ref
    ), code


def _unsafe_location(sp: SpInfo, url: str) -> str | None:
    """Why this SP endpoint must not be rendered or redirected to (``location_problem``):
    checked again here, for rows that did not come through the registry's import checks."""
    return location_problem(url, bool(sp.settings.get("allow_http")))


def _refuse_location(sp: SpInfo, url: str, problem: str) -> Response:
    # A Response (not a tuple): a logout clears the session cookie on it.
    return make_response(
        _error_page(
            400,
            "The address of this application is not acceptable, so nothing was sent to it. "
            "Please tell its administrator.",
            f"SP {sp.entity_id} endpoint {url[:200]!r} {problem}",
        )
    )


def _post_form(sp: SpInfo, action: str, field: str, xml: str, relay_state: str | None) -> Response:
    problem = _unsafe_location(sp, action)
    if problem:
        return _refuse_location(sp, action, problem)
    values = {"action": action, "field": field, "value": b64(xml), "relay_state": relay_state}
    resp = Response(render_kept("saml_post.html", values, dict), mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


# --- metadata ------------------------------------------------------------------------------------


@bp.get("/saml/metadata")
def metadata() -> Response:
    xml = _idp().metadata()
    resp = Response(xml, mimetype="application/samlmetadata+xml")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


# --- Web SSO -------------------------------------------------------------------------------------


@dataclass
class _Checked:
    sp: SpInfo
    request_id: str
    acs_url: str
    name_id_format: str | None
    acr_classes: list[str]
    comparison: str | None
    force_authn: bool
    is_passive: bool


class _StatusError(Exception):
    """A valid request we cannot satisfy: answered with a SAML status at a trusted ACS."""

    def __init__(self, checked: _Checked, status: str, message: str) -> None:
        super().__init__(message)
        self.checked = checked
        self.status = status


def _read_binding(field: str) -> tuple[str, str | None, bytes]:
    """(binding, RelayState, XML) of the message in this request."""
    if request.method == "GET":
        encoded = request.args.get(field)
        relay = request.args.get("RelayState")
        if not encoded:
            raise BadMessage(f"no {field} in the request")
        xml = decode_redirect(encoded)
        binding = BINDING_HTTP_REDIRECT
    else:
        encoded = request.form.get(field)
        relay = request.form.get("RelayState")
        if not encoded:
            raise BadMessage(f"no {field} in the request")
        xml = decode_post(encoded)
        binding = BINDING_HTTP_POST
    if relay is not None and len(relay) > MAX_RELAY_STATE:
        raise BadMessage("RelayState is too long")
    return binding, relay, xml


def _check_signature(
    idp: SamlIdp, sp: SpInfo, binding: str, field: str, xml_signed: bool, required: bool
) -> bool:
    """Verify the HTTP-Redirect query signature if there is one (an XML signature was verified
    by pysaml2 already); refuse an unsigned message when one is required. True when signed."""
    if binding == BINDING_HTTP_REDIRECT and has_redirect_signature(request.query_string):
        try:
            verify_redirect_signature(
                request.query_string,
                field,
                idp.signing_certs(sp.entity_id),
                allow_sha1=bool(sp.settings.get("allow_sha1")),
            )
        except RedirectSignatureError as exc:
            raise BadMessage(f"the request signature is not valid: {exc}") from None
        return True
    if required and not xml_signed:
        raise BadMessage("this service provider must sign its requests, and this one is not signed")
    return xml_signed


def _check_destination(destination: str | None, signed: bool, endpoint: str) -> None:
    """saml-bindings 3.4.5.2 / 3.5.5.2: a signed message MUST carry a Destination, and it must
    be this endpoint (a signed message sent elsewhere must not be replayable here)."""
    if destination is None or not destination.strip():
        if signed:
            raise BadMessage(
                "the request is signed but has no Destination, which a signed SAML message "
                "must carry (saml-bindings 3.4.5.2, 3.5.5.2)"
            )
        return
    if destination.strip() != endpoint:
        raise BadMessage("the request is addressed to another destination")


def _check_time(idp: SamlIdp, msg: Inbound) -> None:
    if not msg.issue_instant:
        raise BadMessage("the request has no IssueInstant")
    issued = utc_instant(msg.issue_instant)
    if issued is None:
        raise BadMessage("the request's IssueInstant is not a valid time")
    now = idp.svc.clock.now()
    skew = idp.cfg.clock_skew
    if issued > now + skew:
        raise BadMessage("the request is issued in the future (check the clocks)")
    if issued < now - idp.cfg.request_max_age - skew:
        raise BadMessage("the request has expired")


def _remember_id(idp: SamlIdp, msg: Inbound, kind: str) -> None:
    """Refuse a message ID seen before within its validity (replay)."""
    if not msg.id or len(msg.id) > 256:
        raise BadMessage("the request has no usable ID")
    digest = hashlib.sha256(f"{msg.issuer}\n{msg.id}".encode()).hexdigest()
    ttl = idp.cfg.request_max_age + 2 * idp.cfg.clock_skew
    if not idp.svc.store.add(f"saml:{kind}:{digest}", 1, ttl):
        raise BadMessage("this request was already used (replay)")


def _choose_acs(
    idp: SamlIdp,
    sp: SpInfo,
    protocol_binding: str | None = None,
    acs_url: str | None = None,
    acs_index: int | None = None,
) -> str:
    """The ACS the response goes to: the one the request names, which must be in the SP's
    metadata, else the SP's default HTTP-POST ACS (saml-profiles 4.1.4.1)."""
    url = _acs_location(idp, sp, protocol_binding, acs_url, acs_index)
    problem = _unsafe_location(sp, url)
    if problem:
        raise BadMessage(
            "this application's AssertionConsumerService address is not acceptable "
            f"(it {problem}); nothing was sent to it"
        )
    return url


def _acs_location(
    idp: SamlIdp,
    sp: SpInfo,
    protocol_binding: str | None,
    acs_url: str | None,
    acs_index: int | None,
) -> str:
    endpoints = idp.acs_endpoints(sp)
    posts = [e for e in endpoints if e.get("binding") == BINDING_HTTP_POST]
    if protocol_binding and protocol_binding != BINDING_HTTP_POST:
        raise BadMessage("only the HTTP-POST binding is offered for responses")
    if acs_url:
        url = acs_url.strip()
        if not any(e.get("location") == url for e in posts):
            raise BadMessage(
                "the AssertionConsumerServiceURL is not in the service provider's metadata"
            )
        return url
    if acs_index is not None:
        for e in posts:
            if _as_index(e.get("index")) == acs_index:
                return e["location"]
        raise BadMessage(
            "the AssertionConsumerServiceIndex is not in the service provider's metadata"
        )
    if not posts:
        raise BadMessage("the service provider has no HTTP-POST AssertionConsumerService")
    default = [e for e in posts if str(e.get("is_default", "")).lower() == "true"]
    return (default or posts)[0]["location"]


def _as_index(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _parse_from_sp(idp: SamlIdp, msg: Inbound, tag: str, kind: str, what: str):
    """The first checks of every inbound request: its type, an issuer we know, and pysaml2's
    parse (which verifies an XML signature). Returns (SP, parsed message) or raises BadMessage."""
    sp = _known_sender(idp, msg, tag, kind)
    if msg.has_signature and msg.root is not None:
        check_signature_algorithms(msg.root, allow_sha1=bool(sp.settings.get("allow_sha1")))
    server = idp.engine().server
    parse = server.parse_authn_request if tag == "AuthnRequest" else server.parse_logout_request
    try:
        parsed = parse(b64(msg.xml.decode()), BINDING_HTTP_POST)
    except Exception as exc:  # pysaml2 raises many types for bad input; all mean "refused"
        raise BadMessage(f"{what} is not valid ({type(exc).__name__})") from None
    if parsed is None:
        raise BadMessage(f"{what} is not valid")
    return sp, parsed.message


def _known_sender(idp: SamlIdp, msg: Inbound, tag: str, kind: str) -> SpInfo:
    if msg.root_tag != tag:
        raise BadMessage(f"the message is not {kind}")
    sp = idp.sp(msg.issuer)
    if sp is None:
        raise BadMessage("the request comes from an unknown service provider")
    return sp


def _authn_request_fields(idp: SamlIdp, msg: Inbound) -> tuple[SpInfo, AuthnRequestFields]:
    """An unsigned request is read from the tree ``inspect`` checked; one with an XML
    signature goes through pysaml2, which verifies it (``idp.saml.authnrequest``)."""
    if msg.root is not None and not msg.has_signature:
        sp = _known_sender(idp, msg, "AuthnRequest", "an AuthnRequest")
        return sp, read_unsigned(msg.root)
    sp, req = _parse_from_sp(idp, msg, "AuthnRequest", "an AuthnRequest", "the request")
    return sp, from_pysaml2(req)


def _check_authn_request(idp: SamlIdp, binding: str, msg: Inbound) -> _Checked:
    """The validation pipeline for an AuthnRequest, in order."""
    sp, req = _authn_request_fields(idp, msg)
    if req.id != msg.id or req.issuer != sp.entity_id:
        raise BadMessage("the request is not consistent")
    signed = _check_signature(
        idp, sp, binding, "SAMLRequest", req.signed, idp.sp_wants_signed_requests(sp)
    )
    _check_time(idp, msg)
    _check_destination(req.destination, signed, idp.sso_url)
    acs_url = _choose_acs(idp, sp, req.protocol_binding, req.acs_url, req.acs_index)
    checked = _Checked(
        sp=sp,
        request_id=req.id,
        acs_url=acs_url,
        name_id_format=None,
        acr_classes=[],
        comparison=None,
        force_authn=req.force_authn,
        is_passive=req.is_passive,
    )
    fmt = req.name_id_format
    if fmt and fmt != NAME_ID_FORMATS["unspecified"]:
        short = FORMAT_NAMES.get(fmt.strip())
        if short is None:
            raise _StatusError(
                checked, ST_INVALID_NAMEID, "the requested NameID format is not offered"
            )
        checked.name_id_format = short
    if req.has_requested_context:
        checked.acr_classes = req.acr_classes
        checked.comparison = req.comparison
        try:
            wanted_acr(checked.acr_classes, checked.comparison)
        except NoAuthnContext as exc:
            raise _StatusError(checked, ST_NO_AUTHN_CONTEXT, str(exc)) from None
    _remember_id(idp, msg, "authn")
    return checked


@bp.route("/saml/sso", methods=["GET", "POST"])
def sso():
    idp = _idp()
    try:
        binding, relay, xml = _read_binding("SAMLRequest")
        msg = inspect(xml)
        checked = _check_authn_request(idp, binding, msg)
    except BadMessage as exc:
        return _error_page(400, str(exc))
    except _StatusError as exc:
        return _status_to_acs(idp, exc.checked, exc.status, str(exc), _relay_state())
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
    return _authenticate(idp, areq, checked)


def _relay_state() -> str | None:
    relay = request.values.get("RelayState")
    return relay if relay and len(relay) <= MAX_RELAY_STATE else None


def _with_mfa_policy(areq: AuthnRequest, db: Any, user: User | UserView | None) -> AuthnRequest:
    """An MFA policy for this user at this SP (idp.sso.stepup) raises the bar, so a
    single-factor session does not answer the SP: the login steps up instead."""
    if user is not None:
        for acr in required_acr_for(_svc(), db, user, areq):
            if acr not in areq.acr_values:
                areq.acr_values.append(acr)
    return areq


def _authenticate(idp: SamlIdp, areq: AuthnRequest, checked: _Checked | None):
    mgr = _sessions()
    current = _current(mgr)
    if current is not None:
        # One database session for the policy check and, when the SSO session answers the
        # request, the subject of the response.
        with idp.svc.sessions.begin() as db:
            user = _user(db, current)
            _with_mfa_policy(areq, db, user)
            subject = None
            if session_satisfies(current, areq, idp.svc.clock.now()):
                subject = _subject(idp, areq.params, current, db, user)
        if subject is not None:
            return _respond(idp, areq.params, current, subject)
    if areq.is_passive and checked is not None:
        return _status_to_acs(
            idp, checked, ST_NO_PASSIVE, "the user is not signed in", areq.params["relay_state"]
        )
    # The login sends the browser to resume_url, which must name the request it resumes.
    areq.resume_url = "/saml/resume?r={rid}"
    rid = mgr.save_request(areq)
    return redirect(f"/login?r={rid}")


def _user(db: Any, result: AuthnResult) -> UserView | None:
    """The signed-in user, read-only: a SAML response only reads (idp.storage.userview)."""
    return user_view(db, result.user_uuid)


@bp.get("/saml/resume")
def resume():
    idp = _idp()
    rid = request.args.get("r", "")
    mgr = _sessions()
    areq = mgr.finish_request(rid) if rid and len(rid) <= 64 else None
    if areq is None or areq.protocol != "saml":
        return _error_page(400, "This sign-in request is unknown or was already completed.")
    current = _current(mgr)
    failed = "The sign-in did not complete. Start again from the application."
    if current is None:
        return _error_page(400, failed)
    now = idp.svc.clock.now()
    with idp.svc.sessions.begin() as db:
        user = _user(db, current)
        wanted = _with_mfa_policy(_without_fresh_login(areq), db, user)
        if not session_satisfies(current, wanted, now):
            return _error_page(400, failed)
        if areq.force_authn and now - current.auth_time > AUTHREQ_TTL:
            return _error_page(400, failed)
        subject = _subject(idp, areq.params, current, db, user)
    return _respond(idp, areq.params, current, subject)


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
    idp: SamlIdp, checked: _Checked, status: str, message: str, relay_state: str | None
) -> Response:
    xml = idp.error_response(
        checked.request_id,
        checked.acs_url,
        ST_RESPONDER if status == ST_NO_PASSIVE else ST_REQUESTER,
        status,
        message,
        checked.sp,
    )
    return _post_form(checked.sp, checked.acs_url, "SAMLResponse", xml, relay_state)


@dataclass
class _Subject:
    """Who a response is about, read in the request's database session."""

    sp: SpInfo
    name_id: Any  # IssuedNameId
    attributes: list[Any]


def _subject(
    idp: SamlIdp, params: dict[str, Any], result: AuthnResult, db: Any, user: UserView | None
) -> _Subject | Response | tuple[str, int]:
    """The SP, NameID and attributes for a response, or the answer that refuses it."""
    sp = idp.sp(params["sp"])
    if sp is None:
        return _error_page(400, "The application is no longer registered.")
    fmt = _choose_format(idp, sp, params.get("name_id_format"))
    checked = _Checked(sp, params.get("request_id"), params["acs_url"], fmt, [], None, False, False)
    relay = params.get("relay_state")
    if user is None or user.status != "active":
        return _status_to_acs(idp, checked, ST_REQUEST_DENIED, "the account is not active", relay)
    earlier = _sessions().relying_parties(result.sid).get(f"saml:{sp.entity_id}") or {}
    try:
        nid = issue_name_id(db, user, fmt, idp.entity_id, sp.entity_id, earlier.get("name_id"))
    except NameIdUnavailable as exc:
        return _status_to_acs(idp, checked, ST_INVALID_NAMEID, str(exc), relay)
    attrs = release_filter(
        user_attributes(db, user, sp.entity_id, idp.svc.clock.utcnow()),
        sp.settings.get("attributes"),
    )
    # The POST form page is in the user's language; we hold the user already, so the
    # language selector need not read the session and the user again.
    locale_hints(user_locale=user.locale or "")
    return _Subject(sp, nid, attrs)


def _respond(
    idp: SamlIdp,
    params: dict[str, Any],
    result: AuthnResult,
    subject: _Subject | Response | tuple[str, int],
):
    """The signed response for ``result`` about ``subject`` (read by the caller, whose database
    transaction is over: the session write below must not happen inside it), or the refusal
    ``_subject`` answered instead."""
    if not isinstance(subject, _Subject):
        return subject
    svc = idp.svc
    sp, nid = subject.sp, subject.name_id
    mgr = _sessions()
    key = f"saml:{sp.entity_id}"
    known = mgr.relying_parties(result.sid).get(key) or {}
    try:
        # What the session achieved, never more (saml-core 3.3.2.2.1; idp.saml.acr).
        class_ref = class_ref_for(
            result.acr, params.get("acr_classes") or [], params.get("comparison")
        )
    except NoAuthnContext as exc:
        checked = _Checked(
            sp, params.get("request_id"), params["acs_url"], None, [], None, False, False
        )
        return _status_to_acs(
            idp, checked, ST_NO_AUTHN_CONTEXT, str(exc), params.get("relay_state")
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
    return _post_form(sp, params["acs_url"], "SAMLResponse", xml, params.get("relay_state"))


@bp.get("/saml/init")
def idp_initiated():
    """IdP-initiated SSO to one SP (the app launcher's links): /saml/init?sp=<entityID>."""
    idp = _idp()
    sp = idp.sp(request.args.get("sp"))
    if sp is None:
        return _error_page(404, "This application is not registered.")
    relay = request.args.get("RelayState") or sp.settings.get("default_relay_state")
    if relay and len(relay) > MAX_RELAY_STATE:
        return _error_page(400, "RelayState is too long.")

    try:
        acs_url = _choose_acs(idp, sp)
    except BadMessage as exc:
        return _error_page(400, str(exc))
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
    return _authenticate(idp, areq, None)


# --- Single Logout -------------------------------------------------------------------------------


@bp.route("/saml/slo", methods=["GET", "POST"])
def slo():
    idp = _idp()
    field = "SAMLRequest" if "SAMLRequest" in request.values else "SAMLResponse"
    try:
        binding, relay, xml = _read_binding(field)
        msg = inspect(xml)
        if field == "SAMLRequest":
            return _logout_request(idp, binding, relay, msg)
        return _logout_response(idp, binding, relay, msg)
    except BadMessage as exc:
        return _error_page(400, str(exc))


def _logout_request(idp: SamlIdp, binding: str, relay: str | None, msg: Inbound):
    sp, req = _parse_from_sp(idp, msg, "LogoutRequest", "a LogoutRequest", "the logout request")
    signed = _check_signature(
        idp,
        sp,
        binding,
        "SAMLRequest",
        req.signature is not None,
        bool(idp.sp_setting(sp, "want_logout_signed")),
    )
    _check_time(idp, msg)
    _check_destination(req.destination, signed, idp.slo_url)
    name_id = req.name_id.text.strip() if req.name_id is not None and req.name_id.text else None
    if name_id is None:
        raise BadMessage("the logout request has no NameID")
    _remember_id(idp, msg, "logout")
    indexes = [s.text.strip() for s in req.session_index if s.text]
    mgr = _sessions()
    current = _current(mgr)
    others: list[list[Any]] = []
    ended = False
    if current is not None:
        entry = mgr.relying_parties(current.sid).get(f"saml:{sp.entity_id}")
        if (
            entry
            and entry["name_id"]["value"] == name_id
            and (not indexes or entry["session_index"] in indexes)
        ):
            record = mgr.destroy(current.sid)
            ended = True
            # destroy() has told the other protocols (OIDC back-channel logout).
            others = _other_saml_parties(record, sp.entity_id)
    state = {
        "pending": others,
        "partial": False,
        "initiator": {
            "sp": sp.entity_id,
            "request_id": req.id,
            "relay_state": relay,
            "binding": binding,
        },
    }
    resp = _continue_logout(idp, state)
    if ended:
        _clear_cookie(mgr, resp)
    return resp


def _other_saml_parties(record: dict[str, Any] | None, skip: str | None) -> list[list[Any]]:
    if not record:
        return []
    return [
        [key[5:], info]
        for key, info in record.get("rps", {}).items()
        if key.startswith("saml:") and key[5:] != skip
    ]


def _slo_location(idp: SamlIdp, sp: SpInfo) -> tuple[str, str, str] | None:
    """(binding, request location, response location) of an SP's SLO endpoint."""
    eps = idp.slo_endpoints(sp)
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        for e in eps:
            if e.get("binding") == binding:
                return binding, e["location"], e.get("response_location") or e["location"]
    return None


def _send(
    idp: SamlIdp,
    sp: SpInfo,
    binding: str,
    location: str,
    field: str,
    xml: str,
    relay: str | None,
) -> Response:
    problem = _unsafe_location(sp, location)
    if problem:
        return _refuse_location(sp, location, problem)
    if binding == BINDING_HTTP_REDIRECT:
        resp = redirect(redirect_url(location, field, xml, relay, idp.engine().signing_key))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    return _post_form(sp, location, field, xml, relay)


def _continue_logout(idp: SamlIdp, state: dict[str, Any]) -> Response:
    """Send a LogoutRequest to the next SP of the session, or finish (saml-profiles 4.4.3.3)."""
    eng = idp.engine()
    while state["pending"]:
        entity_id, info = state["pending"].pop(0)
        sp = idp.sp(entity_id)
        where = _slo_location(idp, sp) if sp else None
        if where is None:
            state["partial"] = True
            continue
        binding, location, _ = where
        problem = _unsafe_location(sp, location)
        if problem:
            # One SP with an unusable address must not stop the others' sign-out.
            log.warning("SLO to %s skipped: endpoint %s", entity_id, problem)
            state["partial"] = True
            continue
        nid = info["name_id"]
        req_id, req = eng.server.create_logout_request(
            location,
            entity_id,
            name_id=NameID(
                format=NAME_ID_FORMATS[nid["format"]],
                text=nid["value"],
                name_qualifier=nid.get("nq"),
                sp_name_qualifier=nid.get("spnq"),
            ),
            session_indexes=[info["session_index"]],
            sign=binding == BINDING_HTTP_POST,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        state["awaiting"] = {"id": req_id, "sp": entity_id}
        state_id = secrets.token_urlsafe(24)
        idp.svc.store.put(f"saml:slo:{state_id}", state, SLO_TTL)
        return _send(idp, sp, binding, location, "SAMLRequest", str(req), state_id)
    return _finish_logout(idp, state)


def _finish_logout(idp: SamlIdp, state: dict[str, Any]) -> Response:
    init = state.get("initiator")
    sp = idp.sp(init["sp"]) if init else None
    where = _slo_location(idp, sp) if sp else None
    if not init or where is None:
        return Response(
            render_template("saml_logout.html", done=True, partial=state["partial"]),
            mimetype="text/html",
        )
    binding = (
        init["binding"]
        if any(e.get("binding") == init["binding"] for e in idp.slo_endpoints(sp))
        else where[0]
    )
    location = next(
        (e.get("response_location") or e["location"])
        for e in idp.slo_endpoints(sp)
        if e.get("binding") == binding
    )
    code = StatusCode(value=STATUS_SUCCESS)
    if state["partial"]:
        code.status_code = StatusCode(value=STATUS_PARTIAL_LOGOUT)
    from saml2.samlp import LogoutResponse

    eng = idp.engine()
    resp = eng.server._status_response(
        LogoutResponse,
        eng.server._issuer(),
        Status(status_code=code),
        sign=binding == BINDING_HTTP_POST,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        in_response_to=init["request_id"],
        destination=location,
    )
    return _send(idp, sp, binding, location, "SAMLResponse", str(resp), init.get("relay_state"))


def _logout_response(idp: SamlIdp, binding: str, relay: str | None, msg: Inbound):
    if msg.root_tag != "LogoutResponse":
        raise BadMessage("the message is not a LogoutResponse")
    if not relay or len(relay) > 64:
        raise BadMessage("the logout response does not belong to a logout in progress")
    key = f"saml:slo:{relay}"
    state = idp.svc.store.get(key)
    if state is None or msg.issuer != state.get("awaiting", {}).get("sp"):
        raise BadMessage("the logout response does not belong to a logout in progress")
    sp = idp.sp(msg.issuer)
    if sp is None:
        raise BadMessage("the response comes from an unknown service provider")
    if msg.has_signature and msg.root is not None:
        check_signature_algorithms(msg.root, allow_sha1=bool(sp.settings.get("allow_sha1")))
    try:
        parsed = idp.engine().server.parse_logout_request_response(
            b64(msg.xml.decode()), BINDING_HTTP_POST
        )
    except Exception as exc:  # pysaml2 raises many types for bad input
        raise BadMessage(f"the logout response is not valid ({type(exc).__name__})") from None
    if parsed is None:
        raise BadMessage("the logout response is not valid")
    resp = parsed.response
    signed = _check_signature(
        idp,
        sp,
        binding,
        "SAMLResponse",
        resp.signature is not None,
        bool(idp.sp_setting(sp, "want_logout_signed")),
    )
    _check_destination(resp.destination, signed, idp.slo_url)
    if resp.in_response_to != state["awaiting"]["id"]:
        raise BadMessage("the logout response answers another request")
    idp.svc.store.delete(key)
    if resp.status.status_code.value != STATUS_SUCCESS:
        state["partial"] = True
    state.pop("awaiting", None)
    return _continue_logout(idp, state)


def _logout_token(sid: str) -> str:
    key = _svc().secret_key.encode()
    return hmac.new(key, f"saml-logout:{sid}".encode(), hashlib.sha256).hexdigest()


@bp.route("/saml/logout", methods=["GET", "POST"])
def logout():
    """IdP-initiated Single Logout: ends the SSO session and every SP and OIDC client in it.
    GET asks for confirmation (a link must not sign anyone out); POST does it."""
    idp = _idp()
    mgr = _sessions()
    current = _current(mgr)
    if request.method == "GET":
        if current is None:
            return Response(render_template("saml_logout.html", done=True, partial=False))
        return Response(
            render_template("saml_logout.html", done=False, token=_logout_token(current.sid))
        )
    if current is None:
        return Response(render_template("saml_logout.html", done=True, partial=False))
    if not hmac.compare_digest(request.form.get("token", ""), _logout_token(current.sid)):
        return _error_page(400, "The sign-out form has expired. Please try again.")
    record = mgr.destroy(current.sid)  # tells OIDC clients too (logout listeners)
    state = {"pending": _other_saml_parties(record, None), "partial": False, "initiator": None}
    resp = _continue_logout(idp, state)
    _clear_cookie(mgr, resp)
    return resp


def launcher_url(entity_id: str) -> str:
    """The IdP-initiated SSO link for the account page's app launcher."""
    return "/saml/init?" + urlencode({"sp": entity_id})
