"""Login as a sequence of small steps (design idea 2).

A pending login is a record in the short-lived store between steps. It names the user once the
first factor passed, the methods proven so far (amr) and the steps still to run. Each step has
``challenge()`` (what to show) and ``submit()`` (check the answer). The web layer owns the record;
steps only read it and say how it went. Second factors (TOTP, WebAuthn, e-mail/SMS codes, backup
codes) plug into the MFA step through the app's registry of factors (``Services.factors``, filled
when the app is built; ``register_factor(svc, factor)`` for a plugin).

Standard library only: concrete steps receive whatever they need through ``StepContext``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class PendingLogin:
    """State between steps. Stored under a fresh random id after every step (so a replayed form
    finds nothing) and bound to the browser by a secret held in its signed session cookie."""

    user_id: int
    user_uuid: str
    rid: str | None  # the AuthnRequest being answered, if any
    next_url: str | None  # where a login without a request goes (validated before storing)
    steps: list[str]  # still to run, in order
    amr: list[str] = field(default_factory=list)
    auth_time: int = 0
    browser: str = ""  # keyed hash of the browser-bound secret
    failures: int = 0  # wrong answers at the current step
    data: dict[str, Any] = field(default_factory=dict)  # per-step scratch (chosen factor...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingLogin:
        return cls(**data)

    @property
    def current(self) -> str | None:
        return self.steps[0] if self.steps else None


@dataclass
class StepResult:
    ok: bool
    error: str | None = None  # message id for the form, when not ok
    amr: list[str] = field(default_factory=list)  # methods this step proved
    abort: bool = False  # give up the whole login (too many wrong answers)
    insert_steps: list[str] = field(default_factory=list)  # run these next (e.g. change now)
    params: dict[str, Any] = field(default_factory=dict)  # for the error message


@dataclass
class StepContext:
    """What a step may use: services, the user row, the pending login, the request's locale."""

    svc: Any
    db: Any  # the request's database session; the web layer commits after submit()
    user: Any
    pending: PendingLogin


class Step(Protocol):
    id: str
    template: str
    form_class: Any  # a FlaskForm class: the web layer validates it (CSRF included) first

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        """Template variables for the form (nothing is sent yet for most steps)."""

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        """Check the answer; never raise for wrong input."""


class Factor(Protocol):
    """A second factor usable in the MFA step (form input ``code``, or its own template)."""

    id: str  # "totp", "webauthn", "backup", "email", "sms"
    amr: str  # RFC 8176 value, e.g. "otp", "hwk"
    label: str  # shown in the factor chooser

    def enrolled(self, svc: Any, user: Any) -> bool: ...

    # Optional: ``enrolled_clause(svc, user_id)`` returns the factor's own condition "this user
    # has it" (``user_id`` may be a query parameter) for one combined query (the services'
    # ``enrolment_query``), or None when the factor is switched off. The factor's module
    # keeps owning its data; the login asks once, not once per factor.

    def begin(self, svc: Any, user: Any, pending: PendingLogin) -> dict[str, Any]:
        """Send a code (e-mail/SMS) or make a WebAuthn challenge; template variables."""

    def verify(self, svc: Any, user: Any, pending: PendingLogin, form: Mapping[str, str]) -> bool:
        """Check the answer (and consume single-use codes)."""


# The factors of one app, by id, in registration order (the order of the chooser): the
# ``factors`` field of its services, filled when the app is built. No module-level registry, so
# two apps in one process never offer each other's factors. The functions below take the services
# and read only that field (this module imports nothing of the container).
Factors = dict[str, Factor]


def register_factor(svc: Any, factor: Factor) -> None:
    """Make a second factor available to the MFA step of ``svc``'s app (while it is built)."""
    svc.factors[factor.id] = factor


def factors(svc: Any) -> Factors:
    """The app's second factors, by id, in registration order (a copy)."""
    return dict(svc.factors)


# (svc, db or None, user id, factors with ``enrolled_clause``) -> ids of those the user has,
# in one round trip: ``svc.enrolment_query`` (on SQL; this module stays free of it).
EnrolmentQuery = Callable[[Any, Any, int, list[Factor]], set[str]]


def enrolled_factors(svc: Any, user: Any, db: Any = None) -> list[Factor]:
    """The app's factors this user has set up, in registration order. Factors with an
    ``enrolled_clause`` are answered by one query (on ``db`` when given, so it sees the caller's
    own unflushed changes and costs no extra connection); others are asked one by one."""
    registry: Factors = svc.factors
    run: EnrolmentQuery | None = getattr(svc, "enrolment_query", None)
    combined = [f for f in registry.values() if hasattr(f, "enrolled_clause")] if run else []
    have = run(svc, db, user.id, combined) if run and combined else set()
    return [
        f
        for f in registry.values()
        if (f.id in have if f in combined else f.enrolled(svc, user))
    ]
