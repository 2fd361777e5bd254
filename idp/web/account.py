"""Account self-service at ``/account/``: an overview of the account and its security, profile
and avatar, e-mail change by a link to the new address, password change (ends the other
sessions), second factors, sessions and devices, activity, consented apps, data export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from ..backends.chain import password_hasher
from ..core.policy import may_change_now, normalize_answer
from ..core.steps import enrolled_factors
from ..manage import Actor, Context, gdpr, photos
from ..oidc.offline import offline_access, revoke_offline_access
from ..services import ConsentLister, ConsentRevoker, Services
from ..sso.signout import sign_out_user
from ..storage import session_index
from ..storage.models import (
    AuditEvent,
    Client,
    SamlServiceProvider,
    User,
)
from ..storage.models_auth import SecurityAnswer
from ..storage.tokens import EMAIL_PENDING_PREFIX, OneTimeTokens
from . import ratelimit
from .account_time import formatters
from .admin.guard import may_open_console
from .current import svc
from .devices import describe
from .events import SECURITY_EVENTS, SIGN_IN_EVENTS, event_label
from .forms import AvatarForm, ChangePasswordForm, ConfirmForm, EmailChangeForm, ProfileForm
from .i18n import locale_hints
from .mailing import queue_mail
from .mfa import overview as mfa_overview
from .password_policy import (
    POLICY_MESSAGES,
    password_policy,
    password_problems,
    policy_help,
    set_password,
)
from .photo_text import refusal_text
from .requestinfo import absolute, audit, client_ip, require_user, user_agent
from .scopes import scope_words
from .sso import sessions

bp = Blueprint("account", __name__)

_TIMEZONES = sorted(available_timezones())

# Consented applications: each app's ``Services.consent_sources`` (the OIDC consent store is
# one), filled while the app is built.
#   list(svc, user) -> [{"key", "name", "logo_uri"?, "scopes": [...], "granted_at"?}]
#   revoke(svc, user, key) -> None


def register_consent_source(svc: Services, lister: ConsentLister, revoker: ConsentRevoker) -> None:
    """The consent store's grants appear on this app's /account/apps and can be revoked there."""
    if (lister, revoker) not in svc.consent_sources:
        svc.consent_sources.append((lister, revoker))


def _consents(user: User) -> list[dict[str, Any]]:
    s = svc()
    return [c for lister, _r in s.consent_sources for c in lister(s, user)]


def _avatar_dir() -> Path:
    return photos.directory(svc())


def _profile_form(user: User, bind: bool = False) -> ProfileForm:
    form = ProfileForm(obj=user) if bind else ProfileForm(formdata=None, obj=user)
    form.locale.choices = [("", _("Browser default"))] + [
        (code, {"en": "English", "de": "Deutsch"}.get(code, code))
        for code in svc().settings.branding.languages
    ]
    form.timezone.choices = [("", _("Not set"))] + [(tz, tz) for tz in _TIMEZONES]
    return form


def _page(template: str, user: User, status: int = 200, **context: Any):
    return render_template(
        template,
        user=user,
        section=template,
        console_allowed=may_open_console(user.id),
        **formatters(user),
        **context,
    ), status


def _initials(user: User) -> str:
    parts = [p for p in (user.given_name, user.family_name) if p] or [
        user.display_name or user.username
    ]
    return "".join(p[0] for p in parts)[:2].upper()


@bp.route("/account/")
def index():
    """The overview: who, and how safe the account is, at a glance."""
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        enrolled = [f for f in enrolled_factors(svc(), user, db) if f.id != "backup"]
        live = session_index.list_sessions(db, sessions(), user.id, g.sid)
        db.commit()  # pruned index rows
        # The sign-in before this one: "was that me?" is the question the card answers.
        previous = db.execute(
            select(AuditEvent.at, AuditEvent.ip)
            .where(AuditEvent.target == user.uuid, AuditEvent.action == "login.success")
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .offset(1)
            .limit(1)
        ).first()
        return _page(
            "account/overview.html",
            user,
            previous_signin=previous,
            initials=_initials(user),
            second_factors=[str(f.label) for f in enrolled],
            session_count=len(live),
            pending_email=_pending_email(user),
        )


def _profile_page(user: User, status: int = 200, **forms: Any):
    return _page(
        "account/profile.html",
        user,
        status,
        form=forms.get("form") or _profile_form(user),
        avatar_form=forms.get("avatar_form") or AvatarForm(formdata=None),
        verify_form=ConfirmForm(formdata=None),
        email_form=forms.get("email_form") or EmailChangeForm(formdata=None),
        email_error=forms.get("email_error"),
        pending_email=_pending_email(user),
        initials=_initials(user),
    )


@bp.route("/account/profile", methods=["GET", "POST"])
def profile():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        if request.method == "GET":
            return _profile_page(user)
        form = _profile_form(user, bind=True)
        if not form.validate():
            return _profile_page(user, 400, form=form)
        changed = {}
        for field in ("given_name", "family_name", "display_name", "phone", "locale", "timezone"):
            value = (getattr(form, field).data or "").strip() or None
            if value != getattr(user, field):
                changed[field] = True
                setattr(user, field, value)
                if field == "phone":
                    user.phone_verified = False
        audit(
            db, "account.profile_updated", actor=user.uuid, target=user.uuid, fields=sorted(changed)
        )
        db.commit()
        # A new profile language applies to this confirmation already.
        locale_hints(user_locale=user.locale or "")
    flash(_("Your profile was saved."), "success")
    return redirect(url_for("account.profile"))


def _avatar_error(user: User, message: str):
    form = AvatarForm()
    form.avatar.errors = [message]
    return _profile_page(user, 400, avatar_form=form)


@bp.route("/account/avatar", methods=["POST"])
def avatar():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = AvatarForm()
        if not form.validate():
            return _avatar_error(user, _("The form expired. Please try again."))
        upload = request.files.get("avatar")
        if upload is None or not upload.filename:
            return _avatar_error(user, _("Choose a picture first."))
        data = upload.stream.read(photos.MAX_BYTES + 1)
        try:
            name = photos.store(svc(), data)
        except photos.PhotoRefused as exc:
            return _avatar_error(user, refusal_text(exc))
        old = user.avatar
        user.avatar = name
        audit(db, "account.avatar_updated", actor=user.uuid, target=user.uuid)
        db.commit()
        photos.drop(svc(), old)
    flash(_("Your picture was updated."), "success")
    return redirect(url_for("account.profile"))


@bp.route("/avatars/<name>")
def avatar_file(name: str):
    if not name.endswith(".png") or "/" in name or name.startswith("."):
        abort(404)
    return send_from_directory(_avatar_dir(), name, mimetype="image/png", max_age=3600)


@bp.route("/account/verify-email", methods=["POST"])
def resend_verification():
    from .password import send_verification

    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        if ConfirmForm().validate() and user.email and not user.email_verified:
            # Each link sent counts ([rate_limits] email_link, with the e-mail change's).
            refused = ratelimit.hit("email_link", f"u{user.id}")
            if refused is not None:
                return ratelimit.too_many(refused)
            send_verification(user)
            flash(_("We have sent you a confirmation link."), "success")
    return redirect(url_for("account.profile"))


# --- e-mail change ---------------------------------------------------------------------------
# The address changes only when the link mailed to the NEW address is opened by the same person,
# signed in, before it expires (``[recovery] token_minutes``). The old address is told afterwards.
# Whether the new address already belongs to another account is not revealed: the page answers
# the same, and that address gets a notice instead of a link (no enumeration of addresses).

_EMAIL_PURPOSE = "email-change"
_EMAIL_PENDING = EMAIL_PENDING_PREFIX


def _pending_email(user: User) -> str | None:
    return svc().store.get(_EMAIL_PENDING + user.uuid)


def _email_taken(db: Any, user: User, address: str) -> bool:
    return (
        db.scalar(
            select(User.id).where(func.lower(User.email) == address.lower(), User.id != user.id)
        )
        is not None
    )


@bp.route("/account/email", methods=["POST"])
def email_change():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = EmailChangeForm()
        if user.source != "local":
            return _profile_page(
                user,
                400,
                email_form=form,
                email_error=_("Your e-mail address is managed by your organisation's directory."),
            )
        if not form.validate():
            return _profile_page(user, 400, email_form=form)
        new = form.new_email.data.strip()
        if user.email and new.lower() == user.email.lower():
            form.new_email.errors = [_("This is already your e-mail address.")]
            return _profile_page(user, 400, email_form=form)
        # Counted before the password check: this form is no password-guessing oracle; per
        # account and per address ([rate_limits] email_link), Retry-After the window's rest.
        refused = ratelimit.hit("email_link", f"u{user.id}")
        if refused is not None:
            ratelimit.note(refused)
            page, status = _profile_page(
                user,
                429,
                email_form=form,
                email_error=_("Too many requests. Try again in an hour."),
            )
            return page, status, ratelimit.headers(refused)
        if (
            user.password_hash
            and not password_hasher(svc()).verify(form.password.data or "", user.password_hash)[0]
        ):
            form.password.errors = [_("The current password is not correct.")]
            audit(db, "password.change_failed", actor=user.uuid, target=user.uuid, purpose="email")
            db.commit()
            return _profile_page(user, 400, email_form=form)
        minutes = svc().settings.recovery.token_minutes
        if _email_taken(db, user, new):
            queue_mail(
                new, "email_change_taken", _l("Someone asked to use this address"), user=None
            )
        else:
            tokens = OneTimeTokens(svc().store, svc().hasher, minutes)
            token = tokens.issue(_EMAIL_PURPOSE, {"uid": user.id, "old": user.email, "new": new})
            queue_mail(
                new,
                "email_change",
                _l("Confirm your new e-mail address"),
                user=user,
                link=absolute("account.email_confirm", token=token),
                minutes=minutes,
            )
            svc().store.put(_EMAIL_PENDING + user.uuid, new, minutes * 60)
        audit(db, "email.change_requested", actor=user.uuid, target=user.uuid)
        db.commit()
    flash(
        _(
            "We sent a confirmation link to %(email)s. Your address changes when you open it.",
            email=new,
        ),
        "success",
    )
    return redirect(url_for("account.profile"))


def _email_link_invalid(user: User):
    return _page(
        "account/email_confirm.html",
        user,
        400,
        invalid=True,
        form=ConfirmForm(formdata=None),
    )


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
def email_confirm(token: str):
    """GET shows a button (mail scanners that open links must not change the address)."""
    tokens = OneTimeTokens(svc().store, svc().hasher, svc().settings.recovery.token_minutes)
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        data = tokens.peek(_EMAIL_PURPOSE, token)
        if not data or data.get("uid") != user.id or user.source != "local":
            return _email_link_invalid(user)
        form = ConfirmForm()
        if request.method == "GET":
            return _page("account/email_confirm.html", user, new=data["new"], form=form)
        if not form.validate():
            return _page("account/email_confirm.html", user, 400, new=data["new"], form=form)
        data = tokens.take(_EMAIL_PURPOSE, token)
        # Re-checked after taking it: the address may have changed or been taken meanwhile.
        if not data or data.get("uid") != user.id or data.get("old") != user.email:
            return _email_link_invalid(user)
        if _email_taken(db, user, data["new"]):
            return _page(
                "account/email_confirm.html",
                user,
                409,
                invalid=True,
                taken=True,
                form=ConfirmForm(formdata=None),
            )
        old = user.email
        user.email = data["new"]
        user.email_verified = True
        audit(db, "email.changed", actor=user.uuid, target=user.uuid)
        db.commit()
        svc().store.delete(_EMAIL_PENDING + user.uuid)
        if old:
            queue_mail(
                old,
                "email_changed",
                _l("Your e-mail address was changed"),
                user=user,
                new=data["new"],
                account_url=absolute("account.index"),
            )
    flash(_("Your e-mail address is now %(email)s.", email=data["new"]), "success")
    return redirect(url_for("account.profile"))


@bp.route("/account/password", methods=["GET", "POST"])
def password():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = ChangePasswordForm()
        page = {"form": form, "rules": policy_help(), "local": user.source == "local"}
        if request.method == "GET":
            return _page("account/password.html", user, **page)
        if user.source != "local" or not form.validate():
            return _page("account/password.html", user, 400, **page)
        if not password_hasher(svc()).verify(form.current_password.data, user.password_hash)[0]:
            form.current_password.errors = [_("The current password is not correct.")]
            audit(db, "password.change_failed", actor=user.uuid, target=user.uuid)
            db.commit()
            return _page("account/password.html", user, 400, **page)
        if not may_change_now(password_policy(), user.password_changed_at, svc().clock.utcnow()):
            return _page(
                "account/password.html",
                user,
                400,
                problems=[POLICY_MESSAGES["too_soon"]],
                **page,
            )
        # Every broken rule at once, beside the field it is about.
        problems = password_problems(db, user, form.new_password.data)
        if problems:
            form.new_password.errors = problems
        if form.new_password.data != form.confirm.data:
            form.confirm.errors = [_("The two passwords do not match.")]
        if problems or form.confirm.errors:
            return _page("account/password.html", user, 400, **page)
        # The other sessions end with every refresh token (offline ones too): whoever knew the
        # old password may have started them.
        ended = sign_out_user(sessions(), db, user.id, keep_sid=g.sid)
        set_password(db, user, form.new_password.data, reason="self-service")
        db.commit()
    flash(
        _("Your password was changed. %(n)s other session(s) were signed out.", n=ended), "success"
    )
    return redirect(url_for("account.password"))


def _handle(sid: str) -> str:
    """An opaque name for a session on the page; the session id itself never reaches HTML."""
    return svc().hasher.hash("handle:" + sid)[-20:]


def _app_names(db: Any, keys: set[str]) -> dict[str, str]:
    """Display names of the relying parties a session signed in to ("oidc:<client_id>",
    "saml:<entity_id>", as idp.sso.sessions records them); an unknown one keeps its id."""
    clients = {k.removeprefix("oidc:") for k in keys if k.startswith("oidc:")}
    sps = {k.removeprefix("saml:") for k in keys if k.startswith("saml:")}
    names: dict[str, str] = {}
    if clients:
        for cid, name in db.execute(
            select(Client.client_id, Client.name).where(Client.client_id.in_(clients))
        ):
            names["oidc:" + cid] = name or cid
    if sps:
        for eid, name in db.execute(
            select(SamlServiceProvider.entity_id, SamlServiceProvider.name).where(
                SamlServiceProvider.entity_id.in_(sps)
            )
        ):
            names["saml:" + eid] = name or eid
    return {k: names.get(k, k.split(":", 1)[-1]) for k in keys}


def _session_cards(db: Any, user: User, live: list[Any]) -> list[dict[str, Any]]:
    records = {i.sid: sessions().peek(i.sid) or {} for i in live}
    keys = {k for rec in records.values() for k in (rec.get("rps") or {})}
    names = _app_names(db, keys)
    cards = []
    for info in live:
        rec = records[info.sid]
        seen = rec.get("last_seen")
        cards.append(
            {
                "handle": _handle(info.sid),
                "info": info,
                "device": describe(info.user_agent),
                "last_seen": datetime.fromtimestamp(seen, UTC) if seen else None,
                "apps": sorted(names[k] for k in (rec.get("rps") or {})),
            }
        )
    cards.sort(key=lambda c: (not c["info"].current, -(c["info"].created_at.timestamp())))
    return cards


@bp.route("/account/sessions", methods=["GET", "POST"])
def sessions_page():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        live = session_index.list_sessions(db, sessions(), user.id, g.sid)
        form = ConfirmForm()
        if request.method == "POST":
            if not form.validate():
                abort(400, _("The form expired. Please try again."))
            wanted = request.form.get("session", "")
            db.commit()  # pruned index rows; the store is written next
            if wanted == "others":
                # Everywhere but this browser: the other sessions, every refresh token, and
                # the offline access of each app the user did not tick to keep.
                kept = set(request.form.getlist("keep")) & set(offline_apps(user.id))
                ended = sign_out_user(sessions(), db, user.id, keep_sid=g.sid, keep_clients=kept)
                audit(
                    db,
                    "session.revoked",
                    actor=user.uuid,
                    target=user.uuid,
                    count=ended,
                    everywhere=True,
                    kept_apps=sorted(kept),
                )
                db.commit()
                flash(_("%(n)s other session(s) were signed out.", n=ended), "success")
                return redirect(url_for("account.sessions_page"))
            chosen = {i.sid for i in live if not i.current and _handle(i.sid) == wanted}
            ended = session_index.end_user_sessions(
                db, sessions(), user.id, keep_sid=g.sid, only=chosen
            )
            audit(db, "session.revoked", actor=user.uuid, target=user.uuid, count=ended)
            db.commit()
            if ended:
                flash(_("The session was signed out."), "success")
            else:
                flash(_("That session had already ended."), "info")
            return redirect(url_for("account.sessions_page"))
        db.commit()  # pruned index rows
        cards = _session_cards(db, user, live)
        apps = offline_apps(user.id)
        return _page(
            "account/sessions.html",
            user,
            sessions=cards,
            form=form,
            offline_apps=sorted(apps.items(), key=lambda kv: kv[1].lower()),
        )


def offline_apps(user_id: int) -> dict[str, str]:
    """Client id -> name of each application holding offline access for the user:
    "sign out everywhere" offers to keep each signed in."""
    return {a.client_id: a.name for a in offline_access(svc(), user_id)}


def _activity(db: Any, user: User, limit: int = 50) -> list[AuditEvent]:
    return list(
        db.scalars(
            select(AuditEvent)
            .where(or_(AuditEvent.target == user.uuid, AuditEvent.actor == user.uuid))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(limit)
        )
    )


ACTIVITY_PER_PAGE = 25
ACTIVITY_KINDS = {"all": None, "signins": SIGN_IN_EVENTS, "security": SECURITY_EVENTS}
ACTIVITY_RANGES = {"7": 7, "30": 30, "90": 90, "365": 365, "all": None}


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 7 else default


@bp.route("/account/activity")
def activity():
    kind = request.args.get("kind", "all")
    kind = kind if kind in ACTIVITY_KINDS else "all"
    days = request.args.get("range", "90")
    days = days if days in ACTIVITY_RANGES else "90"
    page = max(1, _int_arg("page", 1))
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        where = [or_(AuditEvent.target == user.uuid, AuditEvent.actor == user.uuid)]
        if ACTIVITY_KINDS[kind] is not None:
            where.append(AuditEvent.action.in_(ACTIVITY_KINDS[kind]))
        if ACTIVITY_RANGES[days] is not None:
            since = svc().clock.utcnow() - timedelta(days=ACTIVITY_RANGES[days])
            where.append(AuditEvent.at >= since)
        total = db.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        pages = max(1, -(-total // ACTIVITY_PER_PAGE))
        page = min(page, pages)
        rows = db.scalars(
            select(AuditEvent)
            .where(*where)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .offset((page - 1) * ACTIVITY_PER_PAGE)
            .limit(ACTIVITY_PER_PAGE)
        ).all()
        events = [
            {
                "at": e.at,
                "label": event_label(e.action),
                "action": e.action,
                "ip": e.ip,
                "device": describe((e.details or {}).get("user_agent")).name
                if (e.details or {}).get("user_agent")
                else None,
                "by_other": e.actor not in (None, user.uuid),
            }
            for e in rows
        ]
        return _page(
            "account/activity.html",
            user,
            events=events,
            kind=kind,
            range=days,
            page=page,
            pages=pages,
            total=total,
            kinds=[
                ("all", _("All events")),
                ("signins", _("Sign-ins")),
                ("security", _("Security changes")),
            ],
            ranges=[
                ("7", _("Last 7 days")),
                ("30", _("Last 30 days")),
                ("90", _("Last 90 days")),
                ("365", _("Last 12 months")),
                ("all", _("All time")),
            ],
        )


@bp.route("/account/apps", methods=["GET", "POST"])
def apps():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = ConfirmForm()
        if request.method == "POST":
            if not form.validate():
                abort(400, _("The form expired. Please try again."))
            key = request.form.get("app", "")
            held = [c.get("scopes") or [] for c in _consents(user) if c.get("key") == key]
            for _lister, revoker in svc().consent_sources:
                revoker(svc(), user, key)
            audit(
                db,
                "consent.revoked",
                actor=user.uuid,
                target=user.uuid,
                app=key[:200],
                scopes=held[0] if held else [],
            )
            db.commit()
            flash(_("Access was revoked."), "success")
            return redirect(url_for("account.apps"))
        shown = [
            dict(app, permissions=[scope_words(s) for s in app.get("scopes") or []])
            for app in _consents(user)
        ]
        return _page(
            "account/apps.html",
            user,
            apps=shown,
            form=form,
            offline=offline_access(svc(), user.id),
        )


@bp.route("/account/apps/offline", methods=["POST"])
def revoke_offline():
    """End one application's offline access for the signed-in person (idp.oidc.offline)."""
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        user_id, user_uuid = user.id, user.uuid
    if not ConfirmForm().validate():
        abort(400, _("The form expired. Please try again."))
    client_id = request.form.get("client_id", "")[:255]
    held = {a.client_id: a.name for a in offline_access(svc(), user_id)}
    if client_id not in held:
        flash(_("That application no longer had offline access."), "info")
    else:
        revoke_offline_access(
            svc(),
            user_id,
            user_uuid,
            client_id,
            ip=client_ip(),
            user_agent=user_agent(),
            request_id=g.get("request_id"),
        )
        flash(
            _("%(app)s no longer has offline access to your account.", app=held[client_id]),
            "success",
        )
    return redirect(url_for("account.apps") + "#offline")


@bp.route("/account/mfa")
def mfa():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        return _page("account/mfa.html", user, describe=describe, **mfa_overview(db, user))


@bp.route("/account/security-questions", methods=["GET", "POST"])
def security_questions():
    rec = svc().settings.recovery
    if not rec.security_questions:
        abort(404)
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = ConfirmForm()
        existing = db.scalars(select(SecurityAnswer).where(SecurityAnswer.user_id == user.id))
        chosen = [a.question for a in existing]
        if request.method == "POST":
            pairs = [
                (request.form.get(f"question_{i}", ""), request.form.get(f"answer_{i}", ""))
                for i in range(rec.security_questions_count)
            ]
            questions = [q for q, _a in pairs]
            valid = (
                form.validate()
                and all(q in rec.questions for q in questions)
                and len(set(questions)) == len(questions)
                and all(len(normalize_answer(a)) >= 2 for _q, a in pairs)
            )
            if not valid:
                return _page(
                    "account/security_questions.html",
                    user,
                    400,
                    form=form,
                    questions=rec.questions,
                    count=rec.security_questions_count,
                    chosen=chosen,
                    error=_("Choose different questions and answer each of them."),
                )
            hasher = password_hasher(svc())
            db.query(SecurityAnswer).filter(SecurityAnswer.user_id == user.id).delete()
            for q, a in pairs:
                db.add(
                    SecurityAnswer(
                        user_id=user.id,
                        question=q,
                        answer_hash=hasher.hash(normalize_answer(a)),
                        created_at=svc().clock.utcnow(),
                    )
                )
            audit(db, "account.security_questions_set", actor=user.uuid, target=user.uuid)
            db.commit()
            flash(_("Your security questions were saved."), "success")
            return redirect(url_for("account.security_questions"))
        return _page(
            "account/security_questions.html",
            user,
            form=form,
            questions=rec.questions,
            count=rec.security_questions_count,
            chosen=chosen,
        )


@bp.route("/account/export")
def export():
    """Everything we hold about the person (GDPR art. 15 / 20): JSON to download, or with
    ``?format=html`` a printable page."""
    as_html = request.args.get("format") == "html"
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        actor = Actor.user(user.id, user.uuid, ip=client_ip(), request_id=g.get("request_id"))
        ctx = Context(db, svc(), actor)
        data = gdpr.personal_data(ctx, user, sessions=sessions(), current_sid=g.sid)
        audit(
            db,
            "account.exported",
            actor=user.uuid,
            target=user.uuid,
            format="html" if as_html else "json",
        )
        db.commit()
        if as_html:
            return _page("account/export.html", user, data=data)
    body = json.dumps(data, default=str, indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-account.json"'},
    )
