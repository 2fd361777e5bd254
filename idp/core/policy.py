"""Login and password policy as data (design ideas 2 and 10): which steps a login runs, whether an
account may sign in today, what a password must look like, and how failed logins are throttled.

Standard library only. The web layer gathers facts (user row, settings, store counters) and asks
these functions; nothing here reads a database or a request.
"""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

# --- password policy ----------------------------------------------------------------------------

SPECIALS = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ")


@dataclass(frozen=True)
class PasswordPolicy:
    mode: str = "classic"  # "classic" | "nist"
    min_length: int = 10
    max_length: int = 128
    require_upper: bool = True
    require_lower: bool = True
    require_digit: bool = True
    require_special: bool = False
    block_common: bool = True
    block_personal: bool = True
    max_age_days: int = 0
    warn_days: int = 14
    history: int = 5
    min_age_minutes: int = 0

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> PasswordPolicy:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})

    @property
    def nist(self) -> bool:
        return self.mode == "nist"

    @property
    def effective_max_age_days(self) -> int:
        # NIST SP 800-63B 5.1.1.2: no periodic change without evidence of compromise.
        return 0 if self.nist else self.max_age_days

    def describe(self) -> list[tuple[str, dict[str, Any]]]:
        """The rules as (message id, params) for the form's help text, in display order."""
        rules: list[tuple[str, dict[str, Any]]] = [("min_length", {"n": self.min_length})]
        if not self.nist:
            for flag in ("require_upper", "require_lower", "require_digit", "require_special"):
                if getattr(self, flag):
                    rules.append((flag, {}))
        if self.block_personal:
            rules.append(("personal", {}))
        if self.block_common:
            rules.append(("common", {}))
        if self.history:
            rules.append(("history", {"n": self.history}))
        return rules


@dataclass(frozen=True)
class Violation:
    """A broken rule: ``code`` is stable (tests, translations), ``params`` fill the message."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of the 20,000 most common passwords (see idp/data/README.md)."""
    data = resources.files("idp.data").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def personal_tokens(
    username: str | None, email: str | None, names: Iterable[str | None]
) -> set[str]:
    """Parts of the person's identity a password must not contain (3+ characters each)."""
    tokens = {username or ""}
    if email:
        local = email.split("@", 1)[0]
        tokens.add(local)
        tokens.update(local.replace("_", ".").replace("-", ".").split("."))
    tokens.update(n for n in names if n)
    return {_normalize(t) for t in tokens if len(t) >= 3}


def check_password(
    policy: PasswordPolicy,
    password: str,
    *,
    username: str | None = None,
    email: str | None = None,
    names: Iterable[str | None] = (),
    in_history: Callable[[str], bool] | None = None,
) -> list[Violation]:
    """Every rule ``password`` breaks, cheapest first. ``in_history`` (password -> bool) is
    called last and only when everything else passed, since it verifies slow hashes."""
    out: list[Violation] = []
    length = len(password)
    if length < policy.min_length:
        out.append(Violation("min_length", {"n": policy.min_length}))
    if length > policy.max_length:
        out.append(Violation("max_length", {"n": policy.max_length}))
    if not policy.nist:
        if policy.require_upper and not any(c.isupper() for c in password):
            out.append(Violation("require_upper"))
        if policy.require_lower and not any(c.islower() for c in password):
            out.append(Violation("require_lower"))
        if policy.require_digit and not any(c.isdigit() for c in password):
            out.append(Violation("require_digit"))
        if policy.require_special and not any(c in SPECIALS or not c.isalnum() for c in password):
            out.append(Violation("require_special"))
    folded = _normalize(password)
    if policy.block_personal and any(t in folded for t in personal_tokens(username, email, names)):
        out.append(Violation("personal"))
    if policy.block_common and folded in common_passwords():
        out.append(Violation("common"))
    if not out and policy.history and in_history is not None and in_history(password):
        out.append(Violation("history", {"n": policy.history}))
    return out


@dataclass(frozen=True)
class PasswordAge:
    expired: bool
    days_left: int | None  # None = never expires
    warn: bool


def password_age(policy: PasswordPolicy, changed_at: datetime | None, now: datetime) -> PasswordAge:
    """Has the password expired, or will it soon? A password never changed (imported, or set
    before the policy existed) counts from ``now``: it is never expired on the first login."""
    max_age = policy.effective_max_age_days
    if not max_age or changed_at is None:
        return PasswordAge(False, None, False)
    expires = changed_at + timedelta(days=max_age)
    left = (expires - now).total_seconds() / 86400
    if left <= 0:
        return PasswordAge(True, 0, False)
    days = int(left) if left == int(left) else int(left) + 1
    return PasswordAge(False, days, days <= policy.warn_days)


def may_change_now(policy: PasswordPolicy, changed_at: datetime | None, now: datetime) -> bool:
    if not policy.min_age_minutes or changed_at is None:
        return True
    return now - changed_at >= timedelta(minutes=policy.min_age_minutes)


# --- account state ------------------------------------------------------------------------------

ACCOUNT_OK = "ok"


def account_state(status: str, start_date: date | None, end_date: date | None, today: date) -> str:
    """Why this account may not sign in today, or ``"ok"``. Dates are checked on every login, so
    accounts start and end on their own day without a scheduled job. ``end_date`` is the last
    day the account works."""
    if status != "active":
        return status  # inactive | locked | pending | expired
    if start_date is not None and today < start_date:
        return "not_yet_active"
    if end_date is not None and today > end_date:
        return "expired"
    return ACCOUNT_OK


# --- which steps a login runs -------------------------------------------------------------------

STEP_PASSWORD = "password"  # noqa: S105 - a step name
STEP_MFA = "mfa"
# forced change, expired password, or first login by magic link
STEP_SET_PASSWORD = "set_password"  # noqa: S105 - a step name
STEP_EXPIRY_NOTICE = "expiry_notice"
STEP_MFA_ENROLL = "mfa_enroll"  # set up TOTP during the login (policy demands MFA, none set up)
STEP_BACKUP_CODES = "backup_codes"  # show the backup codes made by that enrolment, once
STEP_TERMS = "terms"  # accept the current terms of use / privacy policy version ([gdpr])


@dataclass(frozen=True)
class LoginFacts:
    """What the policy needs to know about the person and the request after the first factor."""

    require_mfa: bool  # the user, or a group/role rule, demands a second factor
    enrolled_factors: tuple[str, ...]  # ids of second factors the user can use
    must_change_password: bool
    password_expired: bool
    password_expiry_warning: bool
    wanted_acr_level: int  # from acr_values / RequestedAuthnContext (0 = none)
    local_password: bool  # the password lives here (a directory's password is changed there)
    mfa_everyone: bool = False  # settings: every user must pass a second factor
    # From ``mfa_requirement``: the methods the matching policies allow (None = any), and
    # whether a user without a factor is still inside the grace period.
    mfa_methods: tuple[str, ...] | None = None
    mfa_grace: bool = False
    enroll_at_login: bool = False  # a user who must but cannot do MFA sets up TOTP now
    device_remembered: bool = False  # this browser passed MFA for the user recently
    # The sign-in's risk score (idp.core.risk) asks for a second factor: as a client's step-up,
    # it is asked even of a remembered device and within the grace period.
    risk_step_up: bool = False
    terms_pending: bool = False  # [gdpr] terms_version is set and the user has not accepted it


def plan_steps(facts: LoginFacts) -> list[str]:
    """The steps that follow the first factor, in order. A forced password change comes after
    the second factor: nobody sets a new password on the strength of the old one alone."""
    steps: list[str] = []
    step_up = facts.wanted_acr_level >= 2 or facts.risk_step_up
    wants_mfa = facts.require_mfa or facts.mfa_everyone or step_up
    allowed = facts.mfa_methods
    usable = [f for f in facts.enrolled_factors if allowed is None or f in allowed]
    if facts.device_remembered and not step_up:
        pass  # the device stands in for the second factor, except when a client asks for more
    elif usable or (facts.enrolled_factors and not wants_mfa):
        # An enrolled factor is always used: a password alone must not reach an account that
        # has more.
        steps.append(STEP_MFA)
    elif wants_mfa and not (facts.mfa_grace and not step_up):
        # Only a user with no factor at all sets one up on the password alone. One whose factors
        # this policy does not allow would otherwise add a factor without passing the one they
        # have: an administrator sorts that out (the MFA step tells them so).
        can_enroll = (
            facts.enroll_at_login
            and not facts.enrolled_factors
            and (allowed is None or "totp" in allowed)
        )
        steps.append(STEP_MFA_ENROLL if can_enroll else STEP_MFA)
    if facts.local_password and (facts.must_change_password or facts.password_expired):
        steps.append(STEP_SET_PASSWORD)
    elif facts.local_password and facts.password_expiry_warning:
        steps.append(STEP_EXPIRY_NOTICE)
    if facts.terms_pending:
        # Last: the person is who they say before they agree to anything in their name.
        steps.append(STEP_TERMS)
    return steps


# --- MFA policy ---------------------------------------------------------------------------------

MFA_RULE_KINDS = ("everyone", "group", "role", "client", "sp", "user")


@dataclass(frozen=True)
class MfaRule:
    """One line of ``[mfa] policies``: "KIND:TARGET [methods=a,b] [grace_days=N]"."""

    kind: str
    target: str = ""
    methods: tuple[str, ...] = ()  # empty = whatever the global list allows
    grace_days: int | None = None  # None = the global grace period

    @classmethod
    def parse(cls, text: str) -> MfaRule:
        """Parse a rule; ValueError with a readable reason when it is malformed."""
        words = text.split()
        if not words:
            raise ValueError("an MFA policy must not be empty")
        kind, _sep, target = words[0].partition(":")
        if kind not in MFA_RULE_KINDS:
            raise ValueError(f"MFA policy {text!r}: unknown kind {kind!r}")
        if (kind == "everyone") != (not target):
            raise ValueError(f"MFA policy {text!r}: 'everyone' takes no target, others need one")
        methods: tuple[str, ...] = ()
        grace: int | None = None
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if key == "methods" and sep and value:
                methods = tuple(m for m in value.split(",") if m)
            elif key == "grace_days" and sep and value.isascii() and value.isdigit():
                grace = int(value)
            else:
                raise ValueError(f"MFA policy {text!r}: cannot read {word!r}")
        return cls(kind, target, methods, grace)

    def matches(self, subject: MfaSubject) -> bool:
        if self.kind == "everyone":
            return True
        if self.kind == "user":
            return subject.username.lower() == self.target.lower()
        if self.kind == "group":
            want = self.target.strip("/")
            # A member of a subgroup is a member of its parents (paths "a/b" are under "a").
            return any(
                g == want or g.startswith(want + "/") or g.rsplit("/", 1)[-1] == want
                for g in (p.strip("/") for p in subject.groups)
            )
        if self.kind == "role":
            return self.target in subject.roles
        if self.kind == "client":
            return subject.protocol == "oidc" and subject.client_id == self.target
        return subject.protocol == "saml" and subject.client_id == self.target  # sp


@dataclass(frozen=True)
class MfaPolicy:
    required: bool = False
    grace_days: int = 0
    allowed_methods: tuple[str, ...] = ("totp", "backup", "email", "sms", "webauthn")
    rules: tuple[MfaRule, ...] = ()
    enroll_at_login: bool = True
    remember_days: int = 0

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> MfaPolicy:
        """Build from ``[mfa]``; ValueError names the bad policy line."""
        section = {k: section[k] for k in section}  # a settings Section or a plain mapping
        return cls(
            required=bool(section.get("required", False)),
            grace_days=int(section.get("grace_days", 0)),
            allowed_methods=tuple(section.get("allowed_methods", cls.allowed_methods)),
            rules=tuple(MfaRule.parse(line) for line in section.get("policies", ())),
            enroll_at_login=bool(section.get("enroll_at_login", True)),
            remember_days=int(section.get("remember_days", 0)),
        )


@dataclass(frozen=True)
class MfaSubject:
    """Who signs in, for which relying party, and when their account was made."""

    username: str
    groups: tuple[str, ...] = ()  # group paths
    roles: tuple[str, ...] = ()  # effective role names
    protocol: str | None = None  # "oidc" | "saml" | None (the account pages)
    client_id: str | None = None  # OIDC client_id or SAML SP entityID
    user_required: bool = False  # an administrator set "require MFA" on the account
    created_at: datetime | None = None


@dataclass(frozen=True)
class MfaRequirement:
    required: bool
    methods: tuple[str, ...]  # the second factors this login may use
    grace: bool  # required, but a user without a factor may still pass without one
    reasons: tuple[str, ...] = ()  # "user", "everyone", "group:admins"... for the audit trail
    # When the grace period ends (account creation + the shortest grace of the matching
    # rules); None without a grace period. Compliance reports show it.
    grace_until: datetime | None = None


def mfa_requirement(policy: MfaPolicy, subject: MfaSubject, now: datetime) -> MfaRequirement:
    """Does this login need a second factor, with which methods, and is the user still in the
    grace period? Every matching rule applies: the methods are those allowed by all of them
    (when that leaves nothing, the last matching rule's own list wins, so a contradictory
    configuration still demands a factor), the grace period the shortest of them."""
    reasons: list[str] = []
    graces: list[int] = []
    methods = list(policy.allowed_methods)
    if subject.user_required:
        reasons.append("user")
        graces.append(policy.grace_days)
    if policy.required:
        reasons.append("everyone")
        graces.append(policy.grace_days)
    for rule in policy.rules:
        if not rule.matches(subject):
            continue
        reasons.append(f"{rule.kind}:{rule.target}" if rule.target else rule.kind)
        graces.append(policy.grace_days if rule.grace_days is None else rule.grace_days)
        if rule.methods:
            narrowed = [m for m in methods if m in rule.methods]
            methods = narrowed or list(rule.methods)
    if not reasons:
        return MfaRequirement(False, tuple(methods), False)
    grace_days = min(graces)
    until = (
        subject.created_at + timedelta(days=grace_days)
        if grace_days and subject.created_at is not None
        else None
    )
    grace = until is not None and now < until
    return MfaRequirement(True, tuple(methods), grace, tuple(reasons), until)


# --- brute-force protection ---------------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window_minutes: int = 15
    lock_minutes: int = 15
    notify_user: bool = True
    ip_delay_after: int = 10
    ip_delay_seconds: float = 0.5
    ip_max_delay_seconds: float = 8.0
    ip_max_failures: int = 100

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> LockoutPolicy:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})

    def ip_delay(self, failures: int) -> float:
        """Seconds to hold a request from an IP with ``failures`` recent failures: nothing up to
        ``ip_delay_after``, then doubling per further failure, capped."""
        over = failures - self.ip_delay_after
        if over < 0 or self.ip_delay_after <= 0 or self.ip_delay_seconds <= 0:
            return 0.0
        return min(self.ip_max_delay_seconds, self.ip_delay_seconds * 2 ** min(over, 16))

    def ip_refused(self, failures: int) -> bool:
        return self.ip_max_failures > 0 and failures >= self.ip_max_failures


# --- security questions -------------------------------------------------------------------------


def normalize_answer(answer: str) -> str:
    """Answers match regardless of case, accents, punctuation and spacing ("St. Louis" ==
    "st louis"), so people remember them; the hash is over this form."""
    text = unicodedata.normalize("NFKD", answer)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(c if c.isalnum() else " " for c in text.casefold())
    return " ".join(text.split())
