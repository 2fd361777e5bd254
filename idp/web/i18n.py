"""The UI's language and set-up: which languages are offered, the page language of a request
(Flask-Babel's locale selector), wtforms' messages in that language, and ``init_ui`` (Babel,
template overrides, the values every template sees)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Flask, g, has_request_context, request
from flask_babel import Babel, Domain, get_locale, refresh
from jinja2 import ChoiceLoader, FileSystemLoader
from sqlalchemy import select
from wtforms.i18n import messages_path

from ..core.authn import AuthnResult
from ..storage.models import User
from .current import svc
from .sso import browser_sid, sessions

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
# The language picked with the switcher of the signed-out pages (idp.web.login.language).
LANG_COOKIE = "idp_lang"
LANG_COOKIE_DAYS = 365


def offered_languages() -> list[str]:
    """The configured UI languages ([branding] languages); the first is the default."""
    return list(svc().settings.branding.languages) or ["en"]


def offered_language(tag: str | None, offered: list[str]) -> str | None:
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
    sid = browser_sid()
    rec = sessions().peek(sid) if sid else None
    if rec is None:
        return None
    uuid = AuthnResult.from_dict(rec["result"]).user_uuid
    with svc().sessions() as db:
        return db.scalar(select(User.locale).where(User.uuid == uuid))


def switched_language(offered: list[str]) -> str | None:
    """The language chosen with the switcher of the signed-out pages (cookie ``LANG_COOKIE``)."""
    tag = request.cookies.get(LANG_COOKIE)
    return tag if tag in offered else None


def select_locale() -> str:
    """The page language, as Keycloak users expect it: on a signed-in user's own pages their
    profile language; else the language picked with the switcher (``LANG_COOKIE``); else the
    profile language of the person signing in or signed in; else the relying party's
    ``ui_locales`` of the pending request (OIDC Core 3.1.2.1, in order of preference), else the
    browser's Accept-Language, else the first configured language. Only configured languages
    are ever chosen."""
    offered = offered_languages()
    if not has_request_context():  # a mail rendered from the CLI: the caller forces a language
        return offered[0]
    if g.get("signed_in_user") is not None and "user_locale" in g:
        chosen = offered_language(g.user_locale, offered)
        if chosen:
            return chosen
    chosen = switched_language(offered)
    if chosen:
        return chosen
    user_locale = g.user_locale if "user_locale" in g else _session_user_locale()
    chosen = offered_language(user_locale, offered)
    if chosen:
        return chosen
    for tag in g.get("ui_locales") or []:
        chosen = offered_language(tag, offered)
        if chosen:
            return chosen
    return request.accept_languages.best_match(offered) or offered[0]


def language_choices() -> list[tuple[str, str]]:
    """The offered languages as (tag, name in that language) for the switcher."""
    return [(tag, _language_name(tag)) for tag in offered_languages()]


@lru_cache(maxsize=64)
def _language_name(tag: str) -> str:
    try:
        name = Locale.parse(tag.replace("-", "_")).get_display_name() or tag
    except (ValueError, LookupError):
        return tag
    return name[:1].upper() + name[1:]


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
        locale_selector=lambda: _babel_locale(select_locale()),
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
            "languages": language_choices,
            "signed_in": g.get("signed_in_user"),
            "security_questions_enabled": settings.recovery.security_questions,
            "deletion_mode": settings.gdpr.deletion,
        }
