"""The concrete login steps after the first factor: second factor, forced or expired password
change, expiry notice. Which of them run is decided by ``idp.core.policy.plan_steps``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.policy import (
    STEP_EXPIRY_NOTICE,
    STEP_MFA,
    STEP_SET_PASSWORD,
    password_age,
)
from ..core.steps import StepContext, StepResult, enrolled_factors, factors
from . import authkit
from .forms import CodeForm, ContinueForm, NewPasswordForm

# Wrong answers at one step before the whole login is abandoned (start again from the password).
MAX_STEP_FAILURES = 5


class MfaStep:
    """The second factor. Factors (TOTP, WebAuthn, backup, e-mail/SMS codes) register through
    ``idp.core.steps.register_factor``; this step lets the user pick one and checks it."""

    id = STEP_MFA
    template = "login_mfa.html"
    form_class = CodeForm

    def _chosen(self, ctx: StepContext, wanted: str | None = None):
        usable = {f.id: f for f in enrolled_factors(ctx.svc, ctx.user)}
        key = wanted if wanted in usable else ctx.pending.data.get("factor")
        if key not in usable:
            key = next(iter(usable), None)
        return usable, (usable.get(key) if key else None)

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        usable, factor = self._chosen(ctx)
        extra = factor.begin(ctx.svc, ctx.user, ctx.pending) if factor else {}
        if factor:
            ctx.pending.data["factor"] = factor.id
        return {
            "factor": factor,
            "factors": list(usable.values()),
            "not_enrolled": factor is None,
            "known_factors": list(factors()),
            **extra,
        }

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        _, factor = self._chosen(ctx, form.get("factor"))
        if factor is None:
            return StepResult(False, "mfa_not_enrolled", abort=True)
        if factor.verify(ctx.svc, ctx.user, ctx.pending, form):
            return StepResult(True, amr=[factor.amr])
        return StepResult(False, "bad_code")


class SetPasswordStep:
    """A new password before the login completes: forced by an administrator, expired, or the
    first login through a magic link (no password yet)."""

    id = STEP_SET_PASSWORD
    template = "login_set_password.html"
    form_class = NewPasswordForm

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        reason = ctx.pending.data.get("change_reason") or (
            "expired" if not ctx.user.must_change_password else "forced"
        )
        return {"reason": reason, "rules": authkit.policy_help()}

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        new = form.get("new_password") or ""
        if new != form.get("confirm"):
            return StepResult(False, "mismatch")
        problems = authkit.password_problems(ctx.db, ctx.user, new)
        if problems:
            return StepResult(False, "policy", params={"problems": problems})
        authkit.set_password(
            ctx.db, ctx.user, new, reason=ctx.pending.data.get("change_reason") or "forced"
        )
        return StepResult(True)


class ExpiryNoticeStep:
    """The password expires soon: offer to change it now, or continue."""

    id = STEP_EXPIRY_NOTICE
    template = "login_expiry_notice.html"
    form_class = ContinueForm

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        age = password_age(
            authkit.password_policy(), ctx.user.password_changed_at, ctx.svc.clock.utcnow()
        )
        return {"days_left": age.days_left}

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        if form.get("change_now"):
            ctx.pending.data["change_reason"] = "expiring"
            return StepResult(True, insert_steps=[STEP_SET_PASSWORD])
        return StepResult(True)


STEPS: dict[str, Any] = {s.id: s for s in (MfaStep(), SetPasswordStep(), ExpiryNoticeStep())}
