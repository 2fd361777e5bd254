"""E-mail and SMS one-time codes as second factors.

A code is 6 random digits, lives ``[mfa] code_ttl_seconds`` (5 minutes by default; ASVS 5 6.6.2
allows at most 10), is bound to the login it was sent for (the browser-bound pending login) and
works once. Only its keyed hash is kept in the short-lived store. Sending is limited per user
(``max_sends`` per ``send_window_seconds``) and per client address (``[rate_limits]
mfa_send_per_address``) by the rate-limit facility (idp.core.ratelimit), and a code is dropped
after ``MAX_ATTEMPTS`` wrong guesses; the login's account lockout counts the wrong guesses too.

The codes go out through a ``deliver(kind, user, destination, code)`` callable the web layer
passes when the app is built (mail needs templates and the recipient's language; SMS a configured
sender): ``register_code_factors(svc, deliver, refused)`` in ``create_app``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select

from .. import metrics
from ..core.authn import AMR_OTP
from ..core.steps import PendingLogin, register_factor
from ..storage.models_mfa import MfaOtpChannel
from .enrolment import ClauseEnrolled

log = logging.getLogger("idp.mfa")

AMR_SMS = "sms"  # RFC 8176: confirmation by text message
MAX_ATTEMPTS = 5
CODE_DIGITS = 6

SENT, THROTTLED, FAILED = "sent", "throttled", "failed"

Deliver = Callable[[str, Any, str, str], None]
# Counts a send for the user against the rate limits; True when it is over one (the web
# layer's idp.web.ratelimit.mfa_send_refused: [mfa] max_sends per account, and per address).
Refused = Callable[[Any], bool]


def _key(kind: str, user_id: int, bind: str) -> str:
    return f"mfacode:{kind}:{user_id}:{bind}"


def send_code(
    svc: Any, deliver: Deliver, refused: Refused, kind: str, user: Any, destination: str, bind: str
) -> str:
    """Make a code for (kind, user, bind), replacing an earlier one, and send it. Returns
    ``SENT``, ``THROTTLED`` (too many sends lately: the earlier code still holds) or ``FAILED``
    (the gateway refused)."""
    mfa = svc.settings.mfa
    if refused(user):
        return THROTTLED
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    key = _key(kind, user.id, bind)
    svc.store.put(
        key, {"h": svc.hasher.hash(f"{key}:{code}"), "to": destination}, mfa.code_ttl_seconds
    )
    svc.store.delete(key + ":fails")
    try:
        deliver(kind, user, destination, code)
    except Exception as exc:  # any gateway error: the person gets a message, we get a log line
        svc.store.delete(key)
        if kind == "sms":  # a mail's failure is counted by the mail transport
            metrics.backend_error("sms")
        log.error("could not send %s code to user %s: %s", kind, user.id, exc)
        return FAILED
    return SENT


def has_live_code(svc: Any, kind: str, user_id: int, bind: str) -> bool:
    return svc.store.get(_key(kind, user_id, bind)) is not None


def check_code(svc: Any, kind: str, user_id: int, bind: str, code: str) -> str | None:
    """Spend the code when it matches; returns its destination, else None."""
    key = _key(kind, user_id, bind)
    typed = "".join(ch for ch in (code or "") if not ch.isspace())
    entry = svc.store.get(key)
    if entry is None:
        return None
    if not (len(typed) == CODE_DIGITS and typed.isdigit()) or not hmac.compare_digest(
        svc.hasher.hash(f"{key}:{typed}"), entry["h"]
    ):
        if svc.store.incr(key + ":fails", svc.settings.mfa.code_ttl_seconds) >= MAX_ATTEMPTS:
            svc.store.delete(key)  # guessing on: the code is gone, a new one must be sent
        return None
    taken = svc.store.take(key)  # a concurrent submission of the same code gets None
    return taken["to"] if taken and taken["h"] == entry["h"] else None


def channel(db: Any, user_id: int, kind: str) -> MfaOtpChannel | None:
    return db.scalar(
        select(MfaOtpChannel).where(MfaOtpChannel.user_id == user_id, MfaOtpChannel.kind == kind)
    )


def mask(kind: str, destination: str) -> str:
    """Enough of the address for the person to recognise it, not enough to learn it."""
    if kind == "email":
        local, _sep, domain = destination.partition("@")
        return f"{local[:1]}***@{domain}"
    return "*" * max(len(destination) - 3, 0) + destination[-3:]


class CodeFactor(ClauseEnrolled):
    """The e-mail (``kind="email"``) or SMS (``kind="sms"``) code factor."""

    def __init__(self, kind: str, deliver: Deliver, refused: Refused) -> None:
        self.id = kind
        self.amr = AMR_OTP if kind == "email" else AMR_SMS
        self.label = _l("Code by e-mail") if kind == "email" else _l("Code by text message")
        self.manage_endpoint = f"mfa.{kind}"
        self.deliver, self.refused = deliver, refused

    def enrolled_clause(self, svc: Any, user_id: Any) -> Any:
        return exists().where(MfaOtpChannel.user_id == user_id, MfaOtpChannel.kind == self.id)

    def begin(self, svc: Any, user: Any, pending: PendingLogin) -> dict[str, Any]:
        with svc.sessions() as db:
            ch = channel(db, user.id, self.id)
        if ch is None:
            return {}
        status = SENT
        wants_new = pending.data.pop("resend", False)
        if wants_new or not has_live_code(svc, self.id, user.id, pending.browser):
            status = send_code(
                svc, self.deliver, self.refused, self.id, user, ch.destination, pending.browser
            )
        notices = {
            SENT: _l("We sent a code to %(to)s. It is valid for %(minutes)s minutes."),
            THROTTLED: _l("Too many codes were sent. Wait a few minutes, then ask for a new one."),
            FAILED: _l("The code could not be sent. Try again later or use another method."),
        }
        minutes = max(1, svc.settings.mfa.code_ttl_seconds // 60)
        return {
            "prompt": notices[status] % {"to": mask(self.id, ch.destination), "minutes": minutes},
            "can_resend": True,
        }

    def verify(self, svc: Any, user: Any, pending: PendingLogin, form: Mapping[str, str]) -> bool:
        with svc.sessions() as db:
            ch = channel(db, user.id, self.id)
        if ch is None:
            return False
        spent = check_code(svc, self.id, user.id, pending.browser, form.get("code", ""))
        # A code sent before the address changed does not count for the new one.
        return spent is not None and spent == ch.destination

    def reset(self, svc: Any, db: Any, user: Any) -> None:
        ch = channel(db, user.id, self.id)
        if ch is not None:
            db.delete(ch)


def register_code_factors(svc: Any, deliver: Deliver, refused: Refused) -> None:
    """The e-mail and SMS code factors of ``svc``'s app, sending through ``deliver`` within the
    limits of ``refused`` (called by ``create_app`` with the web layer's functions)."""
    register_factor(svc, CodeFactor("email", deliver, refused))
    register_factor(svc, CodeFactor("sms", deliver, refused))
