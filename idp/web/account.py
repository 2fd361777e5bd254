"""Account self-service at ``/account/``: profile and avatar, password change (ends the other
sessions), second factors, sessions and devices, recent activity, consented apps, data export."""

from __future__ import annotations

import io
import json
import secrets
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
from PIL import Image, UnidentifiedImageError
from sqlalchemy import or_, select

from ..backends.chain import password_hasher
from ..core.policy import may_change_now, normalize_answer
from ..core.steps import enrolled_factors
from ..services import ConsentLister, ConsentRevoker, Services
from ..storage import session_index
from ..storage.models import AuditEvent, Group, GroupMember, Role, User, UserRole
from ..storage.models_auth import SecurityAnswer
from .admin.guard import may_open_console
from .current import svc
from .forms import AvatarForm, ChangePasswordForm, ConfirmForm, ProfileForm
from .i18n import locale_hints
from .mfa import overview as mfa_overview
from .password_policy import (
    POLICY_MESSAGES,
    password_policy,
    password_problems,
    policy_help,
    set_password,
)
from .requestinfo import audit, require_user
from .sso import sessions

bp = Blueprint("account", __name__)

AVATAR_MAX_BYTES = 2 * 1024 * 1024
AVATAR_MIN_PX = 200
AVATAR_SIZE = 256
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
    return Path(svc().settings.instance_dir) / "avatars"


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
        **context,
    ), status


@bp.route("/account/")
def index():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        return _page(
            "account/profile.html",
            user,
            form=_profile_form(user),
            avatar_form=AvatarForm(formdata=None),
            verify_form=ConfirmForm(formdata=None),
        )


@bp.route("/account/profile", methods=["POST"])
def profile():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        form = _profile_form(user, bind=True)
        if not form.validate():
            return _page(
                "account/profile.html",
                user,
                400,
                form=form,
                avatar_form=AvatarForm(formdata=None),
                verify_form=ConfirmForm(formdata=None),
            )
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
    return redirect(url_for("account.index"))


def _avatar_error(user: User, message: str):
    form = AvatarForm()
    form.avatar.errors = [message]
    return _page(
        "account/profile.html",
        user,
        400,
        form=_profile_form(user),
        avatar_form=form,
        verify_form=ConfirmForm(formdata=None),
    )


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
        data = upload.stream.read(AVATAR_MAX_BYTES + 1)
        if len(data) > AVATAR_MAX_BYTES:
            return _avatar_error(user, _("The picture is larger than 2 MB."))
        try:
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                probe.verify()  # structural check before decoding pixels
            image = Image.open(io.BytesIO(data))
            if kind not in ("JPEG", "PNG"):
                return _avatar_error(user, _("Only JPEG and PNG pictures are accepted."))
            if image.width * image.height > 40_000_000:  # decompression bombs
                return _avatar_error(user, _("The picture is too large."))
            image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
            return _avatar_error(user, _("This file is not a JPEG or PNG picture."))
        if min(image.size) < AVATAR_MIN_PX:
            return _avatar_error(
                user, _("The picture must be at least %(n)s×%(n)s pixels.", n=AVATAR_MIN_PX)
            )
        # Re-encode (drops metadata such as GPS positions), centre-crop to a square, resize.
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.convert("RGB").crop((left, top, left + side, top + side))
        square = square.resize((AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS)
        directory = _avatar_dir()
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_urlsafe(16)}.png"
        square.save(directory / name, format="PNG", optimize=True)
        old = user.avatar
        user.avatar = name
        audit(db, "account.avatar_updated", actor=user.uuid, target=user.uuid)
        db.commit()
        if old and "/" not in old:
            (directory / old).unlink(missing_ok=True)
    flash(_("Your picture was updated."), "success")
    return redirect(url_for("account.index"))


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
            send_verification(user)
            flash(_("We have sent you a confirmation link."), "success")
    return redirect(url_for("account.index"))


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
        if form.new_password.data != form.confirm.data:
            problems = [_("The two passwords do not match.")]
        else:
            problems = password_problems(db, user, form.new_password.data)
        if problems:
            return _page("account/password.html", user, 400, problems=problems, **page)
        ended = session_index.end_user_sessions(db, sessions(), user.id, keep_sid=g.sid)
        set_password(db, user, form.new_password.data, reason="self-service")
        db.commit()
    flash(
        _("Your password was changed. %(n)s other session(s) were signed out.", n=ended), "success"
    )
    return redirect(url_for("account.password"))


def _handle(sid: str) -> str:
    """An opaque name for a session on the page; the session id itself never reaches HTML."""
    return svc().hasher.hash("handle:" + sid)[-20:]


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
            chosen = {
                i.sid
                for i in live
                if not i.current and (wanted == "others" or _handle(i.sid) == wanted)
            }
            db.commit()  # pruned index rows; the store is written next
            ended = session_index.end_user_sessions(
                db, sessions(), user.id, keep_sid=g.sid, only=chosen
            )
            audit(db, "session.revoked", actor=user.uuid, target=user.uuid, count=ended)
            db.commit()
            flash(_("The session was signed out."), "success")
            return redirect(url_for("account.sessions_page"))
        db.commit()  # pruned index rows
        rows = [{"handle": _handle(i.sid), "info": i} for i in live]
        return _page("account/sessions.html", user, sessions=rows, form=form)


def _activity(db: Any, user: User, limit: int = 50) -> list[AuditEvent]:
    return list(
        db.scalars(
            select(AuditEvent)
            .where(or_(AuditEvent.target == user.uuid, AuditEvent.actor == user.uuid))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(limit)
        )
    )


@bp.route("/account/activity")
def activity():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        return _page("account/activity.html", user, events=_activity(db, user))


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
            for _lister, revoker in svc().consent_sources:
                revoker(svc(), user, key)
            audit(db, "consent.revoked", actor=user.uuid, target=user.uuid, app=key[:200])
            db.commit()
            flash(_("Access was revoked."), "success")
            return redirect(url_for("account.apps"))
        return _page("account/apps.html", user, apps=_consents(user), form=form)


@bp.route("/account/mfa")
def mfa():
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        return _page("account/mfa.html", user, **mfa_overview(db, user))


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
    """Everything we hold about the person, as JSON (GDPR art. 15 / 20)."""
    with svc().sessions() as db:
        user = require_user(db)
        if not isinstance(user, User):
            return user
        groups = db.scalars(
            select(Group.path).join(GroupMember).where(GroupMember.user_id == user.id)
        ).all()
        roles = db.scalars(
            select(Role.name).join(UserRole).where(UserRole.user_id == user.id)
        ).all()
        profile = {
            c: getattr(user, c)
            for c in (
                "uuid username email email_verified given_name middle_name family_name "
                "display_name phone phone_verified locale timezone status start_date end_date "
                "source created_at updated_at last_login_at password_changed_at custom"
            ).split()
        }
        profile["company"] = user.company.name if user.company else None
        profile["department"] = user.department.name if user.department else None
        profile["position"] = user.position.name if user.position else None
        data = {
            "profile": profile,
            "groups": list(groups),
            "roles": list(roles),
            "second_factors": sorted(f.id for f in enrolled_factors(svc(), user)),
            "sessions": [
                {"created_at": i.created_at, "ip": i.ip, "user_agent": i.user_agent, "amr": i.amr}
                for i in session_index.list_sessions(db, sessions(), user.id, g.sid)
            ],
            "applications": _consents(user),
            "activity": [
                {"at": e.at, "action": e.action, "ip": e.ip, "details": e.details}
                for e in _activity(db, user, limit=1000)
            ],
        }
        audit(db, "account.exported", actor=user.uuid, target=user.uuid)
        db.commit()
    body = json.dumps(data, default=str, indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-account.json"'},
    )
