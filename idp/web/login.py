"""The hosted login (``/login``), its further steps (``/login/step``) and logout (``/logout``).

The protocol engines store an ``AuthnRequest`` and send the browser to ``/login?r=<id>``; this
module runs the steps the policy asks for, creates the SSO session, and sends the browser to the
request's ``resume_url`` (the engine takes the request there). Without ``r`` a login ends on the
``next`` page (same origin only) or ``/account/``.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy import bindparam, delete, update
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from ..backends.chain import credential_chain
from ..backends.lockout import lock_key
from ..core.authn import AMR_MFA, AuthnRequest, acr_for, session_satisfies
from ..core.credentials import Outcome
from ..core.policy import (
    ACCOUNT_OK,
    STEP_MFA,
    STEP_MFA_ENROLL,
    LoginFacts,
    password_age,
    plan_steps,
)
from ..core.steps import PendingLogin, StepContext, enrolled_factors
from ..sso import broker as broker_hub
from ..sso import network, notifications
from ..sso.limits import session_slot
from ..sso.users import find_user, state_of
from ..storage import session_index, terms
from ..storage.models import User
from ..storage.models_auth import SsoSessionIndex
from . import broker_start, known_devices, mfa, ratelimit, risk
from .current import svc
from .forms import ConfirmForm, LoginForm
from .guard import lockout
from .i18n import (
    LANG_COOKIE,
    LANG_COOKIE_DAYS,
    init_ui,
    locale_hints,
    offered_language,
    offered_languages,
)
from .kept import render_kept
from .login_steps import MAX_STEP_FAILURES, STEPS
from .mailing import queue_mail
from .netguard import refused
from .password_policy import password_policy
from .requestinfo import absolute, audit, audit_now, client_ip, safe_next
from .sso import browser_sid, sessions

log = logging.getLogger("idp.login")

bp = Blueprint("login", __name__)
bp.record_once(lambda state: init_ui(state.app))

_LAST_LOGIN = (
    update(User.__table__).where(User.id == bindparam("uid")).values(last_login_at=bindparam("at"))
)

PENDING_TTL = 600  # seconds a half-finished login waits for its next step
_PENDING = "plogin:"

BAD_CREDENTIALS = _l("The username or password is not correct.")
LOCKED_OUT = _l(
    "Too many failed sign-in attempts. Wait %(minutes)s minutes and try again, "
    "or reset your password."
)
STATE_MESSAGES = {
    "inactive": _l("This account is disabled. Please contact your administrator."),
    "locked": _l("This account is locked. Please contact your administrator."),
    "pending": _l(
        "This account is not active yet: it waits for e-mail confirmation or an "
        "administrator's approval."
    ),
    "expired": _l("This account has expired. Please contact your administrator."),
    "not_yet_active": _l("This account is not active yet. Please try again on your start date."),
}
RISK_DENIED = _l(
    "This sign-in was refused because it looks unusual for your account (a new device or "
    "place, or many recent attempts). Try again from a device you have used before, or "
    "contact your administrator."
)
STEP_ERRORS = {
    "bad_code": _l("That code is not correct. Please try again."),
    "mismatch": _l("The two passwords do not match."),
    "policy": _l("Please choose another password."),
    "terms_declined": _l(
        "You did not accept the terms of use and privacy policy, so you were not signed in."
    ),
    "mfa_not_enrolled": _l(
        "Your account needs a second factor, but none is set up. Please contact your administrator."
    ),
}


# --- helpers ------------------------------------------------------------------------------------


def _request_of(rid: str | None) -> AuthnRequest | None:
    req = sessions().load_request(rid) if rid else None
    if req is not None:
        locale_hints(ui_locales=req.ui_locales)
    return req


def _expired_request() -> tuple[str, int]:
    return render_template(
        "message.html",
        title=_("This sign-in link has expired"),
        message=_(
            "The sign-in took too long or the link was already used. Go back to the "
            "application and start again."
        ),
    ), 400


def remember_me_days() -> int:
    """Days a "keep me signed in" session lasts; 0: the choice is not offered."""
    return svc().settings.session.remember_me_days


def passkeys_usable() -> bool:
    """Passkey sign-in is on and can work here: WebAuthn needs a secure context (https, or
    http on localhost) and an RP ID that is a domain name, never an IP address (browsers
    refuse those, 127.0.0.1 included)."""
    if not svc().webauthn_rp.passwordless:
        return False
    issuer = urlsplit(svc().settings.issuer)
    host = (issuer.hostname or "").lower()
    if not host or _is_ip(host):
        return False
    return issuer.scheme == "https" or host == "localhost" or host.endswith(".localhost")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _page_extras(upstreams: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """What the login page shows besides its form: the settings, and the upstream identity
    providers offered to this request (docs/brokering.md)."""
    return {
        "registration": svc().settings.registration.enabled,
        "remember_days": remember_me_days(),
        "passkey_login": passkeys_usable(),
        "upstreams": upstreams,
    }


def _login_page(form: LoginForm, error: str | None = None, status: int = 200):
    return render_template(
        "login.html",
        form=form,
        error=error,
        csrf_value=generate_csrf(),
        **_page_extras(broker_start.buttons(form.r.data or None)),
    ), status


def _fresh_login_page(rid: str | None, next_url: str | None, username: str | None) -> str:
    """The login form as a first GET shows it, from the kept page (idp.web.kept), unless
    messages flashed for this browser are waiting to be shown."""
    if "_flashes" in session:
        form = LoginForm(formdata=None, r=rid or "", next=next_url or "")
        form.username.data = username
        return _login_page(form)[0]
    values = {
        "csrf_value": generate_csrf(),
        "r": rid,
        "next": next_url,
        "username": username,
        # The language switcher's way back to this very page.
        "here": request.full_path.rstrip("?"),
    }

    upstreams = broker_start.buttons(rid)

    def context(v: dict[str, str | None]) -> dict[str, Any]:
        form = LoginForm(formdata=None, r=v["r"] or "", next=v["next"] or "")
        # An override written for {{ form.csrf_token }} gets the same value (or marker).
        form.csrf_token.current_token = v["csrf_value"]
        form.username.data = v["username"]
        return {
            "form": form,
            "error": None,
            "csrf_value": v["csrf_value"],
            "here": v["here"],
            **_page_extras(upstreams),
        }

    return render_kept("login.html", values, context, shape=upstreams)


def _save_pending(pending: PendingLogin) -> None:
    """Store under a fresh id; the browser's signed session cookie carries the id and the
    secret the record is bound to, so the record is useless anywhere else and once only."""
    pid = secrets.token_urlsafe(24)
    secret = session.get("login_b") or secrets.token_urlsafe(24)
    pending.browser = svc().hasher.hash(secret)
    svc().store.put(_PENDING + pid, pending.to_dict(), PENDING_TTL)
    session["login_p"] = pid
    session["login_b"] = secret


def _pending(take: bool) -> PendingLogin | None:
    pid, secret = session.get("login_p"), session.get("login_b")
    if not pid or not secret:
        return None
    store = svc().store
    data = store.take(_PENDING + pid) if take else store.get(_PENDING + pid)
    if not data:
        return None
    pending = PendingLogin.from_dict(data)
    if not svc().hasher.verify(secret, pending.browser):
        return None
    return pending


def _drop_pending() -> None:
    pid = session.pop("login_p", None)
    session.pop("login_b", None)
    if pid:
        svc().store.delete(_PENDING + pid)


def release_write_lock(db: Any) -> None:
    """Commit what ``db`` changed, so the store (its own connection) may write: SQLite has one
    writer at a time, and a write transaction left open here would make the store wait for it.
    A session that only read is left open: committing it would cost a round trip and a fresh
    pooled connection for its next query, several times per login."""
    if db.new or db.dirty or db.deleted:
        db.commit()
        return
    if not db.in_transaction():
        return
    raw = db.connection().connection.dbapi_connection
    # The sqlite3 driver opens a transaction only before a write, so its ``in_transaction`` says
    # "holds the write lock". Other drivers have no such flag: commit, as for a write.
    if getattr(raw, "in_transaction", True):
        db.commit()


def start_pending(
    db: Any,
    user: User,
    amr: list[str],
    *,
    rid: str | None,
    next_url: str | None,
    local_password: bool,
    change_reason: str | None = None,
    remember_me: bool = False,
    data: dict[str, Any] | None = None,
) -> Response:
    """After the first factor: plan the remaining steps and run them (or finish at once).
    ``remember_me``: the person asked to stay signed in (honoured when the policy offers it);
    ``data``: kept with the pending login until it finishes (an upstream sign-in's session)."""
    # Store writes below use their own connection: on SQLite an open write transaction here
    # would block them, so whatever the caller changed is committed first.
    refusal = network.check_user(svc(), db, user.id, client_ip())
    if refusal is not None:
        release_write_lock(db)
        return refused(refusal, user=user.uuid)
    release_write_lock(db)
    req = _request_of(rid)
    age = password_age(password_policy(), user.password_changed_at, svc().clock.utcnow())
    mfa_facts, need = mfa.login_facts(db, user, req)
    release_write_lock(db)  # the remembered device's last use
    enrolled = tuple(f.id for f in enrolled_factors(svc(), user, db))
    judged = risk.judge(db, user, has_factor=bool(enrolled))
    if judged.refused:
        return _risk_refusal(judged.refused, rid, next_url, user)
    facts = LoginFacts(
        enrolled_factors=enrolled,
        risk_step_up=judged.step_up,
        must_change_password=user.must_change_password or change_reason is not None,
        password_expired=age.expired,
        password_expiry_warning=age.warn,
        wanted_acr_level=req.wanted_acr_level() if req else 0,
        local_password=local_password,
        terms_pending=terms.terms_pending(db, svc().settings.gdpr.terms_version, user.id),
        **mfa_facts,
    )
    pending = PendingLogin(
        user_id=user.id,
        user_uuid=user.uuid,
        rid=rid,
        next_url=next_url,
        # A first factor that is already multi-factor (a passkey with user verification, see
        # docs/webauthn.md) needs no second-factor step.
        steps=[s for s in plan_steps(facts) if not (s == STEP_MFA and AMR_MFA in amr)],
        amr=list(amr),
        auth_time=int(svc().clock.now()),
        data=dict(data or {}),
    )
    if (
        age.warn
        and user.email
        and svc().store.add(f"expwarn:{user.id}", 1, age.days_left * 86400)
        and notifications.wants(db, svc().settings, user.id, "password_expiry")
    ):
        queue_mail(
            user.email,
            "password_expiry",
            _l("Your password expires in %(days)s days", days=age.days_left),
            user=user,
            days=age.days_left,
            change_url=absolute("account.password"),
        )
    if need.required:
        pending.data["methods"] = list(need.methods)
    if judged.risk is not None:
        pending.data["risk"] = judged.risk
    if remember_me and remember_me_days() > 0:
        pending.data["remember_me"] = True
    if change_reason:
        pending.data["change_reason"] = change_reason
    elif age.expired:
        pending.data["change_reason"] = "expired"
    if not pending.steps:
        return _finish(db, pending, user)
    _save_pending(pending)
    return redirect(url_for("login.step"))


def _risk_refusal(why: str, rid: str | None, next_url: str | None, user: User) -> Response:
    """The login page refusing a sign-in the rules locked or the risk score denied."""
    form = LoginForm(formdata=None, r=rid or "", next=next_url or "")
    form.username.data = user.username
    message = STATE_MESSAGES["locked"] if why == "locked" else RISK_DENIED
    page, status = _login_page(form, str(message), 403)
    return Response(page, status=status, mimetype="text/html")


def _finish(db: Any, pending: PendingLogin, user: User) -> Response | tuple[str, int]:
    """Every step passed: a new SSO session (a fresh id on every login), then back to the
    relying party's resume point or the requested page."""
    release_write_lock(db)  # before the store writes (see start_pending)
    signed_in_before = user.last_login_at is not None  # read before this sign-in sets it
    mgr = sessions()
    old_sid = browser_sid()
    # The same person signing in again (prompt=login, max_age, a step-up) keeps the relying
    # parties of the old session (carried over below): they must not be told it ended.
    # Another person taking over the browser ends the old session with logout propagation.
    previous = mgr.peek(old_sid) if old_sid else None
    same_person = bool(previous) and previous["result"]["user_uuid"] == user.uuid
    # This browser's own session is replaced, so it does not count against the limit.
    with session_slot(mgr, db, user.id, old_sid if same_person else None) as slot:
        if not slot.allowed:
            audit_now(db, "login.session_limit", actor=user.uuid, target=user.uuid)
            db.commit()
            session.clear()
            return _too_many_sessions()
        old = mgr.destroy(old_sid, propagate=not same_person) if previous else None
        days = remember_me_days() if pending.data.get("remember_me") else 0
        lifetime = days * 86400 if days > 0 else None
        made = mgr.create(
            user.uuid,
            pending.amr,
            acr_for(pending.amr),
            auth_time=pending.auth_time,
            user_agent=request.user_agent.string,
            ip=client_ip(),
            lifetime=lifetime,
        )
        result = made.result
        broker_hub.remember_session(svc(), result.sid, pending.data.get("upstream"))
        if old and same_person:
            # The same person signed in again: the old session's relying parties still get
            # logout.
            for key, info in (old.get("rps") or {}).items():
                mgr.add_relying_party(result.sid, key, info)
        gone = slot.ended + ([old_sid] if old_sid else [])
        if gone:
            db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(gone)))
        # Plain statements sent at once rather than the unit of work's flush at the commit: on
        # this path of every login the flush of three rows cost more than the statements.
        session_index.index_session(
            db,
            user.id,
            result.sid,
            pending.amr,
            at=svc().clock.utcnow(),
            ip=client_ip(),
            user_agent=request.user_agent.string,
        )
        db.connection().execute(_LAST_LOGIN, {"uid": user.id, "at": svc().clock.utcnow()})
        scored = {"risk": pending.data["risk"]} if "risk" in pending.data else {}
        audit_now(db, "login.success", actor=user.uuid, target=user.uuid, amr=pending.amr, **scored)
        risk.record_sign_in(db, user)
        device = known_devices.on_sign_in(db, user, result.sid, signed_in_before=signed_in_before)
        db.commit()
    known_devices.announce(db, user, device)
    req = _request_of(pending.rid)
    target = req.resume_url if req else (pending.next_url or url_for("account.index"))
    session.clear()
    resp = redirect(target)
    mgr.set_cookie(resp, made, lifetime)
    known_devices.set_cookie(resp, device)
    if pending.data.get("remember"):
        mfa.remember_device(db, user, resp)
        db.commit()
    return resp


def _too_many_sessions() -> tuple[str, int]:
    """A sign-in refused at the concurrent-session limit ([session] limit_action "refuse")."""
    settings = svc().settings
    return render_template(
        "session_limit.html",
        support=settings.branding.support_text,
        help_url=settings.session.limit_help_url,
    ), 403


def end_sso_session(sid: str | None, db: Any = None) -> dict[str, Any] | None:
    """End one SSO session and drop it from its user's index (``SessionManager.end``)."""
    return sessions().end(sid, db)


# --- /login -------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    rid = request.values.get("r") or None
    req = _request_of(rid)
    if rid and req is None:
        return _expired_request()
    next_url = safe_next(request.values.get("next"))

    if request.method == "GET":
        current = sessions().current()
        if current is not None:
            if req is not None and session_satisfies(current, req, svc().clock.now()):
                return redirect(req.resume_url)
            if req is None and request.args.get("prompt") != "login":
                return redirect(next_url or url_for("account.index"))
        if req is not None and rid is not None:
            hinted = broker_start.hinted(req, rid, next_url)
            if hinted is not None:
                return hinted
        return _fresh_login_page(rid, next_url, req.login_hint if req else None)

    username, password = request.form.get("username", ""), request.form.get("password", "")
    if username.strip() and not password and _csrf_valid():
        # Home-realm discovery: an address whose domain an upstream claims signs in there.
        away = broker_start.home_realm(username, req, rid, next_url)
        if away is not None:
            return away
    if _plainly_valid(username, password):
        return _check_password(username, password, rid, next_url)
    # Anything else takes the form's own validation, for its messages next to the fields.
    form = LoginForm()
    if not form.validate():
        return _login_page(form, _("Please fill in both fields and try again."), 400)
    return _check_password(form.username.data, form.password.data, rid, next_url)


def _plainly_valid(username: str, password: str) -> bool:
    """What LoginForm accepts, checked without building it (a login's hottest path): both
    fields filled in and within their lengths, and the browser's CSRF token."""
    if not (username.strip() and password.strip()) or len(username) > 320 or len(password) > 1024:
        return False
    return _csrf_valid()


def _csrf_valid() -> bool:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


def _check_password(username: str, password: str, rid: str | None, next_url: str | None):
    def form() -> LoginForm:  # for a page that answers with a message
        again = LoginForm(formdata=None, r=rid or "", next=next_url or "")
        again.username.data = username
        return again

    guard = lockout()
    policy = guard.policy
    ip = client_ip()
    fails, blocked = guard.ip_failures_and(ip, risk.block_key())
    # An address found stuffing credentials (docs/risk.md) is refused like one over the
    # failure limit: the password is not even checked, so the list being tried learns nothing.
    if policy.ip_refused(fails) or blocked is not None:
        page, status = _login_page(
            form(), _("Too many attempts from your network. Try again later."), 429
        )
        waits = [guard.ip_retry_after()] if policy.ip_refused(fails) else []
        if blocked is not None:
            waits.append(risk.block_retry_after(blocked))
        return _with_retry_after(page, status, max(waits))
    delay = policy.ip_delay(fails)
    if delay:
        time.sleep(delay)  # progressive delay: cheap for people, expensive for a guessing script

    login_name = username.strip()
    with svc().sessions() as db:
        user = find_user(db, login_name)
        key = lock_key(user, login_name)
        locked, failures_counted = guard.state(key)
        locked_for = guard.locked_for(key) if locked else None
        if locked_for is not None:
            # 429 with Retry-After (the rest of the lock) for scripts, the page for people;
            # unknown names lock like real ones, so the answer tells nothing about existence.
            audit(db, "login.locked", target=user.uuid if user else None)
            db.commit()
            page, status = _login_page(
                form(), str(LOCKED_OUT) % {"minutes": policy.lock_minutes}, 429
            )
            return _with_retry_after(page, status, locked_for)

        verdict = credential_chain(svc()).verify(login_name, password, known=user)
        if verdict.outcome is Outcome.UNAVAILABLE:
            return _login_page(
                form(), _("Sign-in is temporarily unavailable. Please try again in a moment."), 503
            )
        if verdict.outcome is Outcome.VALID and verdict.user_id is not None:
            user = db.get(User, verdict.user_id)
        if verdict.outcome is not Outcome.VALID or user is None:
            return _failed(db, form(), user, key, login_name)

        state = state_of(svc(), user)
        if state != ACCOUNT_OK:
            # Only someone who knows the password gets here, so naming the state reveals nothing.
            audit(db, "login.denied", actor=user.uuid, target=user.uuid, state=state)
            db.commit()
            return _login_page(form(), str(STATE_MESSAGES[state]), 403)
        if failures_counted:  # most sign-ins follow none: no write then
            guard.clear_failures(key)
        return start_pending(
            db,
            user,
            [verdict.amr or "pwd"],
            rid=rid,
            next_url=next_url,
            local_password=verdict.backend == "local",
            remember_me=bool(request.form.get("remember_me")),
        )


def _with_retry_after(page: str, status: int, seconds: int) -> Response:
    return Response(
        page,
        status=status,
        mimetype="text/html",
        headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
    )


def _failed(db: Any, form: LoginForm, user: User | None, key: str, login_name: str):
    guard = lockout()
    guard.record_ip_failure(client_ip())
    locked_now = guard.record_failure(key)
    risk.password_failed(db, login_name, user)
    audit(db, "login.failure", target=user.uuid if user else None, login=login_name[:100])
    if locked_now:
        policy = guard.policy
        audit(db, "login.lockout", target=user.uuid if user else None, minutes=policy.lock_minutes)
        if policy.notify_user:
            # Unknown names lock like real ones; they queue a job that sends nothing.
            queue_mail(
                user.email if user is not None else None,
                "lockout",
                _l("Your account was locked after failed sign-in attempts"),
                user=user,
                minutes=policy.lock_minutes,
                reset_url=absolute("password.reset_request"),
            )
    db.commit()
    return _login_page(form, str(BAD_CREDENTIALS), 401)


# --- /login/step --------------------------------------------------------------------------------


def _code_guesses_refused() -> Response | None:
    """A code posted at the MFA step from an address, or for an account, that reached its
    ``[rate_limits] mfa_code`` limit of wrong codes: 429 with Retry-After, before the waiting
    sign-in is taken (it still waits, nothing changed) or the code is looked at."""
    pending = _pending(take=False)
    if pending is None or pending.current not in (STEP_MFA, STEP_MFA_ENROLL):
        return None
    verdict = ratelimit.check("mfa_code", f"u{pending.user_id}")
    return None if verdict is None else ratelimit.too_many(verdict)


@bp.route("/login/step", methods=["GET", "POST"])
def step():
    if request.method == "POST" and (refused := _code_guesses_refused()) is not None:
        return refused
    pending = _pending(take=request.method == "POST")
    if pending is None or pending.current not in STEPS:
        session.pop("login_p", None)
        return _expired_request()
    handler = STEPS[pending.current]
    with svc().sessions() as db:
        user = db.get(User, pending.user_id)
        if user is None or state_of(svc(), user) != ACCOUNT_OK:
            _drop_pending()
            return _expired_request()
        locale_hints(user_locale=user.locale or "")
        _request_of(pending.rid)
        ctx = StepContext(svc=svc(), db=db, user=user, pending=pending)
        if request.method == "GET":
            # The MFA page's "use another method" and "send a new code" links.
            if request.args.get("factor"):
                pending.data["factor"] = request.args["factor"][:32]
            if request.args.get("resend"):
                pending.data["resend"] = True
            return _render_step(handler, ctx, handler.form_class(formdata=None))
        guarded = handler.id in (STEP_MFA, STEP_MFA_ENROLL)
        guard = lockout()
        lock = lock_key(user, user.username)
        locked_for = guard.locked_for(lock) if guarded else None
        if locked_for is not None:
            # Codes are guessed like passwords: the same account lockout covers both (429 with
            # the rest of the lock as Retry-After, as at the password).
            _drop_pending()
            audit(db, "login.locked", target=user.uuid, step=handler.id)
            db.commit()
            policy = guard.policy
            form = LoginForm(formdata=None, r=pending.rid or "", next=pending.next_url or "")
            page, status = _login_page(
                form, str(LOCKED_OUT) % {"minutes": policy.lock_minutes}, 429
            )
            return _with_retry_after(page, status, locked_for)

        form = handler.form_class()
        if not form.validate():
            _save_pending(pending)
            return _render_step(
                handler, ctx, form, _("Please fill in the form and try again."), 400
            )
        result = handler.submit(ctx, request.form)
        if not result.ok:
            db.rollback()  # a failed step changes nothing but the audit trail
            pending.failures += 1
            audit(db, f"login.step_failed.{handler.id}", target=user.uuid, reason=result.error)
            if guarded and not result.abort:
                ratelimit.fail("mfa_code", f"u{user.id}")
            locked_now = guarded and not result.abort and guard.record_code_failure(lock)
            if locked_now:
                audit(
                    db,
                    "login.lockout",
                    target=user.uuid,
                    minutes=guard.policy.lock_minutes,
                    step=handler.id,
                )
            if guarded and not result.abort and risk.mfa_failed(db, user):
                _drop_pending()
                form = LoginForm(formdata=None, r=pending.rid or "", next=pending.next_url or "")
                return _login_page(form, str(STATE_MESSAGES["locked"]), 403)
            db.commit()
            if locked_now:
                session.pop("login_p", None)
                form = LoginForm(formdata=None, r=pending.rid or "", next=pending.next_url or "")
                minutes = guard.policy.lock_minutes
                return _login_page(form, str(LOCKED_OUT) % {"minutes": minutes}, 401)
            if result.abort or pending.failures >= MAX_STEP_FAILURES:
                session.pop("login_p", None)
                form = LoginForm(formdata=None, r=pending.rid or "", next=pending.next_url or "")
                message = STEP_ERRORS.get(result.error or "", BAD_CREDENTIALS)
                return _login_page(form, str(message), 401)
            _save_pending(pending)
            message = str(STEP_ERRORS.get(result.error or "", BAD_CREDENTIALS))
            return _render_step(handler, ctx, form, message, 400, result.params)

        if guarded:
            db.commit()  # the step's rows first: no store write inside a SQLite write transaction
            guard.clear_code_failures(lock)
        pending.steps.pop(0)
        pending.steps[0:0] = result.insert_steps
        pending.amr += [m for m in result.amr if m not in pending.amr]
        pending.failures = 0
        if not pending.steps:
            return _finish(db, pending, user)
        db.commit()
        _save_pending(pending)
        return redirect(url_for("login.step"))


def _render_step(handler, ctx, form, error=None, status=200, params=None):
    problems = (params or {}).get("problems", [])
    # A new password's problems go beside their field, every broken rule at once.
    if problems and hasattr(form, "new_password"):
        form.new_password.errors = list(problems)
    if error == str(STEP_ERRORS["mismatch"]) and hasattr(form, "confirm"):
        form.confirm.errors = [error]
    return render_template(
        handler.template,
        form=form,
        error=error,
        problems=problems,
        not_you=person_name(ctx.user),
        not_you_csrf=generate_csrf(),
        **handler.challenge(ctx),
    ), status


def person_name(user: User) -> str:
    """How the pages after the password name the person signing in ("Signed in as …")."""
    full = " ".join(p for p in (user.given_name, user.family_name) if p)
    return f"{full} ({user.username})" if full else user.username


# --- "not you?" and the language switcher ------------------------------------------------------


@bp.post("/login/restart")
def restart():
    """Abandon this sign-in ("not you?") and start afresh on the login page, keeping the
    application's pending request when there is one. From a step after the password, the
    half-finished login is dropped; from the consent page (``r`` names the consent request),
    the SSO session it runs in ends and the application's authorization request starts over."""
    form = ConfirmForm()
    if not form.validate():
        return _expired_request()
    pending = _pending(take=False)
    rid = pending.rid if pending else None
    next_url = pending.next_url if pending else None
    _drop_pending()
    target = None
    consent_rid = request.form.get("r") or None
    current = sessions().current()
    if consent_rid and current is not None:
        req = sessions().finish_request(consent_rid)
        if req is not None and req.protocol == "oidc" and not req.resume_url:
            target = authorize_again(req.params)
        with svc().sessions.begin() as db:
            end_sso_session(current.sid, db=db)
            audit(db, "logout", actor=current.user_uuid, target=current.user_uuid, why="not_you")
    if target is None:
        target = url_for("login.login", r=rid, next=next_url) if (rid or next_url) else None
    session.clear()
    resp = redirect(target or url_for("login.login"), 303)
    if consent_rid and current is not None:
        sessions().clear_cookie(resp)
    return resp


def authorize_again(params: dict[str, Any]) -> str:
    """The authorization request a consent page came from, as a URL on this server."""
    query = [(k, v) for k, v in params.items() if isinstance(v, str) and not k.startswith("_")]
    query += [("resource", r) for r in params.get("resource_list") or []]
    return url_for("oidc_authorize.authorize") + "?" + urlencode(query)


@bp.get("/language")
def language():
    """The language switcher of the signed-out pages: remember the choice in a cookie (a year,
    SameSite=Lax) and go back to the page it was made on (same origin only)."""
    tag = offered_language(request.args.get("lang", "")[:16], offered_languages())
    resp = redirect(safe_next(request.args.get("next")) or url_for("login.login"), 303)
    if tag:
        resp.set_cookie(
            LANG_COOKIE,
            tag,
            max_age=LANG_COOKIE_DAYS * 86400,
            path="/",
            samesite="Lax",
            httponly=True,
            secure=svc().settings.issuer.startswith("https://"),
        )
    return resp


# --- /logout ------------------------------------------------------------------------------------


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    current = sessions().current()
    next_url = safe_next(request.values.get("next"))
    form = ConfirmForm()
    if request.method == "GET" or current is None:
        if current is None:
            # Back from an upstream's logout (docs/brokering.md): on to where sign-out was going.
            onward = broker_start.after_upstream_logout(request.args.get("state"))
            if onward:
                return redirect(onward, 303)
            return render_template("logged_out.html", next_url=next_url)
        return render_template("logout.html", form=form, next_url=next_url)
    if not form.validate():
        return render_template(
            "logout.html",
            form=form,
            next_url=next_url,
            error=_("The form expired. Please confirm again."),
        ), 400
    upstream = broker_hub.take_session(svc(), current.sid)
    with svc().sessions.begin() as db:
        end_sso_session(current.sid, db=db)
        audit(db, "logout", actor=current.user_uuid, target=current.user_uuid)
    session.clear()
    # Signed in through an upstream that supports it: log out there too (it comes back here).
    away = broker_start.upstream_logout(upstream, next_url) or next_url
    resp = (
        redirect(away)
        if away
        else Response(render_template("logged_out.html", next_url=None), mimetype="text/html")
    )
    sessions().clear_cookie(resp)
    return resp
