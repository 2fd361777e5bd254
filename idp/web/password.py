"""Recovery and onboarding by e-mail: password reset, first-login magic link (e-mail plus the
tenant's control word), e-mail verification, self-registration with optional approval.

Every mailed link carries a single-use token stored only as a keyed hash, expiring after
``[recovery] token_minutes``. Request forms answer the same whether or not an account exists.
A mailed link is opened with GET (harmless: mail scanners fetch links) and used by a POST.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..backends.chain import password_hasher
from ..core.policy import ACCOUNT_OK, normalize_answer
from ..errors import Conflict, ValidationError
from ..sso.signout import sign_out_user
from ..sso.users import find_user, state_of
from ..storage.directory import Directory, NewUser
from ..storage.models import Company, User
from ..storage.models_auth import SecurityAnswer
from ..storage.tokens import OneTimeTokens
from . import ratelimit
from .current import svc
from .forms import ApprovalForm, ConfirmForm, FirstLoginForm, RegisterForm, ResetRequestForm
from .guard import lockout, unlock
from .i18n import html_lang
from .login import start_pending
from .mailing import mail_locale, queue_mail
from .password_policy import password_problems, policy_help, set_password
from .requestinfo import absolute, audit, client_ip
from .sso import sessions

bp = Blueprint("password", __name__)

# Wrong security answers before a reset link is burnt.
MAX_ANSWER_FAILURES = 3


# The summary above a new-password form whose rules beside the field are not met.
CHOOSE_ANOTHER = _l("Please check the password and try again.")


def _message(title: str, message: str, status: int = 200):
    return render_template("message.html", title=title, message=message), status


def _link_expired():
    return _message(
        _("This link has expired"),
        _(
            "The link is no longer valid: it was used already or is too old. "
            "Please ask for a new one."
        ),
        400,
    )


def _tokens() -> OneTimeTokens:
    s = svc()
    return OneTimeTokens(s.store, s.hasher, s.settings.recovery.token_minutes)


def _password_version(user: User) -> str:
    """Ties a reset token to the password it replaces: once the password changes, older reset
    links stop working even if they were never used."""
    return svc().hasher.hash(f"pw:{user.id}:{user.password_hash or ''}")[-16:]


# --- password reset -----------------------------------------------------------------------------


@bp.route("/password/reset", methods=["GET", "POST"])
def reset_request():
    form = ResetRequestForm()
    if request.method == "GET" or not form.validate():
        status = 400 if request.method == "POST" else 200
        return render_template("password_reset_request.html", form=form), status
    address = form.email.data.strip().lower()
    # Counted by what was typed, known or not, before anything is looked up (stops mail
    # bombing through this form; a refusal tells nothing about the account).
    refused = ratelimit.hit("reset", address)
    if refused is not None:
        return ratelimit.too_many(refused)
    with svc().sessions() as db:
        # A username or an e-mail address, in one statement whichever it is (and whether or not
        # it exists): the answer and the work done must not tell (test_reset_timing).
        user = find_user(db, address)
        eligible = (
            user is not None
            and user.source in ("local", "scim")
            and state_of(svc(), user) == ACCOUNT_OK
        )
        _mail_link(
            db,
            user if eligible else None,
            "reset",
            {"uid": user.id, "pv": _password_version(user)} if eligible else {},
            "password.reset_confirm",
            _l("Reset your password"),
            "password.reset_requested",
        )
    return _message(
        _("Check your e-mail"),
        _(
            "If an account has this username or address, we have sent a link to reset the "
            "password to its e-mail address. The link is valid for %(minutes)s minutes.",
            minutes=svc().settings.recovery.token_minutes,
        ),
    )


def _questions_for(db: Any, user: User) -> list[SecurityAnswer]:
    if not svc().settings.recovery.security_questions:
        return []
    return list(
        db.scalars(
            select(SecurityAnswer)
            .where(SecurityAnswer.user_id == user.id)
            .order_by(SecurityAnswer.question)
        )
    )


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_confirm(token: str):
    from .forms import NewPasswordForm

    data = _tokens().peek("reset", token)
    if not data:
        return _link_expired()
    form = NewPasswordForm()
    with svc().sessions() as db:
        user = db.get(User, data["uid"])
        if user is None or data.get("pv") != _password_version(user):
            return _link_expired()
        questions = _questions_for(db, user)
        page = {
            "form": form,
            "questions": questions,
            "rules": policy_help(),
            "username": user.username,
        }
        if request.method == "GET":
            return render_template("password_reset_confirm.html", **page)
        if not form.validate():
            return render_template(
                "password_reset_confirm.html", error=_("Please fill in the form."), **page
            ), 400
        hasher = password_hasher(svc())
        for i, q in enumerate(questions):
            answer = normalize_answer(request.form.get(f"answer_{i}", ""))
            if not hasher.verify(answer, q.answer_hash)[0]:
                if svc().store.incr(f"answerfail:{token[:16]}", 3600) >= MAX_ANSWER_FAILURES:
                    _tokens().take("reset", token)
                audit(db, "password.reset_answer_failed", target=user.uuid)
                db.commit()
                return render_template(
                    "password_reset_confirm.html",
                    error=_("The answers to the security questions are not correct."),
                    **page,
                ), 400
        new = form.new_password.data
        if new != form.confirm.data:
            form.confirm.errors = [_("The two passwords do not match.")]
            return render_template(
                "password_reset_confirm.html", error=str(CHOOSE_ANOTHER), **page
            ), 400
        problems = password_problems(db, user, new)
        if problems:
            form.new_password.errors = problems  # every broken rule at once, beside the field
            return render_template(
                "password_reset_confirm.html", error=str(CHOOSE_ANOTHER), **page
            ), 400
        if _tokens().take("reset", token) is None:  # used meanwhile by another request
            return _link_expired()
        unlock(user.id)
        sign_out_user(sessions(), db, user.id)  # every session and refresh token
        set_password(db, user, new, reason="reset")
        user.email_verified = True  # they read a mail sent to it
        db.commit()
    flash(_("Your password was changed. Please sign in with the new password."), "success")
    return redirect(url_for("login.login"))


# --- first login by magic link ------------------------------------------------------------------


@bp.route("/login/first", methods=["GET", "POST"])
def first_login():
    form = FirstLoginForm()
    if request.method == "GET" or not form.validate():
        status = 400 if request.method == "POST" else 200
        return render_template("first_login.html", form=form), status
    address = form.email.data.strip().lower()
    refused = ratelimit.hit("magic_link", address)
    if refused is not None:
        return ratelimit.too_many(refused)
    hasher = password_hasher(svc())
    with svc().sessions() as db:
        user = db.scalar(select(User).where(User.email == address))
        company = db.get(Company, user.company_id) if user and user.company_id else None
        stored = company.control_word_hash if company else None
        # One hash either way, so the answer time does not tell which case applies.
        word_ok = hasher.verify(normalize_answer(form.control_word.data), stored)[0]
        eligible = (
            word_ok
            and user is not None
            and user.password_hash is None
            and user.source == "local"
            and state_of(svc(), user) == ACCOUNT_OK
        )
        if not word_ok:
            lockout().record_ip_failure(client_ip())
        _mail_link(
            db,
            user if eligible else None,
            "magic",
            {"uid": user.id} if eligible else {},
            "password.magic",
            _l("Your sign-in link"),
            "login.magic_link_sent",
            template="magic_link",
        )
    return _message(
        _("Check your e-mail"),
        _(
            "If the address and the control word match a new account, we have sent a sign-in "
            "link to that address."
        ),
    )


def _mail_link(
    db,
    user: User | None,
    purpose: str,
    claims: dict,
    endpoint: str,
    subject,
    action: str,
    template: str | None = None,
) -> None:
    """Mail ``user`` a single-use link of ``purpose`` to ``endpoint``, and audit it.

    ``user=None`` (no account may get this link) takes the same steps with nothing real in
    them: a token stored under a purpose no route reads, an audit row without a target
    (``<action>`` with ``sent: false``), a mail job that sends nothing. The same statements,
    store writes and queue work either way, and the mail itself leaves after the response, so
    neither the answer time nor the page tells whether the address has an account."""
    minutes = svc().settings.recovery.token_minutes
    if user is None:
        _tokens().issue("void", {})
        queue_mail(None, template or purpose, subject)
        audit(db, action, target=None, sent=False)
    else:
        token = _tokens().issue(purpose, claims)
        link = absolute(endpoint, token=token)
        queue_mail(user.email, template or purpose, subject, user=user, link=link, minutes=minutes)
        audit(db, action, target=user.uuid, sent=True)
    db.commit()


def send_reset_link(user: User) -> None:
    """An administrator sends ``user`` a password-reset link (the console's and the API's batch
    action): the same single-use token and mail as the user's own "Forgot password?" request,
    in the user's language rather than the administrator's."""
    token = _tokens().issue("reset", {"uid": user.id, "pv": _password_version(user)})
    queue_mail(
        user.email,
        "reset",
        _l("Reset your password"),
        locale=mail_locale(user.email),
        user=user,
        link=absolute("password.reset_confirm", token=token),
        minutes=svc().settings.recovery.token_minutes,
    )


@bp.route("/login/magic/<token>", methods=["GET", "POST"])
def magic(token: str):
    if not _tokens().peek("magic", token):
        return _link_expired()
    form = ConfirmForm()
    if request.method == "GET" or not form.validate():
        return render_template(
            "magic_confirm.html", form=form
        ), 400 if request.method == "POST" else 200
    data = _tokens().take("magic", token)
    if not data:
        return _link_expired()
    with svc().sessions() as db:
        user = db.get(User, data["uid"])
        if user is None or state_of(svc(), user) != ACCOUNT_OK:
            return _link_expired()
        user.email_verified = True
        audit(db, "login.magic_link_used", actor=user.uuid, target=user.uuid)
        return start_pending(
            db,
            user,
            ["otp"],  # a one-time secret delivered to the mailbox (RFC 8176 "otp")
            rid=None,
            next_url=None,
            local_password=True,
            change_reason="first_login",
        )


def set_control_word(db: Any, company: Company, word: str | None) -> None:
    """Set (or clear, with None) a tenant's control word; it is stored as a password hash."""
    company.control_word_hash = (
        password_hasher(svc()).hash(normalize_answer(word)) if word else None
    )


# --- e-mail verification ------------------------------------------------------------------------


def send_verification(user: User) -> None:
    token = _tokens().issue("verify", {"uid": user.id, "email": user.email})
    queue_mail(
        user.email,
        "verify_email",
        _l("Confirm your e-mail address"),
        user=user,
        link=absolute("password.verify_email", token=token),
        minutes=svc().settings.recovery.token_minutes,
    )


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
def verify_email(token: str):
    if not _tokens().peek("verify", token):
        return _link_expired()
    form = ConfirmForm()
    if request.method == "GET" or not form.validate():
        return render_template(
            "verify_email.html", form=form
        ), 400 if request.method == "POST" else 200
    data = _tokens().take("verify", token)
    if not data:
        return _link_expired()
    with svc().sessions() as db:
        user = db.get(User, data["uid"])
        if user is None or user.email != data.get("email"):
            return _link_expired()
        user.email_verified = True
        audit(db, "email.verified", actor=user.uuid, target=user.uuid)
        reg = svc().settings.registration
        title, message = _("E-mail address confirmed"), _("Thank you. You can now sign in.")
        notify = False
        if user.status == "pending" and user.custom.get("registration") == "awaiting_email":
            if reg.require_approval:
                user.custom = {**user.custom, "registration": "awaiting_approval"}
                notify = True
                message = _("Thank you. An administrator will review your account soon.")
            else:
                user.status = "active"
                user.custom = {k: v for k, v in user.custom.items() if k != "registration"}
        db.commit()
        if notify:
            _notify_admins(user)
    return _message(title, message)


# --- self-registration --------------------------------------------------------------------------


def _notify_admins(user: User) -> None:
    reg = svc().settings.registration
    minutes = svc().settings.recovery.approval_token_minutes
    for admin in reg.admin_emails:
        token = _tokens().issue("approve", {"uid": user.id}, minutes=minutes)
        queue_mail(
            admin,
            "approval_request",
            _l("New account waiting for approval: %(username)s", username=user.username),
            user=user,
            link=absolute("password.approve", token=token),
        )


def decide_registration(db: Any, user: User, approved: bool, actor: str | None = None) -> None:
    """Approve (active) or reject (inactive) a pending registration and tell the person."""
    user.status = "active" if approved else "inactive"
    user.custom = {k: v for k, v in (user.custom or {}).items() if k != "registration"}
    audit(
        db,
        "registration.approved" if approved else "registration.rejected",
        actor=actor,
        target=user.uuid,
    )
    queue_mail(
        user.email,
        "approval",
        _l("Your account was approved") if approved else _l("Your account request was declined"),
        user=user,
        approved=approved,
        login_url=absolute("login.login"),
    )


@bp.route("/register", methods=["GET", "POST"])
def register():
    reg = svc().settings.registration
    if not reg.enabled:
        abort(404)
    form = RegisterForm()
    # A new account has no earlier passwords: no history rule.
    page: dict[str, Any] = {"form": form, "rules": policy_help(history=False)}
    if request.method == "GET":
        return render_template("register.html", **page)
    if not form.validate():
        return render_template("register.html", **page), 400
    address = form.email.data.strip().lower()
    refused = ratelimit.hit("registration", address)
    if refused is not None:
        return ratelimit.too_many(refused)
    domain = address.rpartition("@")[2]
    if reg.allowed_domains and domain not in {d.lower() for d in reg.allowed_domains}:
        form.email.errors = [_("Accounts cannot be registered with this e-mail domain.")]
        return render_template("register.html", **page), 400
    candidate = User(
        username=form.username.data,
        email=address,
        given_name=form.given_name.data,
        family_name=form.family_name.data,
    )
    with svc().sessions() as db:
        if form.new_password.data != form.confirm.data:
            form.confirm.errors = [_("The two passwords do not match.")]
            return render_template("register.html", error=str(CHOOSE_ANOTHER), **page), 400
        problems = password_problems(db, candidate, form.new_password.data)
        if problems:
            # Every broken rule at once, beside the field.
            form.new_password.errors = problems
            return render_template("register.html", error=str(CHOOSE_ANOTHER), **page), 400
        waiting = (
            "awaiting_email"
            if reg.require_email_verification
            else ("awaiting_approval" if reg.require_approval else None)
        )
        try:
            user = Directory(db).create_user(
                NewUser(
                    username=form.username.data,
                    email=address,
                    password_hash=password_hasher(svc()).hash(form.new_password.data),
                    given_name=form.given_name.data or None,
                    family_name=form.family_name.data or None,
                )
            )
        except (Conflict, ValidationError):
            db.rollback()
            return render_template(
                "register.html",
                error=_(
                    "This username or e-mail address cannot be used. If you already have an "
                    "account, sign in or reset your password."
                ),
                **page,
            ), 400
        user.password_changed_at = svc().clock.utcnow()
        # The language they registered in, so later mails (approval) reach them in it.
        user.locale = html_lang()
        if waiting:
            user.status = "pending"
            user.custom = {"registration": waiting}
        audit(db, "registration.created", actor=user.uuid, target=user.uuid)
        db.commit()
        if waiting == "awaiting_email":
            send_verification(user)
            message = _("We have sent you an e-mail. Please confirm your address to continue.")
        elif waiting == "awaiting_approval":
            _notify_admins(user)
            message = _("Your account was created. An administrator will review it soon.")
        else:
            message = _("Your account was created. You can now sign in.")
    return _message(_("Account created"), message)


@bp.route("/register/approve/<token>", methods=["GET", "POST"])
def approve(token: str):
    data = _tokens().peek("approve", token)
    if not data:
        return _link_expired()
    with svc().sessions() as db:
        user = db.get(User, data["uid"])
        if user is None or user.status != "pending":
            return _link_expired()
        form = ApprovalForm()
        if request.method == "GET" or not form.validate():
            status = 400 if request.method == "POST" else 200
            return render_template("approve.html", form=form, user=user), status
        if _tokens().take("approve", token) is None:
            return _link_expired()
        approved = bool(form.approve.data)
        decide_registration(db, user, approved, actor="approval-link")
        db.commit()
    return _message(
        _("Done"),
        _("The account was approved.") if approved else _("The account request was declined."),
    )
