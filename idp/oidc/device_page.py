"""The person's side of the device authorization grant (RFC 8628 §3.3, §5.1, §5.4): the user
code typed on ``/device``, the sign-in handed to the hub, the confirmation.

The code names a client, so the sign-in goes through the hub as ``/authorize`` hands it over:
an SSO session that satisfies the client's MFA policy (acr) is reused, else the pending
``AuthnRequest`` sends the browser to ``/login?r=<id>`` and back to ``/device/confirm``. The
confirmation warns about remote phishing (§5.4) and answers once. Wrong codes are counted per
address and per browser; past ``[device] max_user_code_attempts`` the page refuses for
``user_code_lockout`` seconds (§5.1). The protocol itself is ``idp.oidc.device``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..core.authn import ACR_LEVELS, AuthnRequest, AuthnResult, session_satisfies
from ..errors import new_reference
from ..services import Services
from ..sso import network
from ..sso.network import Origin
from ..sso.sessions import session_manager
from ..sso.stepup import required_acr_values
from ..storage import audit as audit_rows
from .authorize import _active_user, _user_refused, remember_consent
from .clients import OAuthClient, client_cache
from .device import (
    DEVICE_KEY,
    EXPIRED_KEPT,
    USER_CODE_KEY,
    DeviceAuthorization,
    normalize_user_code,
    shown_user_code,
)
from .endpoints import precheck
from .http import HttpRequest
from .results import ErrorPage, JsonResult, Message, Redirect, _
from .server import Subject, engine

_GUESSES = "devguess:"  # wrong user codes of an address or a browser
_BLOCKED = "devblock:"  # a refused address or browser: until when

# --- the device authorization endpoint (§3.1) -------------------------------------------------

def device_authorization(svc: Services, req: HttpRequest) -> JsonResult:
    bad = precheck(req)
    if bad is not None:
        return bad
    return engine(svc).server.create_endpoint_response(DeviceAuthorization.ENDPOINT_NAME, req)


# --- the hosted pages (§3.3, §5.1, §5.4) --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CodeRefused:
    """The user code page again, with ``message``; ``retry_after`` (seconds) when refused for
    too many wrong codes (429)."""

    message: Message
    status: int = 400
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class DevicePrompt:
    """Ask the signed-in user to approve ``client`` on the device showing ``user_code``."""

    rid: str
    client: OAuthClient
    user: Subject
    scopes: list[str]
    user_code: str


@dataclass(frozen=True, slots=True)
class DeviceDone:
    """The decision was recorded: the device gets its tokens (``approved``) or access_denied."""

    approved: bool
    client_name: str


def refusal(message: Message, status: int = 400) -> ErrorPage:
    return ErrorPage(_("Device sign-in refused"), message, new_reference(), status)


_BAD_CODE = _("That code is not valid. It may be mistyped, expired or already used: check the "
              "code your device shows, or start again on the device.")
_GONE = _("This device sign-in has expired or was already answered. Start again on your "
          "device.")


def _guess_keys(ip: str | None, browser: str | None) -> list[str]:
    return [f"ip:{ip}" if ip else "ip:-"] + ([f"br:{browser}"] if browser else [])


def _blocked_for(svc: Services, keys: list[str]) -> int | None:
    """Seconds until the address or browser may try again, or None when it may now."""
    now = svc.clock.now()
    until = [u for u in svc.store.get_many([_BLOCKED + k for k in keys]) if u is not None]
    return max(1, math.ceil(max(until) - now)) if until else None


def _count_wrong(svc: Services, keys: list[str]) -> None:
    cfg = svc.settings.device
    for key in keys:
        if svc.store.incr(_GUESSES + key, cfg.user_code_lockout) >= cfg.max_user_code_attempts:
            svc.store.put(_BLOCKED + key, svc.clock.now() + cfg.user_code_lockout,
                          cfg.user_code_lockout)
            svc.store.delete(_GUESSES + key)


def _pending(svc: Services, code: str | None) -> tuple[str, dict[str, Any]] | None:
    """The device key and record a user code names while it awaits its decision."""
    key = svc.store.get(USER_CODE_KEY + code) if code else None
    record = svc.store.get(DEVICE_KEY + key) if key else None
    if record is None or record["status"] != "pending" or record["user_code"] != code \
            or svc.clock.now() >= record["expires_at"]:
        return None
    return key, record


def enter_user_code(svc: Services, raw: str, session_id: str | None, *, origin: Origin,
                    browser: str | None) -> Redirect | CodeRefused:
    """The person typed a user code on ``/device``: on to the sign-in (or straight to the
    confirmation when the SSO session may answer for this client), or refused. ``browser``
    identifies the browser for the wrong-code limit (§5.1), besides the address."""
    keys = _guess_keys(origin.ip, browser)
    wait = _blocked_for(svc, keys)
    if wait is not None:
        return CodeRefused(_("Too many wrong codes. Try again in %(minutes)s min.",
                             minutes=math.ceil(wait / 60)), 429, wait)
    code = normalize_user_code(raw)
    found = _pending(svc, code)
    client = client_cache(svc).get(found[1]["client_id"]) if found else None
    if found is None or client is None:
        _count_wrong(svc, keys)
        return CodeRefused(_BAD_CODE)
    mgr = session_manager(svc)
    want = AuthnRequest(protocol="oidc", resume_url="/device/confirm?r={rid}",
                        client_id=client.client_id, client_name=client.name,
                        params={"device": code})
    result = mgr.current_by_sid(session_id)
    if result is not None:
        # An MFA policy for this user at this client raises the bar, as at /authorize.
        want.acr_values += required_acr_values(svc, want, result.user_uuid)
    if result is not None and session_satisfies(result, want, svc.clock.now()):
        return Redirect(f"/device/confirm?r={mgr.save_request(want)}", 303)
    want.params["_created"] = int(svc.clock.now())
    return Redirect(f"/login?r={mgr.save_request(want)}", 303)


def _checked(svc: Services, req: AuthnRequest | None, session_id: str | None, origin: Origin,
             ) -> tuple[AuthnResult, Subject, OAuthClient, str, dict[str, Any]] | ErrorPage:
    """What the confirmation needs, all still valid: the pending request, a session that
    satisfies it (the login just done, or one at the wanted acr), an active user, the client,
    the network rules of both for the browser's address (as at /authorize), and the device
    record still waiting."""
    if req is None or req.protocol != "oidc" or "device" not in req.params:
        return refusal(_GONE)
    result = session_manager(svc).current_by_sid(session_id)
    fresh_enough = req.params.get("_created", 0)
    if result is None or result.auth_time < fresh_enough \
            or ACR_LEVELS.get(result.acr, 0) < req.wanted_acr_level():
        return refusal(_("Your session has ended. Start again on your device and sign in "
                          "again."), 401)
    user = _active_user(svc, result)
    client = client_cache(svc).get(req.client_id)
    found = _pending(svc, req.params["device"])
    if user is None or client is None or found is None \
            or found[1]["client_id"] != client.client_id:
        return refusal(_GONE)
    refused = network.check_client(svc, client.client_id, origin.ip)
    if refused is not None:
        network.record(svc, refused, origin.ip, request_id=origin.request_id, user=user.uuid)
    if refused is not None or _user_refused(svc, user, origin):
        return refusal(_("Sign-in from this network is not allowed for your account."), 403)
    key, record = found
    return result, user, client, key, record


def device_prompt(svc: Services, rid: str, session_id: str | None, *,
                  origin: Origin) -> DevicePrompt | ErrorPage:
    """What the confirmation page asks for the pending request ``rid`` (not used up yet)."""
    req = session_manager(svc).load_request(rid)
    checked = _checked(svc, req, session_id, origin)
    if isinstance(checked, ErrorPage):
        return checked
    _result, user, client, _key, record = checked
    scope = engine(svc).permitted_scope(client, user.user_id, record["scope"])
    return DevicePrompt(rid, client, user, scope.split(), shown_user_code(record["user_code"]))


def answer_device(svc: Services, rid: str, session_id: str | None, approve: bool, *,
                  origin: Origin) -> DeviceDone | ErrorPage:
    """The user approved or denied (the form already checked by the caller). The request and
    then the user code are taken once, so a code gets exactly one decision."""
    mgr = session_manager(svc)
    checked = _checked(svc, mgr.finish_request(rid), session_id, origin)
    if isinstance(checked, ErrorPage):
        return checked
    result, user, client, key, record = checked
    if svc.store.take(USER_CODE_KEY + record["user_code"]) is None:
        return refusal(_GONE)
    eng = engine(svc)
    now = svc.clock.now()
    scope = eng.permitted_scope(client, user.user_id, record["scope"])
    psid = result.sid  # the session id: a hash of the cookie, published as the sid claim
    with svc.sessions.begin() as db:
        audit_rows.audit(db, "device.approved" if approve else "device.denied",
                         at=svc.clock.utcnow(), actor=user.uuid, target=user.uuid, ip=origin.ip,
                         request_id=origin.request_id, client_id=client.client_id,
                         scopes=scope.split())
    if approve:
        # As a consent: listed on the account page, where withdrawing it ends the tokens.
        remember_consent(svc, user.user_id, client.client_id, scope.split(),
                         granted_by=(user.uuid, origin))
        ctx = eng.code_context(result, user, {"scope": scope, "resource_list":
                                              record["resource"]}, psid)
        record = dict(record, status="approved", ctx=ctx)
        mgr.add_relying_party(result.sid, f"oidc:{client.client_id}", {
            "client_id": client.client_id, "sub": user.uuid, "sid": psid})
    else:
        record = dict(record, status="denied")
    svc.store.put(DEVICE_KEY + key, record, max(1.0, record["expires_at"] + EXPIRED_KEPT - now))
    return DeviceDone(approve, client.name)

