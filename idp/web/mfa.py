"""Second factors on the web: what the login needs to know (policy facts, remembered devices),
how e-mail/SMS codes go out, and the management pages under ``/account/mfa/``.

Changing a factor needs a fresh password re-entry (ASVS 5 7.5.1), valid ``[mfa] reauth_minutes``
for this SSO session; every change is audited and the person is told by e-mail (ASVS 4 2.2.3).
An administrator's "require MFA" (or a policy that covers the account) keeps the user from
removing their last factor.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from ..backends import backup_codes, otp_delivery, totp
from ..backends.chain import credential_chain
from ..backends.lockout import lock_key
from ..backends.webauthn import credentials_of
from ..core.authn import AuthnRequest
from ..core.credentials import Outcome
from ..core.policy import MfaRequirement
from ..core.steps import enrolled_factors, factors
from ..sso import stepup
from ..sso.stepup import mfa_policy
from ..storage.models import User
from ..storage.models_mfa import MfaOtpChannel, MfaRememberedDevice, MfaTotp
from . import ratelimit
from .current import svc
from .forms import CodeForm, ConfirmForm, TotpSetupForm
from .guard import lockout
from .mailing import mail_locale, send_mail
from .requestinfo import absolute, audit, client_ip, require_user, safe_next
from .security_mails import wants_mail

bp = Blueprint("mfa", __name__)

DEVICE_COOKIE = "idp_mfa_device"
_REAUTH = "mfareauth:"
_ENROL = "totpenrol:"
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
# Authenticator apps named on the setup page (any RFC 6238 app works); free ones first.
SUGGESTED_APPS = (
    "FreeOTP",
    "Aegis",
    "Google Authenticator",
    "Microsoft Authenticator",
    "1Password",
)


# --- delivery of e-mail/SMS codes ---------------------------------------------------------------


def sms_sender() -> Any:
    return svc().sms_sender


def deliver_code(kind: str, user: User, destination: str, code: str) -> None:
    """Send an e-mail or SMS sign-in code (the code factors' ``deliver``, given to them by
    ``create_app``)."""
    minutes = max(1, svc().settings.mfa.code_ttl_seconds // 60)
    if kind == "email":
        if not send_mail(
            destination, "mfa_code", _l("Your sign-in code"), user=user, code=code, minutes=minutes
        ):
            raise RuntimeError("mail not sent")
        return
    with force_locale(mail_locale(user.email or "", user)):
        text = _(
            "%(code)s is your %(product)s sign-in code. It is valid for %(minutes)s minutes.",
            code=code,
            product=svc().settings.branding.product_name,
            minutes=minutes,
        )
    sms_sender().send(destination, text)


# --- policy facts for the login ----------------------------------------------------------------


def requirement(db: Any, user: User, req: AuthnRequest | None) -> MfaRequirement:
    """What the MFA policy says about this user signing in for ``req`` (idp.sso.stepup)."""
    return stepup.requirement(svc(), db, user, req)


def required_acr_values(req: AuthnRequest, user_uuid: str) -> list[str]:
    """idp.sso.stepup.required_acr_values for code serving a request."""
    return stepup.required_acr_values(svc(), req, user_uuid)


def login_facts(db: Any, user: User, req: AuthnRequest | None) -> tuple[dict[str, Any], Any]:
    """Keyword arguments for ``LoginFacts`` and the requirement (for the pending login)."""
    need = requirement(db, user, req)
    return {
        "require_mfa": need.required,
        "mfa_methods": need.methods if need.required else None,
        "mfa_grace": need.grace,
        "enroll_at_login": mfa_policy(svc()).enroll_at_login,
        "device_remembered": device_remembered(db, user),
    }, need


# --- remembered devices ------------------------------------------------------------------------


def device_remembered(db: Any, user: User) -> bool:
    token = request.cookies.get(DEVICE_COOKIE)
    if not token or len(token) > 100 or mfa_policy(svc()).remember_days <= 0:
        return False
    row = db.scalar(
        select(MfaRememberedDevice).where(
            MfaRememberedDevice.token_hash == svc().hasher.hash("device:" + token)
        )
    )
    now = svc().clock.utcnow()
    if row is None or row.user_id != user.id or row.expires_at <= now:
        return False
    row.last_used_at = now
    return True


def remember_device(db: Any, user: User, response: Response) -> None:
    """Record this browser for the user and give it the cookie (HttpOnly, Secure on https)."""
    days = mfa_policy(svc()).remember_days
    if days <= 0:
        return
    now = svc().clock.utcnow()
    token = secrets.token_urlsafe(32)
    db.execute(
        delete(MfaRememberedDevice).where(
            MfaRememberedDevice.user_id == user.id, MfaRememberedDevice.expires_at <= now
        )
    )
    db.add(
        MfaRememberedDevice(
            user_id=user.id,
            token_hash=svc().hasher.hash("device:" + token),
            created_at=now,
            expires_at=now + timedelta(days=days),
            ip=client_ip(),
            user_agent=(request.user_agent.string or "")[:300],
        )
    )
    audit(db, "mfa.device_remembered", actor=user.uuid, target=user.uuid, days=days)
    response.set_cookie(
        DEVICE_COOKIE,
        token,
        max_age=days * 86400,
        httponly=True,
        secure=svc().settings.issuer.startswith("https://"),
        samesite="Lax",
        path="/login",
    )


# --- account pages ------------------------------------------------------------------------------


def _user() -> User | Response:
    with svc().sessions() as db:
        user = require_user(db)
        if isinstance(user, User):
            db.expunge(user)
        return user


def reauthenticated() -> bool:
    return svc().store.get(_REAUTH + g.sid) is not None


def _reauth_page(status: int = 200, error: str | None = None):
    return render_template(
        "account/mfa_reauth.html",
        user=g.signed_in_user,
        section="account/mfa.html",
        form=ConfirmForm(formdata=None),
        next_url=request.full_path.rstrip("?"),
        error=error,
    ), status


def overview(db: Any, user: User) -> dict[str, Any]:
    """Template variables of ``/account/mfa`` ("Signing in"): every method with its devices,
    names and dates, grouped like Keycloak's account console."""
    now = svc().clock.utcnow()
    devices = db.scalars(
        select(MfaRememberedDevice).where(
            MfaRememberedDevice.user_id == user.id, MfaRememberedDevice.expires_at > now
        )
    ).all()
    need = requirement(db, user, None)
    available = factors(svc())
    channels = {
        kind: otp_delivery.channel(db, user.id, kind)
        for kind in ("email", "sms")
        if kind in available
    }
    return {
        "factors": list(available.values()),
        "available": available,
        "enrolled": {f.id for f in enrolled_factors(svc(), user, db)},
        "totp_device": db.get(MfaTotp, user.id) if "totp" in available else None,
        "webauthn_keys": credentials_of(db, user.id) if "webauthn" in available else [],
        "channels": {
            kind: {"shown": otp_delivery.mask(kind, ch.destination), "created_at": ch.created_at}
            for kind, ch in channels.items()
            if ch is not None
        },
        "backup_left": backup_codes.remaining(db, user.id),
        "backup_enabled": svc().settings.mfa.backup_codes > 0,
        "devices": devices,
        "mfa_required": need.required,
        "allowed": set(need.methods),
        "form": ConfirmForm(formdata=None),
    }


def _notify_change(user: User, what: str) -> None:
    if not wants_mail(user.id, "mfa_changes"):
        return
    send_mail(
        user.email,
        "mfa_changed",
        _l("Your sign-in methods were changed"),
        user=user,
        what=what,
        account_url=absolute("account.mfa"),
    )


def _may_remove(db: Any, user: User, factor_id: str) -> bool:
    """False when removing ``factor_id`` leaves a user who must use MFA without any factor."""
    if not requirement(db, user, None).required:
        return True
    others = [f.id for f in enrolled_factors(svc(), user, db) if f.id not in (factor_id, "backup")]
    return bool(others)


@bp.route("/account/mfa/reauth", methods=["POST"])
def reauth():
    user = _user()
    if not isinstance(user, User):
        return user
    form = ConfirmForm()
    key = lock_key(user, user.username)
    if not form.validate():
        return _reauth_page(400, _("The form expired. Please try again."))
    guard = lockout()
    locked_for = guard.locked_for(key)
    if locked_for is not None:
        page, status = _reauth_page(429, _("Too many failed attempts. Try again later."))
        return page, status, {"Retry-After": str(locked_for), "Cache-Control": "no-store"}
    verdict = credential_chain(svc()).verify(user.username, request.form.get("password", ""))
    with svc().sessions() as db:
        if verdict.outcome is not Outcome.VALID or verdict.user_id != user.id:
            guard.record_failure(key)
            audit(db, "mfa.reauth_failed", actor=user.uuid, target=user.uuid)
            db.commit()
            return _reauth_page(401, _("The password is not correct."))
        guard.clear_failures(key)
        svc().store.put(_REAUTH + g.sid, 1, svc().settings.mfa.reauth_minutes * 60)
        audit(db, "mfa.reauth", actor=user.uuid, target=user.uuid)
        db.commit()
    return redirect(safe_next(request.form.get("next")) or url_for("account.mfa"))


@bp.route("/account/mfa/totp", methods=["GET", "POST"], endpoint="totp")
def totp_page():
    user = _user()
    if not isinstance(user, User):
        return user
    if not reauthenticated():
        return _reauth_page()
    factor = factors(svc())["totp"]
    enrolled = factor.enrolled(svc(), user)
    form = TotpSetupForm()
    sealed = svc().store.get(_ENROL + g.sid)
    if request.method == "GET" or sealed is None:
        if request.method == "POST":
            return redirect(url_for("mfa.totp"))
        secret = totp.new_secret()
        svc().store.put(_ENROL + g.sid, svc().sealer.seal(secret.encode(), "enrol:" + g.sid), 900)
        return _totp_form(user, secret, enrolled, TotpSetupForm(formdata=None))
    secret = svc().sealer.open(sealed, "enrol:" + g.sid).decode()
    p = totp.params(svc())
    step = (
        totp.matching_step(
            secret, request.form.get("code", ""), p.digits, p.period, svc().clock.now()
        )
        if form.validate()
        else None
    )
    if step is None:
        return _totp_form(
            user,
            secret,
            enrolled,
            form,
            _("That code is not correct. Check your device's clock and try again."),
            400,
        )
    svc().store.delete(_ENROL + g.sid)
    with svc().sessions() as db:
        totp.save(svc(), db, user.id, secret, first_step=step)
        db.get(MfaTotp, user.id).name = (form.name.data or "").strip()[:100] or None
        codes = []
        if svc().settings.mfa.backup_codes > 0 and backup_codes.remaining(db, user.id) == 0:
            codes = backup_codes.regenerate(svc(), db, user.id)
        audit(db, "mfa.totp_enrolled", actor=user.uuid, target=user.uuid, replaced=enrolled)
        db.commit()
    _notify_change(user, str(_l("An authenticator app was set up.")))
    if codes:
        return _codes_page(user, codes)
    flash(_("Your authenticator app is set up."), "success")
    return redirect(url_for("account.mfa"))


def _totp_form(
    user: User, secret: str, enrolled: bool, form: Any, error: str | None = None, status: int = 200
):
    uri = totp.provisioning_uri(svc(), user.email or user.username, secret)
    return render_template(
        "account/mfa_totp.html",
        user=user,
        section="account/mfa.html",
        form=form,
        remove_form=ConfirmForm(formdata=None),
        secret=secret,
        uri=uri,
        qr=totp.qr_svg(uri),
        enrolled=enrolled,
        error=error,
        grouped=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        suggested_apps=SUGGESTED_APPS,
    ), status


def _codes_page(user: User, codes: list[str]):
    resp = render_template(
        "account/mfa_backup_codes.html", user=user, section="account/mfa.html", codes=codes
    )
    return Response(resp, headers={"Cache-Control": "no-store"}, mimetype="text/html")


def _remove(user: User, factor_id: str, action: str):
    """POST handler body shared by the remove buttons."""
    if not ConfirmForm().validate():
        abort(400, _("The form expired. Please try again."))
    if not reauthenticated():
        return _reauth_page(403)
    factor = factors(svc()).get(factor_id)
    with svc().sessions() as db:
        if factor is None or not factor.enrolled(svc(), user):
            return redirect(url_for("account.mfa"))
        if not _may_remove(db, user, factor_id):
            flash(_("Your account must keep a second factor. Set up another one first."), "error")
            return redirect(url_for("account.mfa"))
        factor.reset(svc(), db, user)
        audit(db, action, actor=user.uuid, target=user.uuid)
        db.commit()
    _notify_change(user, str(_l("A sign-in method was removed: %(f)s", f=str(factor.label))))
    flash(_("The sign-in method was removed."), "success")
    return redirect(url_for("account.mfa"))


@bp.route("/account/mfa/totp/remove", methods=["POST"])
def totp_remove():
    user = _user()
    if not isinstance(user, User):
        return user
    return _remove(user, "totp", "mfa.totp_removed")


@bp.route("/account/mfa/backup", methods=["GET", "POST"])
def backup():
    user = _user()
    if not isinstance(user, User):
        return user
    if svc().settings.mfa.backup_codes <= 0:
        abort(404)
    if request.method == "GET":
        with svc().sessions() as db:
            left = backup_codes.remaining(db, user.id)
        return render_template(
            "account/mfa_backup.html",
            user=user,
            section="account/mfa.html",
            left=left,
            form=ConfirmForm(formdata=None),
        )
    if not ConfirmForm().validate():
        abort(400, _("The form expired. Please try again."))
    if not reauthenticated():
        return _reauth_page(403)
    with svc().sessions() as db:
        codes = backup_codes.regenerate(svc(), db, user.id)
        audit(db, "mfa.backup_codes_regenerated", actor=user.uuid, target=user.uuid)
        db.commit()
    _notify_change(user, str(_l("New backup codes were made; the old ones no longer work.")))
    return _codes_page(user, codes)


def _channel_page(user: User, kind: str, status: int = 200, **context: Any):
    with svc().sessions() as db:
        ch = otp_delivery.channel(db, user.id, kind)
        destination = ch.destination if ch else None
    return render_template(
        "account/mfa_channel.html",
        user=user,
        section="account/mfa.html",
        kind=kind,
        enrolled=destination is not None,
        shown=otp_delivery.mask(kind, destination) if destination else None,
        form=ConfirmForm(formdata=None),
        code_form=CodeForm(formdata=None),
        **context,
    ), status


def _channel(kind: str):
    user = _user()
    if not isinstance(user, User):
        return user
    if not reauthenticated():
        return _reauth_page(403 if request.method == "POST" else 200)
    if request.method == "GET":
        return _channel_page(user, kind)
    if not ConfirmForm().validate():
        abort(400, _("The form expired. Please try again."))
    action = request.form.get("action")
    bind = "enrol:" + g.sid
    if action == "send":
        destination = user.email if kind == "email" else request.form.get("phone", "").strip()
        if kind == "email" and not (user.email and user.email_verified):
            return _channel_page(
                user, kind, 400, error=_("Confirm your e-mail address on your profile first.")
            )
        if kind == "sms" and not PHONE.match(destination.replace(" ", "")):
            return _channel_page(
                user,
                kind,
                400,
                error=_("Enter the number in international format, for example +491701234567."),
            )
        destination = destination.replace(" ", "")
        sent = otp_delivery.send_code(
            svc(), deliver_code, ratelimit.mfa_send_refused, kind, user, destination, bind
        )
        if sent != otp_delivery.SENT:
            return _channel_page(
                user,
                kind,
                429 if sent == otp_delivery.THROTTLED else 502,
                error=_("The code could not be sent. Try again later."),
            )
        return _channel_page(user, kind, sent_to=otp_delivery.mask(kind, destination))
    if action == "confirm":
        destination = otp_delivery.check_code(
            svc(), kind, user.id, bind, request.form.get("code", "")
        )
        if destination is None:
            return _channel_page(
                user, kind, 400, sent_to="…", error=_("That code is not correct or has expired.")
            )
        with svc().sessions() as db:
            ch = otp_delivery.channel(db, user.id, kind)
            if ch is None:
                ch = MfaOtpChannel(user_id=user.id, kind=kind, created_at=svc().clock.utcnow())
                db.add(ch)
            ch.destination = destination
            if kind == "sms":
                row = db.get(User, user.id)
                if row.phone == destination:
                    row.phone_verified = True
            audit(db, f"mfa.{kind}_enrolled", actor=user.uuid, target=user.uuid)
            db.commit()
        _notify_change(
            user, str(_l("A sign-in method was added: %(f)s", f=str(factors(svc())[kind].label)))
        )
        flash(_("The sign-in method was added."), "success")
        return redirect(url_for("account.mfa"))
    if action == "remove":
        return _remove(user, kind, f"mfa.{kind}_removed")
    abort(400)


@bp.route("/account/mfa/email", methods=["GET", "POST"])
def email():
    return _channel("email")


@bp.route("/account/mfa/sms", methods=["GET", "POST"])
def sms():
    return _channel("sms")


@bp.route("/account/mfa/devices", methods=["POST"])
def forget_devices():
    user = _user()
    if not isinstance(user, User):
        return user
    if not ConfirmForm().validate():
        abort(400, _("The form expired. Please try again."))
    with svc().sessions() as db:
        db.execute(delete(MfaRememberedDevice).where(MfaRememberedDevice.user_id == user.id))
        audit(db, "mfa.devices_forgotten", actor=user.uuid, target=user.uuid)
        db.commit()
    flash(_("Every remembered device will ask for a second factor again."), "success")
    return redirect(url_for("account.mfa"))
