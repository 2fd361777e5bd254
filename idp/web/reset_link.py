"""An administrator sends a user a password-reset link (the console's and the API's batch
action "send password-reset mails"): the same single-use token and mail as the user's own
"Forgot password?" request (``idp.web.password``), so the link opens the same reset page."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..storage.models import User
from .current import svc
from .mailing import mail_locale, queue_mail
from .password import _password_version, _tokens
from .requestinfo import absolute


def send_reset(user: User) -> None:
    """Issue the reset token (a store write) and queue the mail to the user's address."""
    token = _tokens().issue("reset", {"uid": user.id, "pv": _password_version(user)})
    queue_mail(
        user.email,
        "reset",
        _l("Reset your password"),
        # The user's language, not the administrator's page language.
        locale=mail_locale(user.email),
        user=user,
        link=absolute("password.reset_confirm", token=token),
        minutes=svc().settings.recovery.token_minutes,
    )
