"""The concrete login steps after the first factor: second factor, forced or expired password
change, expiry notice. Which of them run is decided by ``idp.core.policy.plan_steps``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backends import backup_codes, totp
from ..core.authn import AMR_OTP
from ..core.policy import (
    STEP_BACKUP_CODES,
    STEP_EXPIRY_NOTICE,
    STEP_MFA,
    STEP_MFA_ENROLL,
    STEP_SET_PASSWORD,
    STEP_TERMS,
    password_age,
)
from ..core.steps import StepContext, StepResult, enrolled_factors, factors
from ..storage import terms
from .forms import CodeForm, ContinueForm, NewPasswordForm
from .password_policy import password_policy, password_problems, policy_help, set_password
from .requestinfo import audit

# Wrong answers at one step before the whole login is abandoned (start again from the password).
MAX_STEP_FAILURES = 5


class MfaStep:
    """The second factor. Factors (TOTP, WebAuthn, backup, e-mail/SMS codes) are the app's own
    (``Services.factors``, filled when the app is built); this step lets the user pick one of
    them and checks it."""

    id = STEP_MFA
    template = "login_mfa.html"
    form_class = CodeForm

    def _chosen(self, ctx: StepContext, wanted: str | None = None):
        allowed = ctx.pending.data.get("methods")  # None: the policy does not narrow them
        usable = {
            f.id: f
            for f in enrolled_factors(ctx.svc, ctx.user, ctx.db)
            if allowed is None or f.id in allowed
        }
        key = wanted if wanted in usable else ctx.pending.data.get("factor")
        if key not in usable:
            # Backup codes are for when the usual factor is lost: never the one offered first.
            key = next((k for k in usable if k != "backup"), next(iter(usable), None))
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
            "known_factors": list(factors(ctx.svc)),
            "remember_days": ctx.svc.settings.mfa.remember_days,
            **extra,
        }

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        usable, factor = self._chosen(ctx, form.get("factor"))
        if factor is None:
            return StepResult(False, "mfa_not_enrolled", abort=True)
        used = factor if factor.verify(ctx.svc, ctx.user, ctx.pending, form) else None
        if used is None:
            used = self._backup_in_code_field(ctx, usable, factor, form)
        if used is None:
            return StepResult(False, "bad_code")
        if form.get("remember") and ctx.svc.settings.mfa.remember_days > 0:
            ctx.pending.data["remember"] = True
        if used.id == "backup":
            # Backup codes are for a lost device: the account's audit trail says one was spent
            # (and how many are left), whichever field it was typed into.
            audit(
                ctx.db,
                "mfa.backup_code_used",
                actor=ctx.user.uuid,
                target=ctx.user.uuid,
                field=factor.id,
                remaining=backup_codes.remaining(ctx.db, ctx.user.id),
            )
        # A factor whose method depends on the authenticator used (WebAuthn: hwk or swk)
        # names it in pending.data["factor_amr"].
        amr = ctx.pending.data.pop("factor_amr", None) or used.amr
        return StepResult(True, amr=[amr])

    @staticmethod
    def _backup_in_code_field(ctx: StepContext, usable: dict, factor: Any, form: Mapping[str, str]):
        """One code field for either: a backup code typed where the authenticator app's (or a
        sent) code goes is taken as one, when the user may use backup codes here. Only text that
        has the shape of a backup code is tried, after the chosen factor said no."""
        backup = usable.get("backup")
        if backup is None or factor is backup or getattr(factor, "template", None):
            return None
        if backup_codes.normalize(form.get("code", "")) is None:
            return None
        return backup if backup.verify(ctx.svc, ctx.user, ctx.pending, form) else None


def _enrol_key(ctx: StepContext) -> str:
    return f"totpenrol:login:{ctx.user.id}:{ctx.pending.browser}"


class MfaEnrollStep:
    """A policy demands a second factor and the user has none (past the grace period): set up
    an authenticator app now, as Keycloak's "Configure OTP" required action does. The seed waits
    in the short-lived store, sealed and bound to this browser's pending login."""

    id = STEP_MFA_ENROLL
    template = "login_mfa_enroll.html"
    form_class = CodeForm

    def _secret(self, ctx: StepContext) -> str:
        key = _enrol_key(ctx)
        sealed = ctx.svc.store.get(key)
        if sealed is None:
            secret = totp.new_secret()
            ctx.svc.store.put(key, ctx.svc.sealer.seal(secret.encode(), key), 600)
            return secret
        return ctx.svc.sealer.open(sealed, key).decode()

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        secret = self._secret(ctx)
        uri = totp.provisioning_uri(ctx.svc, ctx.user.email or ctx.user.username, secret)
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        return {"qr": totp.qr_svg(uri), "secret": secret, "grouped": grouped, "uri": uri}

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        secret = self._secret(ctx)
        p = totp.params(ctx.svc)
        step = totp.matching_step(
            secret, form.get("code", ""), p.digits, p.period, ctx.svc.clock.now()
        )
        if step is None:
            return StepResult(False, "bad_code")
        ctx.svc.store.delete(_enrol_key(ctx))
        totp.save(ctx.svc, ctx.db, ctx.user.id, secret, first_step=step)
        audit(ctx.db, "mfa.totp_enrolled", actor=ctx.user.uuid, target=ctx.user.uuid, at_login=True)
        more: list[str] = []
        if ctx.svc.settings.mfa.backup_codes > 0:
            codes = backup_codes.regenerate(ctx.svc, ctx.db, ctx.user.id)
            ctx.pending.data["backup_codes"] = ctx.svc.sealer.seal(
                "\n".join(codes).encode(), f"codes:{ctx.pending.browser}"
            )
            more = [STEP_BACKUP_CODES]
        return StepResult(True, amr=[AMR_OTP], insert_steps=more)


class BackupCodesStep:
    """Shows the backup codes made at a login enrolment, once."""

    id = STEP_BACKUP_CODES
    template = "login_backup_codes.html"
    form_class = ContinueForm

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        sealed = ctx.pending.data.get("backup_codes")
        if not sealed:
            return {"codes": []}
        raw = ctx.svc.sealer.open(sealed, f"codes:{ctx.pending.browser}").decode()
        return {"codes": raw.split("\n")}

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        ctx.pending.data.pop("backup_codes", None)
        return StepResult(True)


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
        # A first login has no earlier password to compare with: no history rule.
        return {
            "reason": reason,
            "rules": policy_help(history=reason != "first_login"),
            "username": ctx.user.username,
        }

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        new = form.get("new_password") or ""
        if new != form.get("confirm"):
            return StepResult(False, "mismatch")
        problems = password_problems(ctx.db, ctx.user, new)
        if problems:
            return StepResult(False, "policy", params={"problems": problems})
        set_password(
            ctx.db, ctx.user, new, reason=ctx.pending.data.get("change_reason") or "forced"
        )
        return StepResult(True)


class ExpiryNoticeStep:
    """The password expires soon: offer to change it now, or continue."""

    id = STEP_EXPIRY_NOTICE
    template = "login_expiry_notice.html"
    form_class = ContinueForm

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        age = password_age(password_policy(), ctx.user.password_changed_at, ctx.svc.clock.utcnow())
        return {"days_left": age.days_left}

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        if form.get("change_now"):
            ctx.pending.data["change_reason"] = "expiring"
            return StepResult(True, insert_steps=[STEP_SET_PASSWORD])
        return StepResult(True)


class TermsStep:
    """The terms of use and privacy policy in force (``[gdpr] terms_version``) were not accepted
    by this user yet: accept them, or the sign-in ends here (no SSO session is made)."""

    id = STEP_TERMS
    template = "login_terms.html"
    form_class = ContinueForm

    def challenge(self, ctx: StepContext) -> dict[str, Any]:
        cfg = ctx.svc.settings.gdpr
        return {
            "version": cfg.terms_version,
            "terms_url": cfg.terms_url,
            "privacy_url": cfg.privacy_url,
        }

    def submit(self, ctx: StepContext, form: Mapping[str, str]) -> StepResult:
        version = ctx.svc.settings.gdpr.terms_version
        if not form.get("accept"):
            return StepResult(False, "terms_declined", abort=True)
        terms.record(ctx.db, ctx.user.id, version, at=ctx.svc.clock.utcnow())
        audit(
            ctx.db,
            "gdpr.terms_accepted",
            actor=ctx.user.uuid,
            target=ctx.user.uuid,
            version=version,
        )
        return StepResult(True)


STEPS: dict[str, Any] = {
    s.id: s
    for s in (
        MfaStep(),
        MfaEnrollStep(),
        BackupCodesStep(),
        SetPasswordStep(),
        ExpiryNoticeStep(),
        TermsStep(),
    )
}
