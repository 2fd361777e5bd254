"""The OAuth 2.0 Device Authorization Grant (RFC 8628) on authlib's ``rfc8628`` shapes.

- ``POST /oauth2/device_authorization`` (§3.1, §3.2): the client authenticates as at the token
  endpoint (public clients by ``client_id``), must have the grant type registered, and gets a
  high-entropy ``device_code`` and an eight-letter ``user_code`` from the base-20 alphabet of
  §6.1 (shown ``XXXX-XXXX``; typed in any case, dashes and spaces ignored).
- ``/device`` (§3.3): the person types the user code, signs in through the hub (the pending
  ``AuthnRequest`` with the client's MFA policy, as ``/authorize`` hands over) and approves or
  denies on a confirmation page that warns about remote phishing (§5.4). Wrong codes are
  counted per address and per browser; past ``[device] max_user_code_attempts`` the page
  refuses for ``user_code_lockout`` seconds (§5.1).
- the token endpoint grant ``urn:ietf:params:oauth:grant-type:device_code`` (§3.4, §3.5):
  ``authorization_pending``; ``slow_down`` when polled faster than the interval, which then
  grows by 5 s for that device code; ``access_denied``; ``expired_token``; the approved code is
  taken from the store atomically, so of two polls exactly one gets the tokens (the other
  ``invalid_grant``). Tokens are issued as for an authorization code: the ID token carries
  the approving session's auth_time, acr, amr and sid.

State lives in the shared short-lived store: the device record under the keyed hash of the
device code (written by the device authorization, replaced once by the decision), the user
code pointing to it (taken by the decision: one decision per code), and the pacing keys of
the polls (never the record itself, so a poll cannot overwrite a decision).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    ExpiredTokenError,
    SlowDownError,
)

from ..core.authn import ACR_LEVELS, AuthnRequest, AuthnResult, public_sid, session_satisfies
from ..core.client_metadata import DEVICE_CODE_GRANT
from ..errors import new_reference
from ..services import Services
from ..sso import network
from ..sso.network import Origin
from ..sso.sessions import session_manager
from ..sso.stepup import required_acr_values
from ..storage import audit as audit_rows
from .authorize import _active_user, _user_refused, remember_consent
from .clients import OAuthClient, client_cache
from .endpoints import precheck
from .http import HttpRequest
from .results import ErrorPage, JsonResult, Message, Redirect, _
from .server import ALL_AUTH_METHODS, Engine, Subject, engine

# RFC 8628 §6.1: 20 consonants (no vowels: no words; no look-alikes), 8 of them ~ 34.5 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
SLOW_DOWN_STEP = 5  # §3.5: seconds added to the interval by every slow_down
# An expired device record is kept this long, so a late poll hears expired_token.
_EXPIRED_KEPT = 600

_DEVICE = "device:"  # keyed hash of the device code -> the device record
_USER_CODE = "devuser:"  # normalized user code -> keyed hash of the device code
_TICK = "devtick:"  # present while the device must not poll again
_SLOWED = "devslow:"  # how many slow_down answers a device code got
_GUESSES = "devguess:"  # wrong user codes of an address or a browser
_BLOCKED = "devblock:"  # a refused address or browser: until when


def normalize_user_code(raw: str | None) -> str | None:
    """The user code typed in any case, with dashes and spaces, as stored; None when it cannot
    be one."""
    if not raw or len(raw) > 32:
        return None
    code = "".join(ch for ch in raw.upper() if ch not in "- \t")
    if len(code) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in code):
        return None
    return code


def shown_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def verification_uri(svc: Services) -> str:
    return f"{svc.settings.issuer}/device"


# --- the device authorization endpoint (§3.1, §3.2) ----------------------------------------------

class DeviceAuthorization(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def __init__(self, eng: Engine) -> None:
        super().__init__(eng.server)
        self.engine = eng

    def create_endpoint_response(self, request):
        client: OAuthClient = self.authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE_GRANT):
            raise UnauthorizedClientError("The client may not use the device authorization "
                                          "grant.")
        requested = request.payload.scope
        self.server.validate_requested_scope(requested)
        scope = client.get_allowed_scope(requested)
        if requested and not scope:
            raise InvalidScopeError()
        form = request.form
        resources = self.engine.check_resources(client, form.getlist("resource"))
        svc = self.engine.svc
        cfg = svc.settings.device
        device_code = secrets.token_urlsafe(32)
        key = self.engine.hash(device_code)
        user_code = self._new_user_code(svc, key, cfg.code_lifetime)
        now = svc.clock.now()
        svc.store.put(_DEVICE + key, {
            "client_id": client.client_id, "scope": scope, "resource": resources,
            "user_code": user_code, "expires_at": now + cfg.code_lifetime,
            "interval": cfg.interval, "status": "pending"}, cfg.code_lifetime + _EXPIRED_KEPT)
        uri = verification_uri(svc)
        shown = shown_user_code(user_code)
        return 200, {"device_code": device_code, "user_code": shown,
                     "verification_uri": uri,
                     "verification_uri_complete": f"{uri}?user_code={shown}",
                     "expires_in": cfg.code_lifetime, "interval": cfg.interval}, {}

    @staticmethod
    def _new_user_code(svc: Services, key: str, lifetime: int) -> str:
        """A user code no live request holds (``add`` is put-if-absent across workers)."""
        while True:
            code = generate_token(USER_CODE_LENGTH, USER_CODE_ALPHABET)
            if svc.store.add(_USER_CODE + code, key, lifetime):
                return code


def device_authorization(svc: Services, req: HttpRequest) -> JsonResult:
    bad = precheck(req)
    if bad is not None:
        return bad
    return engine(svc).server.create_endpoint_response(DeviceAuthorization.ENDPOINT_NAME, req)


# --- the token endpoint grant (§3.4, §3.5) -------------------------------------------------------

class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def validate_token_request(self):
        client: OAuthClient = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use the device authorization "
                                          "grant.")
        device_code = self.request.payload.data.get("device_code")
        if not device_code:
            raise InvalidRequestError("Missing 'device_code'.")
        self.request.client = client
        self.request.credential = self._redeem(client, device_code)
        user = self.engine.load_subject(self.request.credential["ctx"]["user_id"])
        if user is None:
            raise InvalidGrantError("The account that approved the device may not be used.")
        self.request.user = user

    def _redeem(self, client: OAuthClient, device_code: str) -> dict[str, Any]:
        """The approved device record, taken from the store; else the error of §3.5."""
        store = self.engine.svc.store
        if not isinstance(device_code, str) or len(device_code) > 200:
            raise InvalidGrantError("The device code is not valid.")
        key = self.engine.hash(device_code)
        record = store.get(_DEVICE + key)
        if record is None or record["client_id"] != client.client_id:
            raise InvalidGrantError("The device code is not valid.")
        if self.engine.svc.clock.now() >= record["expires_at"]:
            raise ExpiredTokenError("The device code has expired.")
        if record["status"] == "denied":
            raise AccessDeniedError("The user denied the request.")
        if record["status"] == "pending":
            self._pace(key, record)
            raise AuthorizationPendingError("The user has not answered yet.")
        taken = store.take(_DEVICE + key)  # of two polls, one wins
        if taken is None or taken["status"] != "approved":
            raise InvalidGrantError("The device code was already used.")
        return taken

    def _pace(self, key: str, record: dict[str, Any]) -> None:
        """§3.5 slow_down: a poll sooner than the interval after the previous one is refused
        and adds 5 s to the interval of this device code from then on."""
        store = self.engine.svc.store
        slowed = int(store.get(_SLOWED + key) or 0)
        if store.add(_TICK + key, 1, record["interval"] + SLOW_DOWN_STEP * slowed):
            return
        left = max(1.0, record["expires_at"] - self.engine.svc.clock.now())
        slowed = store.incr(_SLOWED + key, left)
        interval = record["interval"] + SLOW_DOWN_STEP * slowed
        store.put(_TICK + key, 1, interval)  # the next poll waits the new interval from now
        raise SlowDownError(f"Poll at most every {interval} seconds.")

    def create_token_response(self):
        client: OAuthClient = self.request.client
        ctx = dict(self.request.credential["ctx"])
        granted = ctx.get("resource") or []
        ctx.update(grant_resource=granted,
                   resource=self.engine.token_resources(client, self.request, granted))
        token = self.engine.issue(client, self.request.user, ctx["scope"], ctx,
                                  include_refresh_token=client.check_grant_type("refresh_token"),
                                  audited=self.request)
        if "openid" in ctx["scope"].split():
            token["id_token"] = self.engine.id_token(client, ctx, token["access_token"])
        return 200, token, self.TOKEN_RESPONSE_HEADER


def install(eng: Engine) -> None:
    """Register the endpoint and the grant on the engine's authorization server."""
    eng.server.register_endpoint(DeviceAuthorization(eng))
    eng.server.register_grant(DeviceGrant)


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
    key = svc.store.get(_USER_CODE + code) if code else None
    record = svc.store.get(_DEVICE + key) if key else None
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
    if svc.store.take(_USER_CODE + record["user_code"]) is None:
        return refusal(_GONE)
    eng = engine(svc)
    now = svc.clock.now()
    scope = eng.permitted_scope(client, user.user_id, record["scope"])
    psid = public_sid(result.sid)
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
    svc.store.put(_DEVICE + key, record, max(1.0, record["expires_at"] + _EXPIRED_KEPT - now))
    return DeviceDone(approve, client.name)

