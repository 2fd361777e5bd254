"""What the login, password and account pages share: UI set-up (Babel, template overrides,
branding), the signed-in user, safe return targets, one-time tokens, mail, audit rows, lockout
counters, the per-user session index and setting a password under the policy."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from babel import Locale
from flask import (
    Flask,
    current_app,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import Babel, Domain, force_locale, get_locale, lazy_gettext, refresh
from jinja2 import ChoiceLoader, FileSystemLoader
from sqlalchemy import delete, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms.i18n import messages_path

from ..backends.chain import password_hasher
from ..core.authn import AuthnResult
from ..core.policy import (
    ACCOUNT_OK,
    LockoutPolicy,
    PasswordPolicy,
    Violation,
    check_password,
)
from ..delivery.mail import Mailer, MailQueue, make_mailer, make_queue
from ..services import Services
from ..sso.sessions import COOKIE
from ..sso.users import load_user, state_of
from ..storage.models import AuditEvent, User
from ..storage.models_auth import PasswordHistory, SsoSessionIndex
from .sso import sessions

log = logging.getLogger("idp.login")

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def svc() -> Services:
    return current_app.extensions["idp"]


# --- UI set-up ----------------------------------------------------------------------------------


def offered_languages() -> list[str]:
    """The configured UI languages ([branding] languages); the first is the default."""
    return list(svc().settings.branding.languages) or ["en"]


def _offered(tag: str | None, offered: list[str]) -> str | None:
    """``tag`` ("de-CH", "de_AT", "DE") reduced to an offered language, or None."""
    if not tag:
        return None
    tag = tag.replace("_", "-").strip()
    if tag in offered:
        return tag
    base = tag.split("-")[0].lower()
    return base if base in offered else None


def _session_user_locale() -> str | None:
    """The profile language of the browser's signed-in user on pages that did not load the user
    themselves (consent, logout, the login page while signed in). Reads the session record
    without refreshing its idle timer: choosing a language is not activity."""
    sid = request.cookies.get(COOKIE)
    rec = sessions()._record(sid) if sid else None
    if rec is None:
        return None
    uuid = AuthnResult.from_dict(rec["result"]).user_uuid
    with svc().sessions() as db:
        return db.scalar(select(User.locale).where(User.uuid == uuid))


def _select_locale() -> str:
    """The page language, as Keycloak users expect it: the signed-in user's profile language,
    else the relying party's ``ui_locales`` of the pending request (OIDC Core 3.1.2.1, in order
    of preference), else the browser's Accept-Language, else the first configured language.
    Only configured languages are ever chosen."""
    offered = offered_languages()
    if not has_request_context():  # a mail rendered from the CLI: the caller forces a language
        return offered[0]
    user_locale = g.user_locale if "user_locale" in g else _session_user_locale()
    chosen = _offered(user_locale, offered)
    if chosen:
        return chosen
    for tag in g.get("ui_locales") or []:
        chosen = _offered(tag, offered)
        if chosen:
            return chosen
    return request.accept_languages.best_match(offered) or offered[0]


@lru_cache(maxsize=64)
def _babel_locale(tag: str) -> Locale:
    """Flask-Babel takes a Locale as it is and parses a string anew on every request (a
    file-system check each time): the few configured languages are parsed once."""
    return Locale.parse(tag.replace("-", "_"))


def locale_hints(*, user_locale: str | None = None, ui_locales: list[str] | None = None) -> None:
    """Tell the selector what this request learnt (the user, the pending request) and drop a
    language chosen earlier in the request, so the page renders in the right one."""
    if user_locale is not None:
        g.user_locale = user_locale
    if ui_locales is not None:
        g.ui_locales = ui_locales
    refresh()


def html_lang() -> str:
    """The selected language as a BCP 47 tag for ``<html lang>`` ("de", "pt-BR")."""
    locale = get_locale()
    return str(locale).replace("_", "-") if locale else "en"


class WtformsMessages:
    """wtforms' own validation messages ("This field is required.") in the page's language.

    Flask-WTF looks for ``request.wtforms_translations`` and, when it is missing, loads and
    parses wtforms' catalog from disk on every request. This object takes its place with
    Flask-Babel's per-process catalog cache (a ``Domain``), asked at each message so a language
    chosen later in the request (the user's profile, the client's ``ui_locales``) applies."""

    def __init__(self) -> None:
        self.domain = Domain(translation_directories=messages_path(), domain="wtforms")

    def ugettext(self, string: str) -> str:
        return self.domain.get_translations().ugettext(string)

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        return self.domain.get_translations().ungettext(singular, plural, n)


def init_ui(app: Flask) -> None:
    """Called once per app when the login blueprint is registered."""
    settings = app.extensions["idp"].settings
    # Bundled catalogs first, then the instance's own: an operator adds a language (or rewords
    # a message) with <instance>/translations/<lang>/LC_MESSAGES/messages.mo, no fork needed.
    own = Path(settings.instance_dir) / "translations"
    Babel(
        app,
        locale_selector=lambda: _babel_locale(_select_locale()),
        default_translation_directories=f"{TRANSLATIONS};{own}",
    )
    # Operators override any template by putting a file of the same name here.
    override = Path(settings.instance_dir) / "templates"
    app.jinja_loader = ChoiceLoader([FileSystemLoader(str(override)), app.jinja_loader])
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 3600)
    wtforms_messages = WtformsMessages()

    @app.before_request
    def _wtforms_catalog() -> None:
        request.wtforms_translations = wtforms_messages  # read by flask_wtf.i18n

    @app.context_processor
    def _ui() -> dict[str, Any]:
        return {
            "lang": html_lang(),
            "signed_in": g.get("signed_in_user"),
            "security_questions_enabled": settings.recovery.security_questions,
        }


# --- who is signed in ---------------------------------------------------------------------------


def require_user(db: Session) -> User | Response:
    """The signed-in user whose account may still be used, or a redirect to the login."""
    result = sessions().current()
    user = load_user(db, uuid=result.user_uuid) if result else None
    if user is None or state_of(svc(), user) != ACCOUNT_OK:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    g.signed_in_user = user
    g.sid = result.sid
    locale_hints(user_locale=user.locale or "")
    return user


# --- return targets -----------------------------------------------------------------------------


def safe_next(target: str | None) -> str | None:
    """Accept a same-origin return target only: a path ("/account/x") or an absolute URL on the
    issuer's origin. Everything else ("//evil", "https://evil", "/\\evil", "javascript:") is
    dropped; relying parties' own URLs come back through their protocol's resume URL instead."""
    if not target or len(target) > 2000:
        return None
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    issuer = urlsplit(svc().settings.issuer)
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else None
    if (parts.scheme, parts.netloc) == (issuer.scheme, issuer.netloc):
        return target
    return None


# --- one-time tokens ----------------------------------------------------------------------------

TOKEN_PURPOSES = ("reset", "magic", "verify", "approve")


def issue_token(purpose: str, data: dict[str, Any], minutes: int | None = None) -> str:
    """A single-use token for a mailed link. Only a keyed hash is stored, so a read of the store
    does not give usable links; it expires on its own."""
    token = secrets.token_urlsafe(32)
    ttl = 60 * (minutes or svc().settings.recovery.token_minutes)
    svc().store.put(f"ott:{purpose}:{svc().hasher.hash(token)}", data, ttl)
    return token


def peek_token(purpose: str, token: str) -> dict[str, Any] | None:
    if not token or len(token) > 100:
        return None
    return svc().store.get(f"ott:{purpose}:{svc().hasher.hash(token)}")


def take_token(purpose: str, token: str) -> dict[str, Any] | None:
    """Consume the token: of two concurrent uses exactly one succeeds."""
    if not token or len(token) > 100:
        return None
    return svc().store.take(f"ott:{purpose}:{svc().hasher.hash(token)}")


def absolute(endpoint: str, **values: Any) -> str:
    """A link for a mail: the configured issuer plus the route, never the request's Host."""
    return svc().settings.issuer + url_for(endpoint, _external=False, **values)


# --- mail ---------------------------------------------------------------------------------------


def mailer() -> Mailer:
    s = svc()
    m = s.extras.get("mailer")
    if m is None:
        m = s.extras["mailer"] = make_mailer(s.settings)
    return m


def mail_queue() -> MailQueue:
    """This app's background mail queue (idp.delivery.mail.MailQueue), built once."""
    s = svc()
    q = s.extras.get("mail_queue")
    if q is None:
        q = s.extras["mail_queue"] = make_queue(s.settings, mailer().transport)
    return q


def mail_locale(to: str, recipient: User | None = None) -> str:
    """The language a mail to ``to`` is written in: the recipient's profile language; for a
    recipient without one, the page's language when they are the person at the browser (the
    ``recipient`` passed in, e.g. someone registering), else the default language (an
    administrator notified about someone else's request)."""
    offered = offered_languages()
    if recipient is None or (recipient.email or "").lower() != to.lower():
        with svc().sessions() as db:
            known = db.scalar(select(User.locale).where(User.email == to.lower()))
        return _offered(known, offered) or offered[0]
    return _offered(recipient.locale, offered) or str(get_locale() or offered[0])


def send_mail(
    to: str | None, name: str, subject: str, *, locale: str | None = None, **context: Any
) -> bool:
    """Render ``templates/mail/<name>.txt|.html`` and send them, in the recipient's language
    (``locale``, else :func:`mail_locale` for ``to`` and the ``user`` in ``context``). Pass the
    subject as a lazy string (``lazy_gettext``) so it is translated in that language too."""
    if not to:
        return False
    with force_locale(locale or mail_locale(to, context.get("user"))):
        return mailer().send_template(render_template, to, name, str(subject), **context)


def queue_mail(
    to: str | None, name: str, subject: str, *, locale: str | None = None, **context: Any
) -> None:
    """:func:`send_mail` after the response, from the background queue: the request only puts a
    job there, whatever the recipient. ``to=None`` puts a job that sends nothing, for a request
    that must look the same as one that mails (an unknown address): same work, same time.
    The language is chosen now (it may be the page's); rendering and sending happen in the
    queue's thread, under an app context of their own."""
    app = current_app._get_current_object()
    job_context = {k: _detached(v) for k, v in context.items()}
    chosen = (locale or mail_locale(to, context.get("user"))) if to else None

    def job():
        if not to:
            return None
        with app.app_context(), force_locale(chosen):
            return mailer().render(render_template, to, name, str(subject), **job_context)

    mail_queue().put(name, job)


_USER_COLUMNS = sa_inspect(User).column_attrs


def _detached(value: Any) -> Any:
    """A user row as plain values (the columns already loaded): the queue's thread must not
    touch a database session of the request."""
    if isinstance(value, User):
        loaded = value.__dict__
        return SimpleNamespace(**{a.key: loaded.get(a.key) for a in _USER_COLUMNS})
    return value


# --- audit --------------------------------------------------------------------------------------


def client_ip() -> str | None:
    return request.remote_addr


def audit(
    db: Session,
    action: str,
    *,
    actor: str | None = None,
    target: str | None = None,
    **details: Any,
) -> None:
    """Write an audit row in the caller's unit of work (committed with the change it records)."""
    db.add(AuditEvent(**_audit_values(action, actor, target, details)))


_AUDIT_INSERT = insert(AuditEvent.__table__)


def audit_now(
    db: Session,
    action: str,
    *,
    actor: str | None = None,
    target: str | None = None,
    **details: Any,
) -> None:
    """:func:`audit` as a plain INSERT on the session's connection, sent at once: no unit of
    work to flush at the commit (for hot paths). It takes SQLite's write lock, so call it when
    the transaction is about to commit, after any store write."""
    db.connection().execute(_AUDIT_INSERT, [_audit_values(action, actor, target, details)])


def _audit_values(
    action: str, actor: str | None, target: str | None, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "at": svc().clock.utcnow(),
        "actor": actor,
        "action": action,
        "target": target,
        "ip": client_ip(),
        "request_id": g.get("request_id"),
        "details": details,
    }


# --- brute-force counters (shared store: every worker and node sees the same counts) -----------


def lockout_policy() -> LockoutPolicy:
    return LockoutPolicy.from_settings(svc().settings.lockout)


def lock_key(user: User | None, login: str) -> str:
    # Unknown names lock exactly like real ones, so a lockout says nothing about existence.
    return f"u{user.id}" if user is not None else "n:" + login.strip().lower()[:200]


def is_locked(key: str) -> bool:
    return svc().store.get(f"lock:{key}") is not None


def lock_state(key: str) -> tuple[bool, bool]:
    """(locked, failures counted) for an account key, in one store round trip."""
    lock, fails = svc().store.get_many([f"lock:{key}", f"fail:{key}"])
    return lock is not None, fails is not None


def record_failure(key: str) -> bool:
    """Count a failed login for an account key; True when this failure locked it."""
    policy = lockout_policy()
    store = svc().store
    if policy.max_failures <= 0:
        return False
    n = store.incr(f"fail:{key}", policy.window_minutes * 60)
    if n >= policy.max_failures:
        store.put(f"lock:{key}", {"at": int(svc().clock.now())}, policy.lock_minutes * 60)
        store.delete(f"fail:{key}")
        return True
    return False


def clear_failures(key: str) -> None:
    svc().store.delete(f"fail:{key}")


def unlock(user_id: int) -> None:
    """Lift a temporary lockout (admin action; also done by a completed password reset)."""
    svc().store.delete(f"lock:u{user_id}")
    svc().store.delete(f"fail:u{user_id}")


def ip_failures(ip: str | None) -> int:
    if not ip:
        return 0
    return int(svc().store.get(f"ipfails:{ip}") or 0)


def record_ip_failure(ip: str | None) -> None:
    if not ip:
        return
    window = lockout_policy().window_minutes * 60
    n = svc().store.incr(f"ipfail:{ip}", window)
    # Counters are not readable through get() on every backend; keep a readable copy.
    svc().store.put(f"ipfails:{ip}", n, window)


# --- the per-user SSO session index -------------------------------------------------------------


_INDEX_INSERT = insert(SsoSessionIndex.__table__)


def index_session(db: Session, user_id: int, sid: str, amr: list[str]) -> None:
    """Add a new SSO session to its user's index: a plain INSERT on the session's connection,
    sent at once (every login runs it). It takes SQLite's write lock, so call it when the
    transaction is about to commit, after any store write."""
    row = {
        "sid": sid,
        "user_id": user_id,
        "created_at": svc().clock.utcnow(),
        "ip": client_ip(),
        "user_agent": (request.user_agent.string or "")[:300],
        "amr": " ".join(amr)[:100],
    }
    db.connection().execute(_INDEX_INSERT, [row])


@dataclass
class SessionInfo:
    sid: str
    created_at: Any
    ip: str | None
    user_agent: str | None
    amr: str | None
    current: bool


def list_sessions(db: Session, user_id: int, current_sid: str | None) -> list[SessionInfo]:
    """Live sessions of a user; index rows whose session ended are pruned on the way."""
    mgr = sessions()
    out, dead = [], []
    rows = db.scalars(
        select(SsoSessionIndex)
        .where(SsoSessionIndex.user_id == user_id)
        .order_by(SsoSessionIndex.created_at.desc())
    )
    for row in rows:
        if mgr._record(row.sid) is None:
            dead.append(row.sid)
            continue
        out.append(
            SessionInfo(
                row.sid, row.created_at, row.ip, row.user_agent, row.amr, row.sid == current_sid
            )
        )
    if dead:
        db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(dead)))
    return out


def end_user_sessions(
    db: Session, user_id: int, keep_sid: str | None = None, only: set[str] | None = None
) -> int:
    """End every SSO session of the user except ``keep_sid`` (or only those in ``only``);
    returns how many ended. Call it before changing rows in ``db``."""
    mgr = sessions()
    sids = db.scalars(select(SsoSessionIndex.sid).where(SsoSessionIndex.user_id == user_id)).all()
    gone = [sid for sid in sids if sid != keep_sid and (only is None or sid in only)]
    # Store first, index rows after: no store write while this session holds a write lock.
    ended = sum(1 for sid in gone if mgr.destroy(sid) is not None)
    if gone:
        db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(gone)))
    return ended


# --- passwords ----------------------------------------------------------------------------------


def password_policy() -> PasswordPolicy:
    return PasswordPolicy.from_settings(svc().settings.password_policy)


_MESSAGES = {
    "min_length": lazy_gettext("Use at least %(n)s characters."),
    "max_length": lazy_gettext("Use at most %(n)s characters."),
    "require_upper": lazy_gettext("Include an upper-case letter."),
    "require_lower": lazy_gettext("Include a lower-case letter."),
    "require_digit": lazy_gettext("Include a digit."),
    "require_special": lazy_gettext("Include a special character (for example ! ? # or %%)."),
    "personal": lazy_gettext("Do not use your name, username or e-mail address."),
    "common": lazy_gettext("This password is too common. Choose one that is harder to guess."),
    "history": lazy_gettext("Do not reuse one of your last %(n)s passwords."),
    "mismatch": lazy_gettext("The two passwords do not match."),
    "too_soon": lazy_gettext("You changed your password very recently. Try again later."),
}


def violation_text(v: Violation) -> str:
    # Always %-format (also without parameters) so a literal "%%" in a message shows as "%".
    return str(_MESSAGES[v.code]) % (v.params or {})


def policy_help() -> list[str]:
    return [
        violation_text(Violation(code, params))
        for code, params in password_policy().describe()
        if code in _MESSAGES
    ]


def _in_history(db: Session, user: User, n: int):
    hasher = password_hasher(svc())

    def check(password: str) -> bool:
        hashes = [user.password_hash] if user.password_hash else []
        hashes += db.scalars(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(max(n - 1, 0))
        ).all()
        return any(hasher.verify(password, h)[0] for h in hashes[:n])

    return check


def password_problems(db: Session, user: User, new: str) -> list[str]:
    policy = password_policy()
    violations = check_password(
        policy,
        new,
        username=user.username,
        email=user.email,
        names=(user.given_name, user.family_name),
        in_history=_in_history(db, user, policy.history) if policy.history else None,
    )
    return [violation_text(v) for v in violations]


def set_password(db: Session, user: User, new: str, *, reason: str) -> None:
    """Store a new (already checked) password: history kept, flags cleared, audited."""
    policy = password_policy()
    hasher = password_hasher(svc())
    if user.password_hash and policy.history:
        db.add(
            PasswordHistory(
                user_id=user.id, password_hash=user.password_hash, created_at=svc().clock.utcnow()
            )
        )
        db.flush()
        keep = db.scalars(
            select(PasswordHistory.id)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(policy.history)
        ).all()
        db.execute(
            delete(PasswordHistory).where(
                PasswordHistory.user_id == user.id, PasswordHistory.id.not_in(keep)
            )
        )
    user.password_hash = hasher.hash(new)
    user.password_changed_at = svc().clock.utcnow()
    user.must_change_password = False
    audit(db, "password.change", actor=user.uuid, target=user.uuid, reason=reason)
