"""The OAuth 2.0 Device Authorization Grant (RFC 8628): the protocol, on authlib's ``rfc8628``.

- ``POST /oauth2/device_authorization`` (§3.1, §3.2): the client authenticates as at the token
  endpoint (public clients by ``client_id``), must have the grant type registered, and gets a
  high-entropy ``device_code`` and an eight-letter ``user_code`` from the base-20 alphabet of
  §6.1 (shown ``XXXX-XXXX``; typed in any case, dashes and spaces ignored).
- the token endpoint grant ``urn:ietf:params:oauth:grant-type:device_code`` (§3.4, §3.5):
  ``authorization_pending``; ``slow_down`` when polled faster than the interval, which then
  grows by 5 s for that device code; ``access_denied``; ``expired_token``; the approved code is
  taken from the store atomically, so of two polls exactly one gets the tokens (the other
  ``invalid_grant``). Tokens are issued as for an authorization code: the ID token carries
  the approving session's auth_time, acr, amr and sid.

The person's side (the ``/device`` pages: sign-in, approval, the wrong-code limit) is
``idp.oidc.device_page``. State lives in the shared short-lived store: the device record under
the keyed hash of the device code (written by the device authorization, replaced once by the
decision), the user code pointing to it (taken by the decision: one decision per code), and the
pacing keys of the polls (never the record itself, so a poll cannot overwrite a decision).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

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

from ..core.client_metadata import AUTH_METHODS, DEVICE_CODE_GRANT
from .clients import OAuthClient
from .sender import cnf_for

if TYPE_CHECKING:  # the engine builds on this module (it registers the grant)
    from ..services import Services
    from .server import Engine

# RFC 8628 §6.1: 20 consonants (no vowels: no words; no look-alikes), 8 of them ~ 34.5 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
SLOW_DOWN_STEP = 5  # §3.5: seconds added to the interval by every slow_down
# An expired device record is kept this long, so a late poll hears expired_token.
EXPIRED_KEPT = 600

DEVICE_KEY = "device:"  # keyed hash of the device code -> the device record
USER_CODE_KEY = "devuser:"  # normalized user code -> keyed hash of the device code
_TICK = "devtick:"  # present while the device must not poll again
_SLOWED = "devslow:"  # how many slow_down answers a device code got


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
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

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
        svc.store.put(DEVICE_KEY + key, {
            "client_id": client.client_id, "scope": scope, "resource": resources,
            "user_code": user_code, "expires_at": now + cfg.code_lifetime,
            "interval": cfg.interval, "status": "pending"},
            cfg.code_lifetime + EXPIRED_KEPT)
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
            if svc.store.add(USER_CODE_KEY + code, key, lifetime):
                return code


# --- the token endpoint grant (§3.4, §3.5) -------------------------------------------------------

class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

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
        record = store.get(DEVICE_KEY + key)
        if record is None or record["client_id"] != client.client_id:
            raise InvalidGrantError("The device code is not valid.")
        if self.engine.svc.clock.now() >= record["expires_at"]:
            raise ExpiredTokenError("The device code has expired.")
        if record["status"] == "denied":
            raise AccessDeniedError("The user denied the request.")
        if record["status"] == "pending":
            self._pace(key, record)
            raise AuthorizationPendingError("The user has not answered yet.")
        taken = store.take(DEVICE_KEY + key)  # of two polls, one wins
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
                   resource=self.engine.token_resources(client, self.request, granted),
                   cnf=cnf_for(client, self.request))
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


