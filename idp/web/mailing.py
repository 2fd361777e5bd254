"""Mail from the web pages: templates rendered in the recipient's language, sent at once
(:func:`send_mail`) or after the response from the durable queue (:func:`queue_mail`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask import Flask, current_app, g, render_template
from flask_babel import force_locale, get_locale
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from ..delivery.mail import Mailer, MailQueue
from ..storage.models import User
from .current import svc
from .i18n import offered_language, offered_languages


def mailer() -> Mailer:
    return svc().mailer


def mail_queue() -> MailQueue:
    """This app's background mail queue (idp.delivery.mail.MailQueue), built with the app."""
    return svc().mail_queue


def mail_locale(to: str, recipient: User | None = None) -> str:
    """The language a mail to ``to`` is written in: the recipient's profile language; for a
    recipient without one, the page's language when they are the person at the browser (the
    ``recipient`` passed in, e.g. someone registering), else the default language (an
    administrator notified about someone else's request)."""
    offered = offered_languages()
    if recipient is None or (recipient.email or "").lower() != to.lower():
        with svc().sessions() as db:
            known = db.scalar(select(User.locale).where(User.email == to.lower()))
        return offered_language(known, offered) or offered[0]
    return offered_language(recipient.locale, offered) or str(get_locale() or offered[0])


def send_mail(
    to: str | None, name: str, subject: str, *, locale: str | None = None, **context: Any
) -> bool:
    """Render ``templates/mail/<name>.txt|.html`` and send them, in the recipient's language
    (``locale``, else :func:`mail_locale` for ``to`` and the ``user`` in ``context``). Pass the
    subject as a lazy string (``lazy_gettext``) so it is translated in that language too."""
    if not to:
        return False
    with force_locale(locale or mail_locale(to, context.get("user"))):
        return mailer().send_template(render_template, to, name, str(subject), **context)


def queue_mail(
    to: str | None, name: str, subject: str, *, locale: str | None = None, **context: Any
) -> None:
    """:func:`send_mail` after the response, from the background queue: the request only puts a
    job there, whatever the recipient. ``to=None`` puts a job that sends nothing, for a request
    that must look the same as one that mails (an unknown address): same work, same time.
    In a request the job is handed over when the view has finished (its transaction is over:
    SQLite has one writer) and before the response leaves, so the outbox row is committed
    before the page answers. The language is chosen now (it may be the page's); rendering and
    sending happen in the queue's thread, under an app context of their own."""
    app = current_app._get_current_object()
    job_context = {k: _detached(v) for k, v in context.items()}
    chosen = (locale or mail_locale(to, context.get("user"))) if to else None

    def job():
        if not to:
            return None
        with app.app_context(), force_locale(chosen):
            return mailer().render(render_template, to, name, str(subject), **job_context)

    waiting = g.get("mail_handover")
    if waiting is None:
        mail_queue().put(name, job)
    else:
        waiting.append((name, job))


def install(app: Flask) -> None:
    """Mail queued by a view is handed to the queue after the view (:func:`queue_mail`)."""

    @app.before_request
    def _collect() -> None:
        g.mail_handover = []

    @app.after_request
    def _hand_over(response):
        for name, job in g.pop("mail_handover", None) or ():
            mail_queue().put(name, job)
        return response


_USER_COLUMNS = sa_inspect(User).column_attrs


def _detached(value: Any) -> Any:
    """A user row as plain values (the columns already loaded): the queue's thread must not
    touch a database session of the request."""
    if isinstance(value, User):
        loaded = value.__dict__
        return SimpleNamespace(**{a.key: loaded.get(a.key) for a in _USER_COLUMNS})
    return value
