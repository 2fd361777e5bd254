"""TOTP second factor (RFC 6238 on pyotp).

Seeds are 160 random bits (RFC 4226 section 4 recommends at least that), sealed at rest with the
service sealer and bound to the user id, so a seed copied to another row does not open. A code is
accepted for the current time step and one step either side (RFC 6238 section 5.2 allows a small
window for clock drift); the accepted step is stored and no code of that step or an earlier one is
accepted again, so a code seen over someone's shoulder is useless after its first use.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyotp
from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, or_, update

from ..core.authn import AMR_OTP
from ..core.steps import PendingLogin
from ..storage.models_mfa import MfaTotp
from .enrolment import ClauseEnrolled

log = logging.getLogger("idp.mfa")

SKEW_STEPS = 1


@dataclass(frozen=True)
class TotpParams:
    issuer: str
    digits: int
    period: int


def params(svc: Any) -> TotpParams:
    mfa = svc.settings.mfa
    return TotpParams(
        mfa.totp_issuer or svc.settings.branding.product_name, mfa.totp_digits, mfa.totp_period
    )


def new_secret() -> str:
    """A fresh base32 seed of 160 bits from the system CSPRNG."""
    return pyotp.random_base32(32)


def provisioning_uri(svc: Any, account_name: str, secret: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read from the QR code."""
    p = params(svc)
    return pyotp.TOTP(secret, digits=p.digits, interval=p.period).provisioning_uri(
        name=account_name, issuer_name=p.issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no image request, no third-party QR service)."""
    import segno  # the enrolment page only, not every worker at start

    return segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff")


def _seal_context(user_id: int) -> str:
    return f"totp:{user_id}"


def seal(svc: Any, user_id: int, secret: str) -> str:
    return svc.sealer.seal(secret.encode(), _seal_context(user_id))


def normalize(code: str) -> str:
    return "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-")


def matching_step(secret: str, code: str, digits: int, period: int, now: float) -> int | None:
    """The time step ``code`` belongs to within the allowed skew, or None."""
    code = normalize(code)
    # ASCII only: other scripts' digits pass isdigit() and make compare_digest raise (a 500).
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=digits, interval=period)
    current = int(now // period)
    found = None
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        # Compare every candidate (no early exit) so timing says nothing about which matched.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def save(svc: Any, db: Any, user_id: int, secret: str, first_step: int | None = None) -> None:
    """Store a confirmed seed (replacing an older one). ``first_step`` is the step of the code
    that confirmed it, which therefore cannot be used again to sign in."""
    p = params(svc)
    row = db.get(MfaTotp, user_id)
    if row is None:
        row = MfaTotp(user_id=user_id)
        db.add(row)
    row.secret_sealed = seal(svc, user_id, secret)
    row.digits, row.period = p.digits, p.period
    row.last_step = first_step
    row.created_at = svc.clock.utcnow()
    row.last_used_at = None


def check(svc: Any, user_id: int, code: str) -> bool:
    """Verify a code against the user's seed and spend its time step, atomically: of two
    requests with the same code at once, only one passes."""
    now = svc.clock.now()
    with svc.sessions.begin() as db:
        row = db.get(MfaTotp, user_id)
        if row is None:
            return False
        try:
            secret = svc.sealer.open(row.secret_sealed, _seal_context(user_id)).decode()
        except ValueError:
            log.error("TOTP seed of user %s cannot be opened (key changed?)", user_id)
            return False
        step = matching_step(secret, code, row.digits, row.period, now)
        if step is None:
            return False
        if row.last_step is not None and step <= row.last_step:
            log.warning("TOTP code replayed for user %s (step %s)", user_id, step)
            return False
        spent = db.execute(
            update(MfaTotp)
            .where(MfaTotp.user_id == user_id)
            .where(or_(MfaTotp.last_step.is_(None), MfaTotp.last_step < step))
            .values(last_step=step, last_used_at=svc.clock.utcnow())
        )
        return spent.rowcount == 1


def remove(db: Any, user_id: int) -> bool:
    row = db.get(MfaTotp, user_id)
    if row is None:
        return False
    db.delete(row)
    return True


class TotpFactor(ClauseEnrolled):
    id = "totp"
    amr = AMR_OTP
    label = _l("Authenticator app")
    manage_endpoint = "mfa.totp"

    def enrolled_clause(self, svc: Any, user_id: Any) -> Any:
        return exists().where(MfaTotp.user_id == user_id)

    def begin(self, svc: Any, user: Any, pending: PendingLogin) -> dict[str, Any]:
        return {"prompt": _l("Enter the code shown in your authenticator app.")}

    def verify(self, svc: Any, user: Any, pending: PendingLogin, form: Mapping[str, str]) -> bool:
        return check(svc, user.id, form.get("code", ""))

    def reset(self, svc: Any, db: Any, user: Any) -> None:
        remove(db, user.id)
