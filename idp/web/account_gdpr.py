"""``/account/delete``: the person deletes their account (docs/gdpr.md). With ``[gdpr] deletion
= "immediate"`` the account is erased at once after the password is confirmed, and the browser
is signed out; with ``"approval"`` a request waits for an administrator (the person may withdraw
it); ``"off"``: no such page. The password is asked again either way: a session left open on a
shared computer must not be enough to erase an account."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..backends.chain import credential_chain
from ..backends.lockout import lock_key
from ..core.credentials import Outcome
from ..errors import Conflict, NotFound
from ..manage import Actor, Context, gdpr
from ..storage.models import User
from .account_time import formatters
from .admin.guard import may_open_console
from .current import svc
from .forms import ConfirmForm
from .gdpr_mail import tell_erased
from .guard import lockout
from .requestinfo import audit, client_ip, require_user
from .sso import sessions

bp = Blueprint("account_gdpr", __name__)

_TEMPLATE = "account/delete.html"


def _mode() -> str:
    return svc().settings.gdpr.deletion


def _render(user: User, status: int = 200, **context):
    ctx = _ctx(user)
    return render_template(
        _TEMPLATE,
        user=user,
        section=_TEMPLATE,
        console_allowed=may_open_console(user.id),
        mode=_mode(),
        pending=gdpr.pending_request(ctx, user),
        latest=gdpr.latest_request(ctx, user),
        form=ConfirmForm(formdata=None),
        **formatters(user),
        **context,
    ), status


def _ctx(user: User) -> Context:
    actor = Actor.user(user.id, user.uuid, ip=client_ip(), request_id=g.get("request_id"))
    return Context(g.gdpr_db, svc(), actor)


def _password_ok(db, user: User) -> bool:
    """The person's own password, through the credential chain (local or LDAP), under the
    same lockout as the sign-in: this form is no password-guessing oracle."""
    guard, key = lockout(), lock_key(user, user.username)
    if guard.is_locked(key):
        return False
    verdict = credential_chain(svc()).verify(user.username, request.form.get("password", ""))
    if verdict.outcome is Outcome.VALID and verdict.user_id == user.id:
        guard.clear_failures(key)
        return True
    guard.record_failure(key)
    audit(db, "account.delete_reauth_failed", actor=user.uuid, target=user.uuid)
    db.commit()
    return False


@bp.route("/account/delete", methods=["GET", "POST"])
def delete():
    if _mode() == "off":
        abort(404)
    with svc().sessions() as db:
        g.gdpr_db = db
        user = require_user(db)
        if not isinstance(user, User):
            return user
        if request.method == "GET":
            return _render(user)
        if not ConfirmForm().validate():
            return _render(user, 400, error=_("The form expired. Please try again."))
        if request.form.get("action") == "withdraw":
            return _withdraw(db, user)
        if not _password_ok(db, user):
            return _render(user, 401, error=_("The password is not correct."))
        if _mode() == "immediate":
            return _erase_now(db, user)
        try:
            gdpr.request_deletion(_ctx(user), user)
        except Conflict as exc:
            db.rollback()
            return _render(user, 409, error=str(exc))
        db.commit()
    flash(_("Your request was sent. You will get an e-mail when it was decided."), "success")
    return redirect(url_for("account_gdpr.delete"))


def _withdraw(db, user: User):
    try:
        gdpr.withdraw_request(_ctx(user), user)
    except NotFound:
        db.rollback()
        return _render(user, 409, error=_("No deletion request of your account is waiting."))
    db.commit()
    flash(_("Your deletion request was withdrawn. Your account stays."), "success")
    return redirect(url_for("account_gdpr.delete"))


def _erase_now(db, user: User):
    try:
        erasure = gdpr.erase_own(_ctx(user), user, sessions=sessions())
    except Conflict as exc:
        db.rollback()
        return _render(user, 409, error=str(exc))
    db.commit()
    tell_erased(erasure)
    session.clear()
    return render_template(
        "message.html",
        title=_("Your account was deleted"),
        message=_("Your account and your personal data were erased. You are signed out."),
    )
