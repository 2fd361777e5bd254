"""Single Logout with an upstream SAML IdP (saml-profiles 4.4), as its service provider.

- Our user signs out: when the session came through an upstream with a SingleLogoutService,
  ``logout_request`` sends the browser there with a signed LogoutRequest for the NameID and
  SessionIndex it asserted; its LogoutResponse comes back to our SLS, where
  ``logout_response`` checks it (signature by its metadata keys, InResponseTo, Destination)
  and sends the browser on to where the sign-out was going.
- The upstream signs the person out (IdP-initiated): ``upstream_logout_request`` checks its
  LogoutRequest (signature, Destination, IssueInstant, replay), ends every local session
  that came through it for that NameID (and SessionIndex), and answers with a signed
  LogoutResponse.

Which local sessions came through which upstream session is kept by ``remember_session``
when the broker signs someone in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from ..saml.bindings import (
    RedirectSignatureError,
    has_redirect_signature,
    redirect_url,
    verify_redirect_signature,
)
from ..saml.crypto import SAML_NS
from ..saml.engine import b64, saml_idp
from ..saml.inbound import SAMLP_NS, BadMessage, Inbound, inspect, utc_instant
from ..saml.response import build_logout_request, build_status_response
from ..saml.results import PostForm, Received, Redirect
from ..saml.validate import read_message
from ..services import Services
from ..sso.sessions import session_manager
from .saml import Refused, SamlUpstream, UpstreamNameId, check_algorithms, verify_signature
from .saml_metadata import sp_endpoints

LOGOUT_TTL = 600
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_SLO = "broker:saml:slo:"
_BY_NAME = "broker:saml:sessions:"
_SEEN = "broker:saml:seen-logout:"


def _name_key(alias: str, name_id: str) -> str:
    return _BY_NAME + hashlib.sha256(f"{alias}\n{name_id}".encode()).hexdigest()


def remember_session(
    svc: Services, alias: str, sid: str, name_id: UpstreamNameId | None, session_index: str | None
) -> dict[str, Any] | None:
    """Note that the local session ``sid`` came through the upstream ``alias`` as ``name_id``
    in its session ``session_index``: an upstream LogoutRequest for them ends it. Returns what
    the session must keep for a logout towards the upstream (None without a NameID)."""
    if name_id is None:
        return None
    key = _name_key(alias, name_id.value)
    sessions = dict(svc.store.get(key) or {})
    sessions[sid] = session_index
    svc.store.put(key, sessions, svc.settings.session.max_hours * 3600)
    return {"alias": alias, "name_id": name_id.to_dict(), "session_index": session_index}


def _send(
    svc: Services, binding: str, location: str, field: str, xml: bytes, relay: str | None
) -> PostForm | Redirect:
    if binding == BINDING_HTTP_REDIRECT:
        key = saml_idp(svc).engine().signing_key
        return Redirect(redirect_url(location, field, xml, relay, key))
    return PostForm(location, field, b64(xml), relay)


def _binding(up: SamlUpstream) -> str | None:
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        if binding in up.idp.slo:
            return binding
    return None


def logout_request(
    svc: Services, up: SamlUpstream, kept: dict[str, Any], then: str
) -> PostForm | Redirect | None:
    """The browser's way to the upstream's SingleLogoutService with a signed LogoutRequest
    for the session ``kept`` (what ``remember_session`` returned); None when the upstream has
    no SingleLogoutService. ``then`` is where the browser goes when the upstream answers."""
    binding = _binding(up)
    if binding is None or not kept.get("name_id"):
        return None
    location = up.idp.slo[binding][0]
    request_id, xml = build_logout_request(
        signer=saml_idp(svc).engine().server.sec.crypto,
        issuer=sp_endpoints(svc, up.alias).entity_id,
        destination=location,
        name_id=UpstreamNameId.from_dict(kept["name_id"]),  # type: ignore[arg-type]
        session_index=kept.get("session_index") or "",
        now=svc.clock.now(),
        sign=binding == BINDING_HTTP_POST,
    )
    relay = secrets.token_urlsafe(32)
    svc.store.put(
        _SLO + relay, {"alias": up.alias, "request_id": request_id, "then": then}, LOGOUT_TTL
    )
    return _send(svc, binding, location, "SAMLRequest", xml, relay)


def _read(up: SamlUpstream, received: Received, field: str, tag: str) -> tuple[str | None, Inbound]:
    """RelayState and the checked message ``tag`` from the upstream: the XML gate, its Issuer,
    signature algorithms, and a signature by its metadata keys (the query's for
    HTTP-Redirect, else the XML's), which is required."""
    try:
        binding, relay, xml = read_message(received, field)
        msg = inspect(xml)
    except BadMessage as exc:
        raise Refused(str(exc)) from None
    if msg.root_tag != tag or msg.root is None:
        raise Refused(f"the message is not a {tag}")
    if msg.issuer != up.idp.entity_id:
        raise Refused(f"the {tag} was issued by another identity provider")
    check_algorithms(msg.root)
    if binding == BINDING_HTTP_REDIRECT and has_redirect_signature(received.query_string):
        certs = [
            "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
            for pem in up.idp.signing_certs
        ]
        try:
            verify_redirect_signature(received.query_string, field, certs)
        except RedirectSignatureError as exc:
            raise Refused(f"the signature of the {tag} is not valid: {exc}") from None
    elif not verify_signature(msg.root, up, f"the {tag}"):
        raise Refused(f"the {tag} is not signed")
    return relay, msg


def _check_destination_and_time(svc: Services, up: SamlUpstream, msg: Inbound, tag: str) -> None:
    assert msg.root is not None
    if (msg.root.get("Destination") or "").strip() != sp_endpoints(svc, up.alias).sls:
        raise Refused(f"the {tag} is addressed to another destination")
    issued = utc_instant(msg.issue_instant)
    now = svc.clock.now()
    skew = svc.settings.saml.clock_skew
    if issued is None:
        raise Refused(f"the {tag} has no valid IssueInstant")
    if issued > now + skew or issued < now - svc.settings.saml.request_max_age - skew:
        raise Refused(f"the {tag} has expired or is issued in the future (check the clocks)")


def logout_response(svc: Services, up: SamlUpstream, received: Received) -> str:
    """The upstream's answer to our LogoutRequest: checked, then the address the sign-out
    goes on to (taken once)."""
    relay, msg = _read(up, received, "SAMLResponse", "LogoutResponse")
    _check_destination_and_time(svc, up, msg, "LogoutResponse")
    state = svc.store.get(_SLO + relay) if relay else None
    irt = msg.root.get("InResponseTo") if msg.root is not None else None
    if (
        not isinstance(state, dict)
        or state.get("alias") != up.alias
        or not irt
        or not hmac.compare_digest(irt, state["request_id"])
    ):
        raise Refused("the LogoutResponse answers no sign-out started here")
    if svc.store.take(_SLO + str(relay)) is None:
        raise Refused("this sign-out was already completed")
    return state["then"]


def upstream_logout_request(
    svc: Services, up: SamlUpstream, received: Received
) -> tuple[int, PostForm | Redirect | None]:
    """The upstream ends the person's session (IdP-initiated logout): the local sessions that
    came through it for that NameID (and SessionIndex, when given) end, and the answer is a
    LogoutResponse to the upstream's SingleLogoutService (None when it has none). Returns how
    many local sessions ended and the answer."""
    relay, msg = _read(up, received, "SAMLRequest", "LogoutRequest")
    _check_destination_and_time(svc, up, msg, "LogoutRequest")
    assert msg.root is not None
    name_el = msg.root.find(f"{{{SAML_NS}}}NameID")
    if name_el is None or not (name_el.text or "").strip():
        raise Refused("the LogoutRequest has no NameID")
    if not msg.id or len(msg.id) > 256:
        raise Refused("the LogoutRequest has no usable ID")
    digest = hashlib.sha256(f"{up.idp.entity_id}\n{msg.id}".encode()).hexdigest()
    ttl = svc.settings.saml.request_max_age + 2 * svc.settings.saml.clock_skew
    if not svc.store.add(_SEEN + digest, 1, ttl):
        raise Refused("this LogoutRequest was already used (replay)")
    indexes = {(el.text or "").strip() for el in msg.root.findall(f"{{{SAMLP_NS}}}SessionIndex")}
    key = _name_key(up.alias, name_el.text.strip())
    sessions = dict(svc.store.get(key) or {})
    mgr = session_manager(svc)
    ended = 0
    for sid, index in list(sessions.items()):
        if indexes and index not in indexes:
            continue
        if mgr.end(sid) is not None:
            ended += 1
        del sessions[sid]
    if sessions:
        svc.store.put(key, sessions, svc.settings.session.max_hours * 3600)
    else:
        svc.store.delete(key)
    binding = _binding(up)
    if binding is None:
        return ended, None
    location = up.idp.slo[binding][1]
    xml = build_status_response(
        signer=saml_idp(svc).engine().server.sec.crypto,
        element="LogoutResponse",
        issuer=sp_endpoints(svc, up.alias).entity_id,
        destination=location,
        in_response_to=msg.id,
        status=STATUS_SUCCESS,
        now=svc.clock.now(),
        sign=binding == BINDING_HTTP_POST,
    )
    return ended, _send(svc, binding, location, "SAMLResponse", xml, relay)
