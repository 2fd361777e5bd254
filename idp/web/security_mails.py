"""Whether a security mail goes out to a user: their choice on /account/notifications where
the policy allows one (idp.sso.notifications)."""

from __future__ import annotations

from ..sso import notifications
from .current import svc


def wants_mail(user_id: int, kind: str) -> bool:
    """Does the user get security mails of ``kind``? (Policy-forced kinds: always.)"""
    with svc().sessions() as db:
        return notifications.wants(db, svc().settings, user_id, kind)
