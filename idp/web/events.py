"""Human, translated names of audit event codes (``login.failure`` -> "Sign-in failed"), shown
by the account area's activity page and the admin console's audit log. A code without a name
here is shown as it is.

``SIGN_IN_EVENTS`` and ``SECURITY_EVENTS`` are the account activity page's two filters ("sign-ins",
"security changes"): plain lists of codes, so the page filters in SQL."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

EVENT_LABELS = {
    # Signing in and out
    "login.success": _l("Signed in"),
    "login.failure": _l("Sign-in failed"),
    "login.denied": _l("Sign-in refused"),
    "login.locked": _l("Sign-in refused: account temporarily locked"),
    "login.lockout": _l("Account temporarily locked after failed sign-ins"),
    "login.magic_link_sent": _l("Sign-in link sent"),
    "login.magic_link_used": _l("Signed in with a link"),
    "login.step_failed.password": _l("Wrong password"),
    "login.step_failed.mfa": _l("Wrong second-factor code"),
    "login.step_failed.mfa_enroll": _l("Second-factor setup failed during sign-in"),
    "login.step_failed.set_password": _l("New password refused during sign-in"),
    "logout": _l("Signed out"),
    "session.revoked": _l("Session ended"),
    "mfa.backup_code_used": _l("Signed in with a backup code"),
    "mfa.device_remembered": _l("Device remembered for the second factor"),
    "webauthn.counter_regression": _l("Security key reported a suspicious counter"),
    # Password
    "password.change": _l("Password changed"),
    "password.changed": _l("Password changed"),
    "password.change_failed": _l("Password change failed: wrong current password"),
    "password.reset_requested": _l("Password reset requested"),
    "password.reset_answer_failed": _l("Wrong answer to a security question"),
    "user.password_set": _l("Password set by an administrator"),
    "user.password_change_forced": _l("Password change required by an administrator"),
    # Second factors
    "mfa.totp_enrolled": _l("Authenticator app set up"),
    "mfa.totp_removed": _l("Authenticator app removed"),
    "mfa.email_enrolled": _l("E-mail codes set up"),
    "mfa.email_removed": _l("E-mail codes removed"),
    "mfa.sms_enrolled": _l("Text message codes set up"),
    "mfa.sms_removed": _l("Text message codes removed"),
    "mfa.backup_codes_regenerated": _l("New backup codes made"),
    "mfa.devices_forgotten": _l("Remembered devices forgotten"),
    "mfa.reauth": _l("Password confirmed to change sign-in methods"),
    "mfa.reauth_failed": _l("Wrong password when changing sign-in methods"),
    "mfa.reset": _l("Second factors reset"),
    "webauthn.registered": _l("Passkey or security key added"),
    "webauthn.removed": _l("Passkey or security key removed"),
    "webauthn.renamed": _l("Passkey or security key renamed"),
    # Account and profile
    "account.profile_updated": _l("Profile updated"),
    "account.avatar_updated": _l("Picture changed"),
    "account.exported": _l("Account data downloaded"),
    "account.security_questions_set": _l("Security questions set"),
    "email.verified": _l("E-mail address confirmed"),
    "email.change_requested": _l("E-mail address change requested"),
    "email.changed": _l("E-mail address changed"),
    "consent.granted": _l("Application access granted"),
    "consent.revoked": _l("Application access revoked"),
    "device.approved": _l("Device connected with a code"),
    "device.denied": _l("Device sign-in with a code denied"),
    "token.issued": _l("Token issued to an application"),
    "token.revoked": _l("Token revoked"),
    "registration.created": _l("Account registered"),
    "registration.approved": _l("Registration approved"),
    "registration.rejected": _l("Registration rejected"),
    # Done by an administrator
    "user.created": _l("Account created"),
    "user.updated": _l("Account changed by an administrator"),
    "user.locked": _l("Account locked"),
    "user.unlocked": _l("Account unlocked"),
    "user.deleted": _l("Account deleted"),
    "user.placed": _l("Company, department or position changed"),
    "user.role_assigned": _l("Role given"),
    "user.role_removed": _l("Role taken away"),
    "group.member_added": _l("Added to a group"),
    "group.member_removed": _l("Removed from a group"),
    # Suspicious activity and adaptive authentication (docs/risk.md)
    "login.risk_denied": _l("Sign-in refused: unusual for the account"),
    "security.credential_stuffing": _l("Many accounts failed from one address"),
    "security.impossible_travel": _l("Impossible travel between two sign-ins"),
    "security.new_country": _l("First sign-in from a new country"),
    "security.refresh_token_replay": _l("Used or revoked refresh token presented again"),
    "security.mfa_failure_burst": _l("Many wrong second-factor codes"),
    "security.risky_sign_in": _l("Risky sign-in"),
}

SIGN_IN_EVENTS = (
    "login.success",
    "login.failure",
    "login.denied",
    "login.risk_denied",
    "login.locked",
    "login.lockout",
    "login.magic_link_sent",
    "login.magic_link_used",
    "login.step_failed.password",
    "login.step_failed.mfa",
    "login.step_failed.mfa_enroll",
    "login.step_failed.set_password",
    "logout",
    "session.revoked",
    "mfa.backup_code_used",
    "mfa.device_remembered",
)

SECURITY_EVENTS = (
    "password.change",
    "password.changed",
    "password.change_failed",
    "password.reset_requested",
    "password.reset_answer_failed",
    "user.password_set",
    "user.password_change_forced",
    "mfa.totp_enrolled",
    "mfa.totp_removed",
    "mfa.email_enrolled",
    "mfa.email_removed",
    "mfa.sms_enrolled",
    "mfa.sms_removed",
    "mfa.backup_codes_regenerated",
    "mfa.devices_forgotten",
    "mfa.reauth",
    "mfa.reauth_failed",
    "mfa.reset",
    "webauthn.registered",
    "webauthn.removed",
    "webauthn.renamed",
    "webauthn.counter_regression",
    "account.security_questions_set",
    "email.verified",
    "email.change_requested",
    "email.changed",
    "consent.granted",
    "consent.revoked",
    "device.approved",
    "device.denied",
    "user.locked",
    "user.unlocked",
)


def event_label(action: str) -> str:
    label = EVENT_LABELS.get(action)
    return str(label) if label is not None else action
