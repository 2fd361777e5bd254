"""Human, translated names of audit event codes (``login.failure`` -> "Sign-in failed"), shown
by the account area's activity page and the admin console's audit log. A code without a name
here is shown as it is."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

EVENT_LABELS = {
    "login.success": _l("Signed in"),
    "login.failure": _l("Sign-in failed"),
    "logout": _l("Signed out"),
    "password.changed": _l("Password changed"),
    "mfa.reset": _l("Second factors reset"),
    "session.revoked": _l("Session ended"),
    "user.locked": _l("Account locked"),
    "user.unlocked": _l("Account unlocked"),
}


def event_label(action: str) -> str:
    label = EVENT_LABELS.get(action)
    return str(label) if label is not None else action
