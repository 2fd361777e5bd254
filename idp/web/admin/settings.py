"""Admin console: the settings kept in the database (``/admin/settings``).

One form per section (password policy, lockout, MFA, sessions, registration, branding). A
section's form posts only its own keys; ``idp.manage.policies.update`` checks them with the
settings' own rules, stores them, audits old -> new, and bumps the settings generation, so
every worker applies them on its next request. Keys an environment variable sets are shown
read-only. Mail and SMS delivery are shown read-only (they live in the file / environment and
need a restart), with a "send test" form for each."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...errors import Forbidden
from ...manage import policies
from ...settings import env_name, load_defaults, redact_url
from ..current import svc
from ..live_settings import live_settings
from ..mailing import send_mail
from .blueprint import bp
from .guard import console

log = logging.getLogger("idp.admin")

SECTIONS: dict[str, Any] = {
    "password_policy": _l("Password policy"),
    "lockout": _l("Lockout"),
    "mfa": _l("Multi-factor authentication"),
    "session": _l("Sessions"),
    "registration": _l("Registration"),
    "branding": _l("Branding"),
    "ip_rules": _l("IP rules"),
    "risk": _l("Suspicious activity and adaptive authentication"),
    "devices": _l("Known devices"),
    "notifications": _l("Security notifications"),
    "gdpr": _l("Privacy (GDPR)"),
    "rate_limits": _l("Rate limits"),
}

LABELS: dict[str, Any] = {
    "password_policy.mode": _l("Rules"),
    "password_policy.min_length": _l("Minimum length"),
    "password_policy.max_length": _l("Maximum length"),
    "password_policy.require_upper": _l("Require an upper-case letter"),
    "password_policy.require_lower": _l("Require a lower-case letter"),
    "password_policy.require_digit": _l("Require a digit"),
    "password_policy.require_special": _l("Require a special character"),
    "password_policy.block_common": _l("Refuse common passwords"),
    "password_policy.block_personal": _l("Refuse passwords containing the person's names"),
    "password_policy.max_age_days": _l("Password expires after (days, 0 = never)"),
    "password_policy.warn_days": _l("Warn before expiry (days)"),
    "password_policy.history": _l("Previous passwords refused"),
    "password_policy.min_age_minutes": _l("Minimum minutes between changes"),
    "ip_rules.allow": _l("Networks allowed to use the IdP (CIDR, one per line; empty = any)"),
    "ip_rules.deny": _l("Networks refused everywhere (CIDR, one per line)"),
    "lockout.max_failures": _l("Failed sign-ins before the account locks"),
    "lockout.window_minutes": _l("Counting window (minutes)"),
    "lockout.lock_minutes": _l("Lock duration (minutes)"),
    "lockout.notify_user": _l("E-mail the person when locked"),
    "lockout.ip_delay_after": _l("Failures per address before slowing down"),
    "lockout.ip_delay_seconds": _l("First delay (seconds)"),
    "lockout.ip_max_delay_seconds": _l("Longest delay (seconds)"),
    "lockout.ip_max_failures": _l("Failures per address before refusing it"),
    "mfa.required": _l("Everyone must use a second factor"),
    "mfa.grace_days": _l("Grace period for new accounts (days)"),
    "mfa.allowed_methods": _l("Second factors offered (one per line)"),
    "mfa.policies": _l("MFA rules (one per line)"),
    "mfa.enroll_at_login": _l("Set up a second factor at sign-in when missing"),
    "mfa.totp_issuer": _l("Name in authenticator apps"),
    "mfa.totp_digits": _l("Authenticator code digits"),
    "mfa.totp_period": _l("Authenticator code period (seconds)"),
    "mfa.backup_codes": _l("Backup codes per set"),
    "mfa.code_ttl_seconds": _l("E-mail / SMS code lifetime (seconds)"),
    "mfa.max_sends": _l("Codes sent per window"),
    "mfa.send_window_seconds": _l("Code sending window (seconds)"),
    "mfa.remember_days": _l("Remember a device for (days, 0 = off)"),
    "mfa.reauth_minutes": _l("Minutes to change factors after re-entering the password"),
    "session.idle_minutes": _l("Sign out after inactivity (minutes)"),
    "session.max_hours": _l("Longest session (hours)"),
    "session.remember_me_days": _l("\"Keep me signed in\" lasts (days, 0 = not offered)"),
    "registration.enabled": _l("Visitors may create an account"),
    "registration.require_approval": _l("New accounts need an administrator's approval"),
    "registration.require_email_verification": _l("New accounts must confirm their e-mail"),
    "registration.admin_emails": _l("Approval requests go to (one address per line)"),
    "registration.allowed_domains": _l("Allowed e-mail domains (one per line, empty = any)"),
    "branding.product_name": _l("Product name"),
    "branding.logo_url": _l("Logo URL"),
    "branding.primary_color": _l("Primary colour"),
    "branding.background_color": _l("Background colour"),
    "branding.text_color": _l("Text colour"),
    "branding.support_text": _l("Support text"),
    "branding.languages": _l("Languages (one per line, the first is the default)"),
    "risk.stuffing_accounts": _l("Accounts failing from one address to refuse it (0 = off)"),
    "risk.stuffing_window_minutes": _l("Credential stuffing window (minutes)"),
    "risk.stuffing_block_minutes": _l("Refuse the address for (minutes)"),
    "risk.max_speed_kmh": _l("Impossible travel above (km/h, 0 = off)"),
    "risk.impossible_travel_lock": _l("Lock the account on impossible travel"),
    "risk.new_country": _l("Report a first sign-in from a new country"),
    "risk.new_country_lock": _l("Lock the account on a sign-in from a new country"),
    "risk.refresh_replay": _l("Report replayed refresh tokens"),
    "risk.mfa_burst_failures": _l("Wrong second-factor codes that make a burst (0 = off)"),
    "risk.mfa_burst_window_minutes": _l("Second-factor burst window (minutes)"),
    "risk.mfa_burst_lock": _l("Lock the account on a burst of wrong codes"),
    "risk.history_days": _l("Keep sign-in history for (days)"),
    "risk.adaptive": _l("Score every sign-in (adaptive authentication)"),
    "risk.notify_at": _l("Report a sign-in from score"),
    "risk.step_up_at": _l("Ask a second factor from score"),
    "risk.deny_at": _l("Refuse a sign-in from score"),
    "risk.step_up_without_factor": _l("When a second factor is asked of someone without one"),
    "risk.points_new_device": _l("Points: new device"),
    "risk.points_new_country": _l("Points: new country"),
    "risk.points_impossible_travel": _l("Points: impossible travel"),
    "risk.points_velocity": _l("Points: many sign-ins in an hour"),
    "risk.velocity_per_hour": _l("Sign-ins per hour that count as many (0 = off)"),
    "risk.points_account_failures": _l("Points: recent failed passwords of the account"),
    "risk.account_failures": _l("Failed passwords of the account that count (0 = off)"),
    "risk.points_address_failures": _l("Points: recent failed passwords from the address"),
    "risk.address_failures": _l("Failed passwords from the address that count (0 = off)"),
    "risk.failure_window_minutes": _l("Failed passwords count for (minutes)"),
    "devices.cookie_days": _l("Days a device cookie lasts"),
    "devices.max_per_user": _l("Known devices kept per user"),
    "notifications.user_may_disable": _l(
        "Security mails users may turn off (one per line: new_device, password_expiry, "
        "mfa_changes)"
    ),
    "notifications.admin_emails": _l("Security digest also goes to (one address per line)"),
    "notifications.digest_minutes": _l("Minutes a security digest batches events"),
    "session.max_per_user": _l("Sessions a person may have at once (0 = no limit)"),
    "session.limit_action": _l("When a sign-in goes past the limit"),
    "session.limit_help_url": _l("Help link shown when a sign-in is refused at the limit"),
    "gdpr.deletion": _l("People may delete their own account"),
    "gdpr.terms_version": _l("Terms version people accept at sign-in (empty = none)"),
    "gdpr.terms_url": _l("Terms of use link"),
    "gdpr.privacy_url": _l("Privacy policy link"),
    "gdpr.inactive_erase_days": _l("Erase deactivated accounts after (days, 0 = never)"),
    "gdpr.request_retention_days": _l("Keep ended deletion requests for (days)"),
    "rate_limits.enabled": _l("Rate limits on"),
    "rate_limits.client_auth_per_address": _l(
        "Failed client authentications per address (0 = off)"
    ),
    "rate_limits.client_auth_per_client": _l("Failed client authentications per client (0 = off)"),
    "rate_limits.client_auth_window_seconds": _l("Client authentication window (seconds)"),
    "rate_limits.reset_per_address": _l("Password reset requests per address (0 = off)"),
    "rate_limits.reset_per_account": _l("Password reset requests per account (0 = off)"),
    "rate_limits.reset_window_seconds": _l("Password reset window (seconds)"),
    "rate_limits.magic_link_per_address": _l("Sign-in link requests per address (0 = off)"),
    "rate_limits.magic_link_per_account": _l("Sign-in link requests per e-mail address (0 = off)"),
    "rate_limits.magic_link_window_seconds": _l("Sign-in link window (seconds)"),
    "rate_limits.registration_per_address": _l("Self-registrations per address (0 = off)"),
    "rate_limits.registration_per_account": _l("Self-registrations per e-mail address (0 = off)"),
    "rate_limits.registration_window_seconds": _l("Self-registration window (seconds)"),
    "rate_limits.mfa_send_per_address": _l("Sign-in codes sent per address (0 = off)"),
    "rate_limits.bearer_per_address": _l("Refused API tokens per address (0 = off)"),
    "rate_limits.bearer_window_seconds": _l("API token window (seconds)"),
    "rate_limits.mfa_code_per_address": _l("Wrong second-factor codes per address (0 = off)"),
    "rate_limits.mfa_code_per_account": _l("Wrong second-factor codes per account (0 = off)"),
    "rate_limits.mfa_code_window_seconds": _l("Second-factor code window (seconds)"),
    "rate_limits.userinfo_per_address": _l("Refused userinfo tokens per address (0 = off)"),
    "rate_limits.userinfo_window_seconds": _l("Userinfo token window (seconds)"),
    "rate_limits.client_registration_per_address": _l("Client registrations per address (0 = off)"),
    "rate_limits.client_registration_window_seconds": _l("Client registration window (seconds)"),
    "rate_limits.email_link_per_address": _l("Address confirmation mails per address (0 = off)"),
    "rate_limits.email_link_per_account": _l("Address confirmation mails per account (0 = off)"),
    "rate_limits.email_link_window_seconds": _l("Address confirmation mail window (seconds)"),
}

CHOICES: dict[str, list[tuple[str, Any]]] = {
    "password_policy.mode": [
        ("classic", _l("Classic: length and composition")),
        ("nist", _l("NIST SP 800-63B: length and blocklist only")),
    ],
    "risk.step_up_without_factor": [
        ("deny", _l("Refuse the sign-in")),
        ("allow", _l("Let them in and report it")),
    ],
    "session.limit_action": [
        ("end_oldest", _l("End their oldest session")),
        ("refuse", _l("Refuse the new sign-in")),
    ],
    "gdpr.deletion": [
        ("immediate", _l("At once")),
        ("approval", _l("After an administrator approves")),
        ("off", _l("No: only administrators erase accounts")),
    ],
}

_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{5,19}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _fields(section: str, keys: tuple[str, ...], defaults: dict[str, Any]) -> list[dict]:
    """The form fields of one section: name, label, kind (bool|int|float|list|str|choice|color)."""
    out = []
    for key in keys:
        name = f"{section}.{key}"
        default = defaults[section][key]
        if name in CHOICES:
            kind = "choice"
        elif key.endswith("_color"):
            kind = "color"
        else:
            kind = {bool: "bool", int: "int", float: "float", list: "list"}.get(
                type(default), "str"
            )
        out.append(
            {
                "name": name,
                "id": name.replace(".", "-").replace("_", "-"),
                "key": key,
                "label": LABELS.get(name, name),
                "kind": kind,
                "env": env_name(section, key),
                "choices": CHOICES.get(name, []),
            }
        )
    return out


def _parse(field: dict, form: Any) -> tuple[Any, str | None]:
    """(value, error) of one submitted field."""
    raw = form.get(field["name"], "")
    kind = field["kind"]
    if kind == "bool":
        return field["name"] in form, None
    if kind == "list":
        return [line.strip() for line in raw.splitlines() if line.strip()], None
    if kind == "int":
        try:
            return int(raw.strip()), None
        except ValueError:
            return None, _("Enter a whole number.")
    if kind == "float":
        try:
            return float(raw.strip().replace(",", ".")), None
        except ValueError:
            return None, _("Enter a number.")
    return raw.strip(), None


def _page(
    errors: dict[str, str] | None = None,
    submitted: dict[str, Any] | None = None,
    status: int = 200,
    test_errors: dict[str, str] | None = None,
):
    with console() as ctx:
        try:
            stored = policies.stored(ctx)
        except Forbidden:
            abort(403)
        can_update = ctx.allowed("config:policies:update")
    settings = svc().settings
    defaults = load_defaults()
    locked = live_settings().locked()
    sections = []
    for section, keys in policies.editable().items():
        fields = _fields(section, keys, defaults)
        for f in fields:
            value = settings[section][f["key"]]
            f["value"] = (submitted or {}).get(f["name"], value)
            f["locked"] = f["name"] in locked
            f["stored"] = f["key"] in stored.get(section, {})
            f["error"] = (errors or {}).get(f["name"])
        sections.append({"id": section, "title": SECTIONS[section], "fields": fields})
    delivery = {
        "smtp": redact_url(settings.smtp_url) if settings.smtp_url else "",
        "from_address": settings.mail.from_address,
        "sms": redact_url(settings.sms_url) if settings.sms_url else "",
        "sms_sender": settings.mfa.sms_sender,
    }
    return render_template(
        "admin/settings.html",
        active="admin.settings",
        sections=sections,
        can_update=can_update,
        delivery=delivery,
        errors=errors or {},
        test_errors=test_errors or {},
        test_values=request.form if test_errors else {},
    ), status


@bp.route("/settings")
def settings():
    return _page()


@bp.route("/settings/<section>", methods=["POST"])
def settings_save(section: str):
    keys = policies.editable().get(section)
    if keys is None:
        abort(404)
    locked = live_settings().locked()
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    submitted: dict[str, Any] = {}
    for field in _fields(section, keys, load_defaults()):
        if field["name"] in locked:
            if field["name"] in request.form:
                errors[field["name"]] = _(
                    "Set by the environment variable %(name)s; change it there.",
                    name=field["env"],
                )
            continue
        value, error = _parse(field, request.form)
        submitted[field["name"]] = request.form.get(field["name"], value)
        if error:
            errors[field["name"]] = error
        else:
            changes[field["key"]] = value
    if not errors:
        try:
            with console() as ctx:
                changed = policies.update(ctx, {section: changes}, locked)
        except Forbidden:
            abort(403)
        except policies.SettingError as exc:
            errors[exc.field or f"{section}.?"] = str(exc)
        else:
            if changed:
                live_settings().check(force=True)  # this worker at once; the others poll
                flash(
                    _(
                        "%(section)s saved: it applies from the next page, on every server.",
                        section=SECTIONS[section],
                    ),
                    "success",
                )
            else:
                flash(_("Nothing changed."), "info")
            return redirect(url_for("admin.settings") + f"#{section}")
    return _page(errors, submitted, 400)


@bp.route("/settings/test-mail", methods=["POST"])
def settings_test_mail():
    to = request.form.get("test_email", "").strip()
    if not _EMAIL.fullmatch(to) or len(to) > 254:
        return _page(test_errors={"test_email": _("Enter an e-mail address.")}, status=400)
    try:
        with console() as ctx:
            sent = policies.test_delivery(
                ctx,
                "mail",
                to,
                lambda: send_mail(to, "test_message", _l("Test message"), locale=None),
            )
    except Forbidden:
        abort(403)
    if sent:
        flash(_("A test message was sent to %(to)s.", to=to), "success")
    else:
        flash(_("The test message could not be sent; the server log has the reason."), "error")
    return redirect(url_for("admin.settings") + "#delivery")


@bp.route("/settings/test-sms", methods=["POST"])
def settings_test_sms():
    to = request.form.get("test_phone", "").strip()
    if not _PHONE.fullmatch(to):
        return _page(test_errors={"test_phone": _("Enter a phone number.")}, status=400)
    text = _("Test message from %(name)s.", name=svc().settings.branding.product_name)

    def send() -> bool:
        try:
            svc().sms_sender.send(to, text)
        except Exception:  # any gateway failure is reported on the page, not raised
            log.exception("test SMS not delivered")
            return False
        return True

    try:
        with console() as ctx:
            sent = policies.test_delivery(ctx, "sms", to, send)
    except Forbidden:
        abort(403)
    if sent:
        flash(_("A test SMS was sent to %(to)s.", to=to), "success")
    else:
        flash(_("The test SMS could not be sent; the server log has the reason."), "error")
    return redirect(url_for("admin.settings") + "#delivery")
