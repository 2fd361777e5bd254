"""Single Logout (saml-profiles 4.4): an SP's LogoutRequest or LogoutResponse at the
SingleLogoutService, and logout started at the IdP. The IdP sends a signed LogoutRequest to
every other SAML SP of the session in turn (front channel; RelayState carries the logout
state), OIDC clients hear of it through the session manager's logout listeners, and the
initiator gets a LogoutResponse (``PartialLogout`` when an SP did not confirm).

A session ended elsewhere (an admin, "sign out everywhere", a password change: ``listen``)
reaches each SP of it as well: by a signed LogoutRequest over the SOAP binding (saml-bindings
3.2) when the SP's metadata offers a SOAP SingleLogoutService, else on the front channel the
next time that browser loads a page here (``pending_logout``: the session's pending requests
are sent in turn, then the browser goes on to the page it asked for).

Each function takes the services, the request's plain values and the sign-in hub's session
manager, and returns an answer from ``idp.saml.results``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
from saml2.samlp import STATUS_PARTIAL_LOGOUT, STATUS_SUCCESS

from ..services import Services
from ..sso.sessions import SessionManager, session_manager
from .crypto import parse_xml
from .engine import SamlIdp, SpInfo, b64, saml_idp
from .inbound import BadMessage, Inbound, check_signature_algorithms, inspect
from .outbound import send
from .results import Answer, LogoutPage, Received, Redirect, Refused, SignedOut
from .subject import IssuedNameId
from .validate import (
    check_destination,
    check_signature,
    check_time,
    parse_from_sp,
    read_message,
    remember_id,
    unsafe_location,
)

log = logging.getLogger("idp.saml")

SLO_TTL = 600
_PENDING = "saml:slo:pending:"
_SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_SOAP_ENVELOPE = (
    f'<soap11:Envelope xmlns:soap11="{_SOAP_NS}"><soap11:Body>{{}}</soap11:Body></soap11:Envelope>'
)
_SOAP_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": "http://www.oasis-open.org/committees/security",
    "Cache-Control": "no-store",
}

# POSTs ``body`` with ``headers`` to a URL and returns (status, answer body); raises on a
# refused or failed connection. The web layer passes the outbound guard (idp.oidc.fetch).
Poster = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


def slo(
    svc: Services, received: Received, field: str, sid: str | None, mgr: SessionManager
) -> Answer:
    """A LogoutRequest (``field`` "SAMLRequest") or LogoutResponse ("SAMLResponse") from an SP."""
    idp = saml_idp(svc)
    try:
        binding, relay, xml = read_message(received, field)
        msg = inspect(xml)
        if field == "SAMLRequest":
            return _logout_request(idp, mgr, sid, received, relay, msg)
        return _logout_response(idp, received, relay, msg)
    except BadMessage as exc:
        return Refused(400, str(exc))


def _logout_request(
    idp: SamlIdp,
    mgr: SessionManager,
    sid: str | None,
    received: Received,
    relay: str | None,
    msg: Inbound,
) -> Answer:
    binding = received.binding
    sp, req = parse_from_sp(idp, msg, "LogoutRequest", "a LogoutRequest", "the logout request")
    signed = check_signature(
        idp,
        sp,
        binding,
        received.query_string,
        "SAMLRequest",
        req.signature is not None,
        bool(idp.sp_setting(sp, "want_logout_signed")),
    )
    check_time(idp, msg)
    check_destination(req.destination, signed, idp.slo_url)
    name_id = req.name_id.text.strip() if req.name_id is not None and req.name_id.text else None
    if name_id is None:
        raise BadMessage("the logout request has no NameID")
    remember_id(idp, msg, "logout")
    indexes = [s.text.strip() for s in req.session_index if s.text]
    current = mgr.current_by_sid(sid)
    others: list[list[Any]] = []
    ended = False
    if current is not None:
        entry = mgr.relying_parties(current.sid).get(f"saml:{sp.entity_id}")
        if (
            entry
            and entry["name_id"]["value"] == name_id
            and (not indexes or entry["session_index"] in indexes)
        ):
            record = mgr.destroy(current.sid, handled="saml")
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
    answer = _continue_logout(idp, state)
    return SignedOut(answer) if ended else answer


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


def _continue_logout(idp: SamlIdp, state: dict[str, Any]) -> Answer:
    """Send a LogoutRequest to the next SP of the session, or finish (saml-profiles 4.4.3.3)."""
    while state["pending"]:
        entity_id, info = state["pending"].pop(0)
        sp = idp.sp(entity_id)
        where = _slo_location(idp, sp) if sp else None
        if where is None:
            state["partial"] = True
            continue
        binding, location, _ = where
        problem = unsafe_location(sp, location)
        if problem:
            # One SP with an unusable address must not stop the others' sign-out.
            log.warning("SLO to %s skipped: endpoint %s", entity_id, problem)
            state["partial"] = True
            continue
        nid = info["name_id"]
        req_id, req = idp.logout_request(
            location,
            IssuedNameId(nid["format"], nid["value"], nid.get("nq"), nid.get("spnq")),
            info["session_index"],
            sign=binding == BINDING_HTTP_POST,
        )
        state["awaiting"] = {"id": req_id, "sp": entity_id}
        state_id = secrets.token_urlsafe(24)
        idp.svc.store.put(f"saml:slo:{state_id}", state, SLO_TTL)
        return send(idp, sp, binding, location, "SAMLRequest", req, state_id)
    return _finish_logout(idp, state)


def _finish_logout(idp: SamlIdp, state: dict[str, Any]) -> Answer:
    init = state.get("initiator")
    if state.get("then"):  # pending logouts of a session ended elsewhere: go on as asked
        return SignedOut(Redirect(state["then"]))
    sp = idp.sp(init["sp"]) if init else None
    where = _slo_location(idp, sp) if sp else None
    if not init or where is None:
        return LogoutPage(done=True, partial=state["partial"])
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
    resp = idp.logout_response(
        location,
        init["request_id"],
        STATUS_SUCCESS,
        STATUS_PARTIAL_LOGOUT if state["partial"] else None,
        sign=binding == BINDING_HTTP_POST,
    )
    return send(idp, sp, binding, location, "SAMLResponse", resp, init.get("relay_state"))


def _logout_response(idp: SamlIdp, received: Received, relay: str | None, msg: Inbound) -> Answer:
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
    signed = check_signature(
        idp,
        sp,
        received.binding,
        received.query_string,
        "SAMLResponse",
        resp.signature is not None,
        bool(idp.sp_setting(sp, "want_logout_signed")),
    )
    check_destination(resp.destination, signed, idp.slo_url)
    if resp.in_response_to != state["awaiting"]["id"]:
        raise BadMessage("the logout response answers another request")
    idp.svc.store.delete(key)
    if resp.status.status_code.value != STATUS_SUCCESS:
        state["partial"] = True
    state.pop("awaiting", None)
    return _continue_logout(idp, state)


def _logout_token(svc: Services, sid: str) -> str:
    key = svc.secret_key.encode()
    return hmac.new(key, f"saml-logout:{sid}".encode(), hashlib.sha256).hexdigest()


def logout_prompt(svc: Services, sid: str | None, mgr: SessionManager) -> LogoutPage:
    """IdP-initiated Single Logout, first step: ask (a link must not sign anyone out)."""
    current = mgr.current_by_sid(sid)
    if current is None:
        return LogoutPage(done=True, partial=False)
    return LogoutPage(done=False, token=_logout_token(svc, current.sid))


def logout(svc: Services, token: str, sid: str | None, mgr: SessionManager) -> Answer:
    """IdP-initiated Single Logout: ends the SSO session and every SP and OIDC client in it."""
    idp = saml_idp(svc)
    current = mgr.current_by_sid(sid)
    if current is None:
        return LogoutPage(done=True, partial=False)
    if not hmac.compare_digest(token, _logout_token(svc, current.sid)):
        return Refused(400, "The sign-out form has expired. Please try again.")
    # Tells OIDC clients too (logout listeners); the SAML SPs are told below, in this browser.
    record = mgr.destroy(current.sid, handled="saml")
    state = {"pending": _other_saml_parties(record, None), "partial": False, "initiator": None}
    return SignedOut(_continue_logout(idp, state))


# --- sessions ended elsewhere --------------------------------------------------------------------


def listen(svc: Services, post: Poster) -> None:
    """Have every SSO session ended outside a SAML logout reach its SPs (once per app)."""
    session_manager(svc).logout_listeners.add(lambda record: tell_sps(svc, record, post))


def _pool(svc: Services) -> ThreadPoolExecutor:
    pool = svc.saml_backchannel_pool
    if pool is None:
        pool = svc.saml_backchannel_pool = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="saml-soap-slo"
        )
    return pool


def _soap_location(idp: SamlIdp, sp: SpInfo) -> str | None:
    return next(
        (e["location"] for e in idp.slo_endpoints(sp) if e.get("binding") == BINDING_SOAP), None
    )


def tell_sps(svc: Services, record: dict[str, Any], post: Poster) -> None:
    """An SSO session ended: a SOAP LogoutRequest (in the background) to each SP of it that
    offers the SOAP binding; the others wait for the browser's next page (``pending_logout``)."""
    if record.get("handled") == "saml":
        return  # an SP-initiated logout in this browser tells them itself
    parties = _other_saml_parties(record, None)
    if not parties:
        return
    idp = saml_idp(svc)
    front: list[list[Any]] = []
    for entity_id, info in parties:
        sp = idp.sp(entity_id)
        if sp is None:
            continue  # removed since: nobody to tell
        location = _soap_location(idp, sp)
        if location and not unsafe_location(sp, location):
            _pool(svc).submit(soap_logout, idp, entity_id, location, info, post)
        else:
            front.append([entity_id, info])
    if front and record.get("public_sid"):
        # Kept as long as the browser's cookie could still name the session.
        mgr = session_manager(svc)
        _, absolute = mgr.limits(record)
        left = int(absolute - (svc.clock.now() - record.get("created", svc.clock.now())))
        svc.store.put(_PENDING + record["public_sid"], front, max(left, SLO_TTL))


def soap_logout(
    idp: SamlIdp, entity_id: str, location: str, info: dict[str, Any], post: Poster
) -> bool:
    """Send one signed LogoutRequest by SOAP and check the LogoutResponse: from that SP,
    answering this request, signed when the SP's settings ask it, status Success. A failure
    is logged (the session has ended here either way)."""
    sp = idp.sp(entity_id)
    if sp is None:
        return False
    nid = info["name_id"]
    req_id, req = idp.logout_request(
        location,
        IssuedNameId(nid["format"], nid["value"], nid.get("nq"), nid.get("spnq")),
        info["session_index"],
        sign=True,
    )
    body = req.decode()
    if body.startswith("<?xml"):
        body = body[body.index("?>") + 2 :]
    try:
        status, answer = post(location, _SOAP_ENVELOPE.format(body).encode(), _SOAP_HEADERS)
        if status != 200:
            raise BadMessage(f"HTTP {status}")
        problem = _check_soap_response(idp, sp, answer, req_id)
    except BadMessage as exc:
        problem = str(exc)
    except Exception as exc:  # the poster's connection errors (refused, timeout...)
        problem = getattr(exc, "reason", None) or type(exc).__name__
    if problem:
        log.warning("SOAP logout to %s failed: %s", entity_id, problem)
        return False
    log.info("SOAP logout delivered to %s", entity_id)
    return True


def _check_soap_response(idp: SamlIdp, sp: SpInfo, answer: bytes, req_id: str) -> str | None:
    msg = inspect(_soap_body(answer))
    if msg.root_tag != "LogoutResponse" or msg.issuer != sp.entity_id:
        raise BadMessage("the answer is not a LogoutResponse of this SP")
    if msg.has_signature and msg.root is not None:
        check_signature_algorithms(msg.root, allow_sha1=bool(sp.settings.get("allow_sha1")))
    elif idp.sp_setting(sp, "want_logout_signed"):
        raise BadMessage("the LogoutResponse is not signed")
    try:
        parsed = idp.engine().server.parse_logout_request_response(
            b64(msg.xml.decode()), BINDING_HTTP_POST
        )
    except Exception as exc:  # pysaml2 raises many types for bad input (a bad signature too)
        raise BadMessage(f"the LogoutResponse is not valid ({type(exc).__name__})") from None
    if parsed is None or parsed.response.in_response_to != req_id:
        raise BadMessage("the LogoutResponse answers another request")
    if parsed.response.status.status_code.value != STATUS_SUCCESS:
        return "the SP answered " + parsed.response.status.status_code.value
    return None


def _soap_body(answer: bytes) -> bytes:
    """The one SAML element in a SOAP 1.1 envelope's Body, serialized as it came (prefixes
    kept: a signature over it must still verify, which an ElementTree round trip breaks)."""
    if b"<!DOCTYPE" in answer.upper() or b"<!ENTITY" in answer.upper():
        raise BadMessage("the SOAP answer contains a DTD, which is not allowed")
    try:
        envelope = parse_xml(answer)
    except etree.XMLSyntaxError:
        raise BadMessage("the answer is not well-formed XML") from None
    body = envelope.find(f"{{{_SOAP_NS}}}Body")
    if envelope.tag != f"{{{_SOAP_NS}}}Envelope" or body is None or len(body) != 1:
        raise BadMessage("the answer is not a SOAP envelope with one message")
    return etree.tostring(body[0])


def has_pending_logout(svc: Services, sid: str) -> bool:
    return svc.store.get(_PENDING + sid) is not None


def pending_logout(svc: Services, sid: str | None, then: str) -> Answer:
    """A browser whose session was ended elsewhere came back: send the LogoutRequests its SPs
    still wait for, one after the other (HTTP-Redirect or POST), then go on to ``then``.

    A session that is still alive has nothing pending and is not ended here: the page is a
    plain GET any link can open (logout CSRF), so such a browser just goes on to ``then``
    with its cookie kept."""
    if sid and len(sid) <= 64 and session_manager(svc).peek(sid) is not None:
        return Redirect(then)
    parties = svc.store.take(_PENDING + sid) if sid and len(sid) <= 64 else None
    state = {"pending": parties or [], "partial": False, "initiator": None, "then": then}
    return _continue_logout(saml_idp(svc), state)
