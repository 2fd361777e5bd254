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

Which local sessions came through which upstream subject is kept by the sign-in hub
(``idp.sso.broker.remember_session`` / ``sessions_of``), with the session reference
(``session_ref``: NameID and SessionIndex) of each; where the subject is an attribute rather
than the NameID, ``remember_name_id`` keeps which subject a NameID stands for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

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
from ..sso import broker as hub
from ..sso.sessions import session_manager
from .saml import Refused, SamlUpstream, UpstreamNameId, check_algorithms, verify_signature
from .saml_metadata import sp_endpoints

LOGOUT_TTL = 600
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_SLO = "broker:saml:slo:"
_SUBJECT_OF = "broker:saml:subject-of:"
_SEEN = "broker:saml:seen-logout:"


def _name_key(svc: Services, alias: str, name_id: str) -> str:
    return _SUBJECT_OF + svc.hasher.hash(f"{alias}\n{name_id}")


def remember_name_id(
    svc: Services, alias: str, name_id: UpstreamNameId | None, subject: str
) -> None:
    """Keep the subject a NameID stands for, when it is not the NameID itself (a configured
    subject attribute), as long as a session may last."""
    if name_id is None or name_id.value == subject:
        return
    svc.store.put(_name_key(svc, alias, name_id.value), subject, hub.session_ttl(svc))


def session_ref(name_id: UpstreamNameId | None, session_index: str | None) -> str | None:
    """What a LogoutRequest to the upstream needs later: its NameID and SessionIndex."""
    if name_id is None:
        return None
    return json.dumps(
        {"name_id": name_id.to_dict(), "session_index": session_index}, sort_keys=True
    )


def read_session_ref(ref: str) -> tuple[UpstreamNameId, str | None] | None:
    try:
        data = json.loads(ref)
        return UpstreamNameId.from_dict(data["name_id"]), data.get("session_index")
    except (ValueError, KeyError, TypeError):
        return None


def _send(
    svc: Services, binding: str, location: str, field: str, xml: bytes, relay: str | None
) -> PostForm | Redirect:
    if binding == BINDING_HTTP_REDIRECT:
        key = saml_idp(svc).engine().signing_key
        return Redirect(redirect_url(location, field, xml, relay, key))
    return PostForm(location, field, b64(xml), relay)


def _response_binding(up: SamlUpstream) -> str | None:
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        if binding in up.idp.slo:
            return binding
    return None


def logout_request(
    svc: Services, up: SamlUpstream, name_id: UpstreamNameId, session_index: str | None, then: str
) -> Redirect | None:
    """The browser's way to the upstream's SingleLogoutService (HTTP-Redirect) with a signed
    LogoutRequest for ``name_id`` in its session ``session_index``; None when the upstream has
    no SingleLogoutService by HTTP-Redirect. ``then`` is where the browser goes when the
    upstream answers (taken once, by ``logout_response``)."""
    if BINDING_HTTP_REDIRECT not in up.idp.slo:
        return None
    location = up.idp.slo[BINDING_HTTP_REDIRECT][0]
    request_id, xml = build_logout_request(
        signer=saml_idp(svc).engine().server.sec.crypto,
        issuer=sp_endpoints(svc, up.alias).entity_id,
        destination=location,
        name_id=name_id,  # type: ignore[arg-type]  (the same fields as an IssuedNameId)
        session_index=session_index or "",
        now=svc.clock.now(),
        sign=False,
    )
    relay = secrets.token_urlsafe(32)
    svc.store.put(
        _SLO + relay, {"alias": up.alias, "request_id": request_id, "then": then}, LOGOUT_TTL
    )
    key = saml_idp(svc).engine().signing_key
    return Redirect(redirect_url(location, "SAMLRequest", xml, relay, key))


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
    name_id = name_el.text.strip()
    subject = svc.store.get(_name_key(svc, up.alias, name_id)) or name_id
    sessions = hub.sessions_of(svc, up.alias, str(subject))
    mgr = session_manager(svc)
    ended = 0
    kept: dict[str, str] = {}
    for sid, ref in sessions.items():
        read = read_session_ref(ref)
        if read is None or read[0].value != name_id or (indexes and read[1] not in indexes):
            kept[sid] = ref
            continue
        hub.take_session(svc, sid)  # no LogoutRequest back to the upstream for this one
        if mgr.end(sid) is not None:
            ended += 1
    for sid, ref in kept.items():
        hub.remember_session(svc, sid, {"provider": up.alias, "ref": ref, "subject": subject})
    binding = _response_binding(up)
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
