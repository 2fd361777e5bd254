"""Single Logout (saml-profiles 4.4): an SP's LogoutRequest or LogoutResponse at the
SingleLogoutService, and logout started at the IdP. The IdP sends a signed LogoutRequest to
every other SAML SP of the session in turn (front channel; RelayState carries the logout
state), OIDC clients hear of it through the session manager's logout listeners, and the
initiator gets a LogoutResponse (``PartialLogout`` when an SP did not confirm).

Each function takes the services, the request's plain values and the sign-in hub's session
manager, and returns an answer from ``idp.saml.results``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.samlp import STATUS_PARTIAL_LOGOUT, STATUS_SUCCESS

from ..services import Services
from ..sso.sessions import SessionManager
from .engine import SamlIdp, SpInfo, b64, saml_idp
from .inbound import BadMessage, Inbound, check_signature_algorithms, inspect
from .outbound import send
from .results import Answer, LogoutPage, Received, Refused, SignedOut
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
    record = mgr.destroy(current.sid)  # tells OIDC clients too (logout listeners)
    state = {"pending": _other_saml_parties(record, None), "partial": False, "initiator": None}
    return SignedOut(_continue_logout(idp, state))
