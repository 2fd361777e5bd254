"""The mails of the deletion flow (docs/gdpr.md): the person is told when their account was
erased on their request, and when an administrator rejected the request. Shared by the account
page, the console and the REST API."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..manage.gdpr import Decision, Erasure
from .mailing import queue_mail


def tell_erased(erasure: Erasure) -> None:
    """The account is gone: the address was kept in memory only for this mail."""
    queue_mail(
        erasure.email,
        "account_deleted",
        _l("Your account was deleted"),
        locale=erasure.locale,
        person=erasure.username,
    )


def tell_decision(decision: Decision) -> None:
    if decision.approved and decision.erasure is not None:
        tell_erased(decision.erasure)
        return
    queue_mail(
        decision.email,
        "deletion_rejected",
        _l("Your account deletion request was not approved"),
        locale=decision.locale,
        person=decision.username,
        note=decision.request.note,
    )
