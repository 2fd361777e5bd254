"""Security keys and passkeys in the browser: the second-factor step, passwordless sign-in with
discoverable credentials (with conditional UI on /login), and management on the account page.

The pages load one small same-origin script (``/webauthn/webauthn.js``) that calls
``navigator.credentials`` and talks to the JSON endpoints below. Every JSON POST carries the
CSRF token in ``X-CSRFToken``; a request whose ``Origin`` is not the issuer's is refused.
Challenges are bound to what they serve: registration to the SSO session, the second factor to
the pending login and its browser secret, passwordless sign-in to a secret in this browser's
signed session cookie. The relying-party checks live in ``idp.backends.webauthn``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy import delete, exists, select
from werkzeug.wrappers import Response
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length
from wtforms.validators import ValidationError as WTFValidationError

from ..backends.enrolment import ClauseEnrolled
from ..backends.lockout import lock_key
from ..backends.webauthn import (
    CounterRegression,
    WebAuthnError,
    authentication_options,
    count_credentials,
    credentials_of,
    parse_response,
    registration_options,
    relying_party,
    take_challenge,
    verify_authentication,
    verify_registration,
)
from ..core.authn import AMR_MFA
from ..core.policy import ACCOUNT_OK
from ..core.steps import PendingLogin, enrolled_factors
from ..sso.users import state_of
from ..storage.models import User
from ..storage.models_webauthn import WebAuthnCredential
from .account_time import formatters
from .current import svc
from .forms import ConfirmForm
from .guard import lockout
from .mailing import send_mail
from .requestinfo import absolute, audit, client_ip, require_user, safe_next
from .security_mails import wants_mail
from .sso import sessions

log = logging.getLogger("idp.webauthn")

bp = Blueprint("webauthn", __name__)

STATIC = Path(__file__).resolve().parent / "static"

MESSAGES = {
    "invalid": _l("The security key's answer could not be verified. Please try again."),
    "expired": _l("The request took too long or was already used. Please try again."),
    "unknown_credential": _l("This passkey is not registered here."),
    "wrong_user": _l("This passkey belongs to another account."),
    "user_verification": _l(
        "Your security key did not verify you (PIN or fingerprint). Please try again."
    ),
    "counter": _l(
        "This security key reported a use count lower than before, which can mean it was "
        "copied. It was refused; please use another method and tell your administrator."
    ),
    "not_allowed": _l("This kind of security key is not allowed here."),
    "duplicate": _l("This security key is already registered."),
    "limit": _l("You have registered the maximum number of security keys. Remove one first."),
    "reauth": _l("Please sign in again before changing your security keys."),
    "csrf": _l("The page expired. Please reload it and try again."),
    "forbidden": _l("This request was refused."),
    "signed_out": _l("Please sign in first."),
    "throttled": _l("Too many attempts from your network. Try again later."),
}


def _message(code: str) -> str:
    return str(MESSAGES.get(code, MESSAGES["invalid"]))


@bp.record_once
def _setup(state: Any) -> None:
    rp = relying_party(state.app.extensions["idp"])  # a bad [webauthn] setting stops start-up

    @state.app.context_processor
    def _webauthn_ui() -> dict[str, Any]:
        # The login page turns on passkey sign-in (and the autocomplete token for conditional
        # UI) from this, and every page that calls the JSON endpoints needs the CSRF token.
        return {"passkey_login": rp.passwordless, "webauthn_csrf": generate_csrf}


# --- JSON plumbing ------------------------------------------------------------------------------


def _error(code: str, status: int, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=code, message=_message(code), **extra), status


def _throttled(guard: Any) -> tuple[Response, int]:
    """An address over ``[lockout] ip_max_failures``: 429 with ``Retry-After``."""
    resp, status = _error("throttled", 429)
    resp.headers["Retry-After"] = str(guard.ip_retry_after())
    resp.headers["Cache-Control"] = "no-store"
    return resp, status


def _guard() -> tuple[Response, int] | None:
    """CSRF token and Origin for the JSON endpoints (ASVS 3.5.1-3.5.3)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != relying_party(svc()).origin:
        return _error("forbidden", 403)
    try:
        validate_csrf(request.headers.get("X-CSRFToken", ""))
    except WTFValidationError:
        return _error("csrf", 400)
    return None


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _report_regression(exc: CounterRegression, user_uuid: str | None) -> None:
    """A counter that went backwards is refused and reported: a log line for monitoring and an
    audit row the administrator and the user see, written in its own transaction so the
    refusal's rollback keeps it."""
    log.warning(
        "webauthn signature counter regression: credential row %s of user %s (stored %s, "
        "received %s); assertion refused",
        exc.credential_id,
        user_uuid,
        exc.stored,
        exc.received,
    )
    with svc().sessions.begin() as db:
        audit(
            db,
            "webauthn.counter_regression",
            actor=user_uuid,
            target=user_uuid,
            credential=exc.credential_id,
            stored=exc.stored,
            received=exc.received,
        )


def _uuid_of(user_id: int) -> str | None:
    with svc().sessions() as db:
        return db.scalar(select(User.uuid).where(User.id == user_id))


# --- the second factor --------------------------------------------------------------------------


class WebAuthnFactor(ClauseEnrolled):
    """A registered security key or passkey as the second factor. Its form posts the
    assertion (JSON) in ``credential`` beside the usual ``code`` (set to "webauthn") to the MFA
    step, so failures count and lock like wrong codes."""

    id = "webauthn"
    amr = "hwk"  # the default; the credential used decides (pending.data["factor_amr"])
    label = _l("Security key or passkey")
    template = "webauthn_mfa.html"
    manage_endpoint = "webauthn.manage"

    def enrolled_clause(self, svc: Any, user_id: Any) -> Any:
        if not relying_party(svc).enabled:
            return None
        return exists().where(WebAuthnCredential.user_id == user_id)

    def begin(self, svc: Any, user: Any, pending: PendingLogin) -> dict[str, Any]:
        rp = relying_party(svc)
        binding = {"purpose": "mfa", "user_id": user.id, "browser": pending.browser}
        with svc.sessions() as db:
            options = authentication_options(svc, db, user, binding, rp.user_verification)
        failed = pending.data.pop("webauthn_error", None)
        return {"webauthn_options": options, "webauthn_error": _message(failed) if failed else None}

    def verify(self, svc: Any, user: Any, pending: PendingLogin, form: Mapping[str, str]) -> bool:
        rp = relying_party(svc)
        try:
            response = parse_response(form.get("credential") or "")
            challenge, record = take_challenge(svc, response, "mfa")
            if record.get("user_id") != user.id or record.get("browser") != pending.browser:
                raise WebAuthnError("invalid", "challenge issued to another login")
            with svc.sessions.begin() as db:
                assertion = verify_authentication(
                    svc,
                    db,
                    response,
                    challenge,
                    user_id=user.id,
                    require_uv=rp.user_verification == "required",
                )
        except CounterRegression as exc:
            _report_regression(exc, user.uuid)
            pending.data["webauthn_error"] = exc.code
            return False
        except WebAuthnError as exc:
            log.info("webauthn second factor refused for %s: %s", user.uuid, exc)
            pending.data["webauthn_error"] = exc.code
            return False
        pending.data["factor_amr"] = assertion.amr
        return True

    def reset(self, svc: Any, db: Any, user: Any) -> None:
        """An administrator's MFA reset removes every security key of the user."""
        db.execute(delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id))


# --- the script ---------------------------------------------------------------------------------


@bp.route("/webauthn/webauthn.js")
def script():
    return send_from_directory(STATIC, "webauthn.js", mimetype="text/javascript", max_age=3600)


# --- passwordless sign-in -----------------------------------------------------------------------


@bp.route("/webauthn/login/options", methods=["POST"])
def login_options():
    rp = relying_party(svc())
    if not rp.passwordless:
        abort(404)
    refused = _guard()
    if refused:
        return refused
    guard = lockout()
    if guard.policy.ip_refused(guard.ip_failures(client_ip())):
        return _throttled(guard)
    body = _body()
    rid = body.get("r") if isinstance(body.get("r"), str) else None
    if rid and sessions().load_request(rid) is None:
        rid = None
    next_url = safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    secret = session.get("webauthn_b") or secrets.token_urlsafe(24)
    session["webauthn_b"] = secret
    binding = {
        "purpose": "login",
        "browser": svc().hasher.hash(secret),
        "rid": rid,
        "next": next_url,
    }
    with svc().sessions() as db:
        # Passwordless is only multi-factor when the authenticator verified the user.
        options = authentication_options(svc(), db, None, binding, "required")
    return jsonify(options)


@bp.route("/webauthn/login/verify", methods=["POST"])
def login_verify():
    from .login import LOCKED_OUT, STATE_MESSAGES, start_pending

    if not relying_party(svc()).passwordless:
        abort(404)
    refused = _guard()
    if refused:
        return refused
    guard = lockout()
    ip = client_ip()
    if guard.policy.ip_refused(guard.ip_failures(ip)):
        return _throttled(guard)
    secret = session.get("webauthn_b")
    with svc().sessions() as db:
        try:
            response = parse_response(_body().get("credential"))
            challenge, record = take_challenge(svc(), response, "login")
            if not secret or record.get("browser") != svc().hasher.hash(secret):
                raise WebAuthnError("invalid", "challenge issued to another browser")
            assertion = verify_authentication(
                svc(), db, response, challenge, user_id=None, require_uv=True
            )
        except WebAuthnError as exc:
            db.rollback()
            if isinstance(exc, CounterRegression):
                _report_regression(exc, _uuid_of(exc.user_id))
            log.info("passkey sign-in refused: %s", exc)
            guard.record_ip_failure(ip)
            audit(db, "login.failure", method="webauthn", reason=exc.code)
            db.commit()
            return _error(exc.code, 401)
        user = db.get(User, assertion.user_id)
        state = state_of(svc(), user)
        if state != ACCOUNT_OK:
            db.rollback()
            audit(db, "login.denied", actor=user.uuid, target=user.uuid, state=state)
            db.commit()
            return jsonify(error=state, message=str(STATE_MESSAGES[state])), 403
        locked_for = guard.locked_for(lock_key(user, user.username))
        if locked_for is not None:
            db.rollback()
            audit(db, "login.locked", target=user.uuid, method="webauthn")
            db.commit()
            policy = guard.policy
            message = str(LOCKED_OUT) % {"minutes": policy.lock_minutes}
            locked = jsonify(error="locked", message=message)
            locked.headers["Retry-After"] = str(locked_for)
            return locked, 429
        session.pop("webauthn_b", None)
        # A passkey with user verification is possession plus PIN or biometrics: two factors
        # (docs/webauthn.md), so no second-factor step follows.
        resp = start_pending(
            db,
            user,
            [assertion.amr, AMR_MFA],
            rid=record.get("rid"),
            next_url=record.get("next"),
            local_password=False,
        )
    out = jsonify(ok=True, redirect=resp.headers["Location"])
    for cookie in resp.headers.getlist("Set-Cookie"):
        out.headers.add("Set-Cookie", cookie)
    return out


# --- management on the account page -------------------------------------------------------------


class RenameForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])
    submit = SubmitField(_l("Rename"))


def _recent_login() -> bool:
    """Was this session's sign-in recent enough to change factors (ASVS 7.5.1)?"""
    current = sessions().current()
    limit = relying_party(svc()).reauth_minutes * 60
    if current is not None and svc().clock.now() - current.auth_time <= limit:
        return True
    # A password re-entry on the two-factor page counts too: one confirmation for all factors.
    from .mfa import reauthenticated

    return reauthenticated()


def _reauth_url() -> str:
    return url_for("login.login", prompt="login", next=url_for("webauthn.manage"))


def _notify(user: User, subject: Any, event: str, name: str) -> None:
    """Tell the user a factor changed (ASVS 2.2.3), so an unexpected change is noticed (unless
    they turned these mails off where the policy lets them: idp.sso.notifications)."""
    if not wants_mail(user.id, "mfa_changes"):
        return
    send_mail(
        user.email,
        "webauthn_changed",
        subject,
        user=user,
        event=event,
        key_name=name,
        manage_url=absolute("webauthn.manage"),
    )


def _manage_page(db: Any, user: User, status: int = 200, error: str | None = None):
    creds = credentials_of(db, user.id)
    return render_template(
        "webauthn_manage.html",
        user=user,
        section="account/mfa.html",
        credentials=creds,
        rename_forms={c.id: RenameForm(formdata=None, name=c.name) for c in creds},
        remove_form=ConfirmForm(formdata=None),
        recent=_recent_login(),
        reauth_url=_reauth_url(),
        error=error,
        **formatters(user),
    ), status


@bp.route("/account/webauthn")
def manage():
    if not relying_party(svc()).enabled:
        abort(404)
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        return _manage_page(db, user)


def _own_credential(db: Any, user: User, cred_id: int) -> WebAuthnCredential:
    cred = db.get(WebAuthnCredential, cred_id)
    if cred is None or cred.user_id != user.id:
        abort(404)  # another user's credential is as absent as a missing one
    return cred


@bp.route("/account/webauthn/<int:cred_id>/rename", methods=["POST"])
def rename(cred_id: int):
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        cred = _own_credential(db, user, cred_id)
        form = RenameForm()
        if not form.validate() or not form.name.data.strip():
            return _manage_page(db, user, 400, _("Enter a name of at most 100 characters."))
        old, cred.name = cred.name, form.name.data.strip()
        audit(db, "webauthn.renamed", actor=user.uuid, target=user.uuid, old=old, new=cred.name)
        db.commit()
    flash(_("The security key was renamed."), "success")
    return redirect(url_for("webauthn.manage"))


@bp.route("/account/webauthn/<int:cred_id>/delete", methods=["POST"])
def remove(cred_id: int):
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        cred = _own_credential(db, user, cred_id)
        if not ConfirmForm().validate():
            return _manage_page(db, user, 400, _("The form expired. Please try again."))
        if not _recent_login():
            return _manage_page(db, user, 403, _message("reauth"))
        others = any(f.id != "webauthn" for f in enrolled_factors(svc(), user))
        if user.require_mfa and not others and count_credentials(db, user.id) <= 1:
            return _manage_page(
                db,
                user,
                400,
                _(
                    "Your account must use a second factor: set up another one before removing "
                    "your last security key."
                ),
            )
        name = cred.name
        db.delete(cred)
        audit(db, "webauthn.removed", actor=user.uuid, target=user.uuid, name=name)
        db.commit()
        _notify(user, _l("A security key was removed from your account"), "removed", name)
    flash(_("The security key was removed."), "success")
    return redirect(url_for("webauthn.manage"))


def _registrant(db) -> User | tuple[Response, int]:
    """The signed-in user adding a key, signed in recently enough; else the error to answer
    (404 when security keys are switched off; the request guard's refusal)."""
    if not relying_party(svc()).enabled:
        abort(404)
    refused = _guard()
    if refused:
        return refused
    user = require_user(db)
    if not isinstance(user, User):
        return _error("signed_out", 401)
    if not _recent_login():
        return _error("reauth", 403, redirect=_reauth_url())
    return user


@bp.route("/webauthn/register/options", methods=["POST"])
def register_options():
    with svc().sessions() as db:
        user = _registrant(db)
        if not isinstance(user, User):
            return user
        binding = {"user_id": user.id, "sid": svc().hasher.hash(g.sid)}
        try:
            options = registration_options(svc(), db, user, binding)
        except WebAuthnError as exc:
            return _error(exc.code, 400)
    return jsonify(options)


@bp.route("/webauthn/register/verify", methods=["POST"])
def register_verify():
    with svc().sessions() as db:
        user = _registrant(db)
        if not isinstance(user, User):
            return user
        body = _body()
        name = body.get("name") if isinstance(body.get("name"), str) else ""
        name = " ".join(name.split())[:100]
        try:
            response = parse_response(body.get("credential"))
            challenge, record = take_challenge(svc(), response, "register")
            if record.get("user_id") != user.id or record.get("sid") != svc().hasher.hash(g.sid):
                raise WebAuthnError("invalid", "challenge issued to another session")
            cred = verify_registration(
                svc(),
                db,
                user,
                response,
                challenge,
                name or str(_l("Passkey") if _is_passkey(response) else _l("Security key")),
            )
        except WebAuthnError as exc:
            db.rollback()
            log.info("webauthn registration refused for %s: %s", user.uuid, exc)
            return _error(exc.code, 400)
        audit(
            db,
            "webauthn.registered",
            actor=user.uuid,
            target=user.uuid,
            name=cred.name,
            aaguid=cred.aaguid,
            amr=cred.amr,
            discoverable=cred.discoverable,
        )
        db.commit()
        _notify(user, _l("A security key was added to your account"), "added", cred.name)
        flash(_("The security key “%(name)s” was added.", name=cred.name), "success")
    return jsonify(ok=True, redirect=url_for("webauthn.manage"))


def _is_passkey(response: Mapping[str, Any]) -> bool:
    props = (response.get("clientExtensionResults") or {}).get("credProps") or {}
    return props.get("rk") is True
