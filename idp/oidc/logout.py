"""Logout for OIDC relying parties.

- RP-Initiated Logout 1.0 at ``/oauth2/logout`` (end_session_endpoint): redirects only to a
  post_logout_redirect_uri registered for the client named by a valid id_token_hint; without a
  hint the user confirms first (forced-logout CSRF, ASVS 10.6.2).
- Back-Channel Logout 1.0: a signed logout token (``typ: logout+jwt``, events claim, sub and
  sid, no nonce) POSTed to each RP of the ended session, from a background thread, with a
  timeout and retries; failures are logged.
- Front-Channel Logout 1.0: the signed-out page loads each RP's frontchannel_logout_uri with
  iss and sid in an iframe; a stored URI that the metadata validator would refuse today (a row
  written before it existed: ``javascript:`` would run on our origin) is skipped and logged.
- Back-channel POSTs go through the outbound guard (``fetch.py``): https only, no private
  addresses, no redirects, bounded time; a destination that failed is left alone for a while.

Every ended SSO session reaches ``propagate`` (a logout listener), whichever page ended it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.client_metadata import safe_uri
from ..errors import new_reference
from ..services import Services
from ..sso.sessions import UserSignout, session_manager
from .clients import client_cache
from .fetch import OutboundError, OutboundRefused, outbound
from .http import Values
from .results import ErrorPage, LoggedOut, LogoutConfirm, Message, _
from .server import engine
from .tokens import InvalidToken, new_jti

log = logging.getLogger("idp.oidc.logout")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def listen(svc: Services) -> None:
    """Have every ended SSO session reach ``propagate`` and every sign-out of a user
    (idp.sso.signout) revoke their remaining refresh tokens (called once per app)."""
    mgr = session_manager(svc)
    mgr.logout_listeners.add(lambda record: propagate(svc, record))
    mgr.signout_listeners.add(lambda event: revoke_for_signout(svc, event))


def revoke_for_signout(svc: Services, event: UserSignout) -> None:
    """All of a user's sessions ended: online refresh tokens of sessions that expired before
    (their families outlive the session record) and, unless kept, the offline ones."""
    engine(svc).revoke_user_refresh_tokens(
        event.user_id, keep_sid=event.keep_sid, offline=event.offline,
        keep_clients=event.keep_clients)


# --- propagation ---------------------------------------------------------------------------------

def _executor(svc: Services) -> ThreadPoolExecutor:
    pool = svc.oidc_backchannel_pool
    if pool is None:
        pool = svc.oidc_backchannel_pool = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="backchannel")
    return pool


def propagate(svc: Services, record: dict[str, Any]) -> None:
    """An SSO session ended: revoke its online refresh tokens and tell each OIDC RP."""
    eng = engine(svc)
    psid = record.get("public_sid")
    if psid:
        eng.revoke_refresh_tokens(sid=psid)
    for key, info in (record.get("rps") or {}).items():
        if not key.startswith("oidc:"):
            continue
        client = client_cache(svc).get(info.get("client_id"))
        uri = client.setting("backchannel_logout_uri") if client else None
        if not uri:
            continue
        token = logout_token(svc, client.client_id, info.get("sub"), info.get("sid"))
        _executor(svc).submit(deliver, svc, client.client_id, uri, token)


def logout_token(svc: Services, client_id: str, sub: str | None, sid: str | None) -> str:
    eng = engine(svc)
    now = eng.now()
    claims: dict[str, Any] = {"iss": eng.issuer, "aud": client_id, "iat": now,
                              "exp": now + 120, "jti": new_jti(),
                              "events": {BACKCHANNEL_EVENT: {}}}
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    client = client_cache(svc).get(client_id)
    alg = client.setting("id_token_signed_response_alg", "RS256") if client else "RS256"
    return eng.signer.sign(claims, alg, typ="logout+jwt")


def deliver(svc: Services, client_id: str, uri: str, token: str) -> bool:
    """POST the logout token; retry on network errors and 5xx with a growing pause. A refused
    destination (scheme, address) is not retried; a failure is remembered by the outbound
    guard, so the next logout does not try the same dead URL again at once."""
    cfg = svc.settings.oidc
    fetcher = outbound(svc)
    reason = fetcher.failed_recently(uri)
    attempt = 0
    if reason is None:
        body = urlencode({"logout_token": token}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Cache-Control": "no-store"}
        remember = True
        for attempt in range(1, cfg.backchannel_attempts + 1):
            try:
                answer = fetcher.request("POST", uri, body=body, headers=headers,
                                         timeout=cfg.backchannel_timeout)
                if answer.status in (200, 204):
                    log.info("back-channel logout delivered", extra={"client_id": client_id})
                    return True
                reason = f"HTTP {answer.status}"
                if answer.status < 500:
                    remember = False  # the RP refused this token, not every token
                    break
            except OutboundRefused as exc:
                reason = exc.reason
                break  # refused by policy: retrying will not help
            except OutboundError as exc:
                reason = exc.reason
            if attempt < cfg.backchannel_attempts:
                time.sleep(0.5 * 2 ** (attempt - 1))
        if remember:
            fetcher.remember_failure(uri, reason)
    log.warning("back-channel logout failed: %s", reason,
                extra={"client_id": client_id, "attempts": attempt})
    return False


# --- RP-initiated logout -------------------------------------------------------------------------

def refuse(message: Message) -> ErrorPage:
    ref = new_reference()
    log.info("logout request refused: %s", message.msgid % message.params
             if message.params else message.msgid, extra={"reference": ref})
    return ErrorPage(_("Sign-out request refused"), message, ref, 400)


def check_single_valued(values: Values) -> ErrorPage | None:
    for key in values:
        if len(values.getlist(key)) > 1:
            return refuse(_("The parameter %(name)s was sent more than once.", name=key))
    return None


def end_session(svc: Services, values: Values, session_id: str | None,
                ) -> ErrorPage | LogoutConfirm | LoggedOut:
    """RP-Initiated Logout 1.0 §2-§3 (GET or POST without the confirmation form)."""
    eng = engine(svc)
    hint = values.get("id_token_hint")
    client_id = values.get("client_id")
    redirect_uri = values.get("post_logout_redirect_uri")
    state = values.get("state")
    hint_claims = None
    if hint:
        try:
            hint_claims = eng.signer.verify_id_token(hint, eng.issuer)
        except InvalidToken:
            return refuse(_("The sign-out request carries an invalid ID token."))
        aud = hint_claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if hint_claims.get("iss") != eng.issuer:
            return refuse(_("The sign-out request carries an ID token of another issuer."))
        if client_id and client_id not in auds:
            return refuse(_("The ID token was not issued to this application."))
        client_id = client_id or hint_claims.get("azp") or auds[0]
    client = client_cache(svc).get(client_id) if client_id else None
    if client_id and client is None:
        return refuse(_("The application that sent you here is not registered."))
    if redirect_uri:
        if client is None or redirect_uri not in client.setting("post_logout_redirect_uris",
                                                                []):
            return refuse(_("The application asked to return to an address it has not "
                            "registered."))
    current = session_manager(svc).current_by_sid(session_id)
    # The hint's sub is the one its client sees (pairwise clients: OIDC Core §8.1).
    hint_matches = hint_claims is not None and (
        current is None or eng.subject(client, current.user_uuid) == hint_claims.get("sub"))
    if not hint_matches:
        # Without proof that the RP knows this user's session, the user confirms (and no
        # redirect is made unless the hint was valid).
        return LogoutConfirm(client_id or "", client.name if client else None)
    return logout(svc, session_id, redirect_uri, state)


def logout(svc: Services, session_id: str | None, redirect_uri: str | None = None,
           state: str | None = None) -> LoggedOut:
    """End the SSO session; the front-channel frames to load and where to go next."""
    mgr = session_manager(svc)
    record = mgr.end(session_id)
    frames = []
    for key, info in ((record or {}).get("rps") or {}).items():
        if not key.startswith("oidc:"):
            continue
        rp = client_cache(svc).get(info.get("client_id"))
        uri = rp.setting("frontchannel_logout_uri") if rp else None
        if uri and not safe_uri("frontchannel_logout_uri", uri):
            log.warning("stored frontchannel_logout_uri refused, not rendered",
                        extra={"client_id": rp.client_id})
            continue
        if uri:
            parts = urlsplit(uri)
            query = parse_qsl(parts.query) + [("iss", svc.settings.issuer),
                                              ("sid", info.get("sid", ""))]
            frames.append(urlunsplit(parts._replace(query=urlencode(query))))
    target = None
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if state:
            query.append(("state", state))
        target = urlunsplit(parts._replace(query=urlencode(query)))
    return LoggedOut(frames, target)
