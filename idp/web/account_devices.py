"""``/account/devices`` (the browsers the user signed in from, "forget this device", optionally
with the sessions that began on it) and ``/account/notifications`` (which security mails the
user gets, where the policy lets them choose). Thin: idp.sso.devices and idp.sso.notifications
do the work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..errors import ValidationError
from ..sso import devices, notifications
from ..storage import session_index
from ..storage.models import User
from .account_time import formatters
from .admin.guard import may_open_console
from .current import svc
from .devices import describe
from .forms import ConfirmForm
from .requestinfo import audit, require_user
from .sso import sessions

bp = Blueprint("account_devices", __name__)

KIND_LABELS = {
    "new_device": _l("Sign-in from a new device"),
    "password_expiry": _l("Password about to expire"),
    "mfa_changes": _l("Second factor added or removed"),
}
KIND_HINTS = {
    "new_device": _l("A mail when your account is signed in to from a browser not seen before."),
    "password_expiry": _l("A reminder some days before your password expires."),
    "mfa_changes": _l("A mail when an authenticator, security key or code channel is changed."),
}


def _page(template: str, user: User, status: int = 200, **context: Any):
    return render_template(
        template,
        user=user,
        section=template,
        console_allowed=may_open_console(user.id),
        **formatters(user),
        **context,
    ), status


def _device_id(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 12 else None


@bp.route("/account/devices", methods=["GET", "POST"])
def devices_page():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = ConfirmForm()
        if request.method == "POST":
            if not form.validate():
                abort(400, _("The form expired. Please try again."))
            device = devices.device_of(db, user.id, _device_id(request.form.get("device")) or 0)
            if device is None:
                flash(_("That device was already forgotten."), "info")
                return redirect(url_for("account_devices.devices_page"))
            ended = 0
            if request.form.get("end_sessions"):
                only = devices.sessions_on(db, device.id)
                db.commit()  # nothing written yet; the store is written next
                ended = session_index.end_user_sessions(
                    db, sessions(), user.id, keep_sid=g.sid, only=only
                )
            name = describe(device.user_agent).name
            devices.forget(db, device)
            audit(
                db,
                "device.forgotten",
                actor=user.uuid,
                target=user.uuid,
                device=device.name,
                sessions_ended=ended,
            )
            db.commit()
            if ended:
                flash(
                    _(
                        "%(device)s was forgotten and %(n)s session(s) on it were signed out.",
                        device=name,
                        n=ended,
                    ),
                    "success",
                )
            else:
                flash(_("%(device)s was forgotten.", device=name), "success")
            return redirect(url_for("account_devices.devices_page"))
        here = devices.current_device_id(
            db, svc().hasher, user.id, request.cookies.get(devices.COOKIE)
        )
        rows = [
            {"row": d, "device": describe(d.user_agent), "current": d.id == here}
            for d in devices.devices_of(db, user.id)
        ]
        return _page("account/devices.html", user, devices=rows, form=form)


@bp.route("/account/notifications", methods=["GET", "POST"])
def notifications_page():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        settings = svc().settings
        form = ConfirmForm()
        error, status = None, 200
        if request.method == "POST":
            if not form.validate():
                abort(400, _("The form expired. Please try again."))
            wanted = request.form.getlist("kind")
            try:
                changed = notifications.choose(db, settings, user.id, wanted, svc().clock.utcnow())
            except ValidationError:
                db.rollback()
                error, status = (
                    _(
                        "Your organisation always sends some of these mails; they cannot be "
                        "turned off. Nothing was changed."
                    ),
                    400,
                )
            else:
                if changed:
                    audit(
                        db,
                        "notifications.changed",
                        actor=user.uuid,
                        target=user.uuid,
                        on=sorted(k for k in changed if k in wanted),
                        off=sorted(k for k in changed if k not in wanted),
                    )
                db.commit()
                flash(_("Your mail settings were saved."), "success")
                return redirect(url_for("account_devices.notifications_page"))
        return _page(
            "account/notifications.html",
            user,
            status,
            choices=notifications.choices(db, settings, user.id),
            labels=KIND_LABELS,
            hints=KIND_HINTS,
            form=form,
            error=error,
        )
