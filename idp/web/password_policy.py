"""The password policy on the pages: its rules in words, a new password's problems in words,
and setting a password (idp.backends.password_change) with its audit row."""

from __future__ import annotations

from flask_babel import lazy_gettext
from sqlalchemy.orm import Session

from ..backends.chain import password_hasher
from ..backends.password_change import password_violations, store_password
from ..core.policy import PasswordPolicy, Violation
from ..storage.models import User
from .current import svc
from .requestinfo import audit


def password_policy() -> PasswordPolicy:
    return PasswordPolicy.from_settings(svc().settings.password_policy)


POLICY_MESSAGES = {
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


# Rules the browser can check as the person types (static/password-rules.js ticks them); the
# others (common passwords, history) are judged by the server only.
LIVE_RULES = (
    "min_length",
    "max_length",
    "require_upper",
    "require_lower",
    "require_digit",
    "require_special",
    "personal",
)


class RuleText(str):
    """A rule in words (a plain string, as templates always had it) that also carries its
    ``code`` and number ``n`` for the live checklist's data- attributes."""

    code: str
    n: int | None

    def __new__(cls, text: str, code: str, n: int | None = None) -> RuleText:
        obj = super().__new__(cls, text)
        obj.code, obj.n = code, n
        return obj

    @property
    def live(self) -> bool:
        return self.code in LIVE_RULES


def violation_text(v: Violation) -> str:
    # Always %-format (also without parameters) so a literal "%%" in a message shows as "%".
    return str(POLICY_MESSAGES[v.code]) % (v.params or {})


def policy_help(*, history: bool = True) -> list[str]:
    """The rules that apply to a new password, in words. ``history=False`` for a form where
    there is no earlier password to compare with (registration, a first login)."""
    return [
        RuleText(violation_text(Violation(code, params)), code, params.get("n"))
        for code, params in password_policy().describe()
        if code in POLICY_MESSAGES and (history or code != "history")
    ]


def password_problems(db: Session, user: User, new: str) -> list[str]:
    s = svc()
    violations = password_violations(db, password_hasher(s), password_policy(), user, new)
    return [violation_text(v) for v in violations]


def set_password(db: Session, user: User, new: str, *, reason: str) -> None:
    """Store a new (already checked) password: history kept, flags cleared, audited."""
    s = svc()
    store_password(db, password_hasher(s), password_policy(), user, new, now=s.clock.utcnow())
    audit(db, "password.change", actor=user.uuid, target=user.uuid, reason=reason)
