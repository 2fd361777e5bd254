"""Outgoing mail: ``.eml`` files in ``{instance_dir}/outbox/`` (default) or SMTP (``IDP_SMTP_URL``).

``smtp://user:pass@host:587`` speaks STARTTLS when the server offers it (and refuses to send the
password in the clear when it does not); ``smtps://host:465`` is TLS from the first byte. Mails are
multipart/alternative (text + HTML) rendered from ``templates/mail/<name>.txt|.html`` (overridable
from ``{instance_dir}/templates/mail/``). Links in mails are built from the configured issuer by the
caller, never from the request's Host header.

Pages do not send: they put a job on the process's :class:`MailQueue`, whose background thread
renders and sends it after the response (a slow or unreachable SMTP server never shows in a
page's answer time, so it cannot tell whether an address has an account), retrying a failed
delivery with doubling waits before it gives up with an error line in the log.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import os
import queue
import secrets
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .. import metrics

log = logging.getLogger("idp.mail")

# (template name, context) -> rendered text; the web layer passes Flask's render_template.
Renderer = Callable[..., str]


class MailError(Exception):
    """Delivery failed; the message is safe to log (no credentials)."""


class Transport(Protocol):
    def send(self, msg: EmailMessage) -> None: ...


class OutboxTransport:
    """Writes each mail as ``<timestamp>-<random>.eml``; written to a temporary name first and
    renamed, so a reader never sees half a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, msg: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time():.6f}-{secrets.token_hex(4)}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(bytes(msg))
        os.replace(tmp, self.directory / name)


class SmtpTransport:
    def __init__(self, url: str, timeout: float = 10, verify_tls: bool = True) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.context = ssl.create_default_context()
        if not verify_tls:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def send(self, msg: EmailMessage) -> None:
        try:
            if self.tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with conn:
                conn.ehlo()
                if not self.tls and conn.has_extn("starttls"):
                    conn.starttls(context=self.context)
                    conn.ehlo()
                elif not self.tls and self.user:
                    raise MailError(
                        f"SMTP server {self.host}:{self.port} does not offer STARTTLS; "
                        "refusing to send the password in the clear"
                    )
                if self.user:
                    conn.login(self.user, self.password or "")
                conn.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"SMTP delivery to {self.host}:{self.port} failed: {exc}") from None


class Mailer:
    def __init__(self, transport: Transport, sender: str, product_name: str) -> None:
        self.transport = transport
        self.sender = sender
        self.product_name = product_name

    def compose(self, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    def render(
        self, render: Renderer, to: str, name: str, subject: str, **context: Any
    ) -> EmailMessage:
        """The message from ``mail/<name>.txt`` and ``.html``."""
        context.setdefault("product_name", self.product_name)
        text = render(f"mail/{name}.txt", subject=subject, **context)
        html = render(f"mail/{name}.html", subject=subject, **context)
        return self.compose(to, subject, text, html)

    def send_template(
        self, render: Renderer, to: str, name: str, subject: str, **context: Any
    ) -> bool:
        """Render ``mail/<name>.txt`` and ``.html`` and send at once (the CLI, which has no
        background thread to wait for). Returns False (and logs) when the transport fails."""
        msg = self.render(render, to, name, subject, **context)
        try:
            self.transport.send(msg)
        except (MailError, OSError) as exc:
            metrics.backend_error("smtp")
            log.error("mail %s not delivered: %s", name, exc)
            return False
        log.info("mail %s sent", name, extra={"mail": name})
        return True


# A job renders its message when the worker runs it; None = nothing to send (the job a request
# for an unknown address puts on the queue, so both cases do the same work in the request).
Job = Callable[[], EmailMessage | None]


class MailQueue:
    """Mail sent by one background thread per process, after the response.

    A job that fails (``MailError``/``OSError`` from the transport) is tried again after
    ``retry_seconds``, then twice that, ... up to ``attempts`` tries; then it is given up with an
    error line. Jobs live in this process's memory: a process killed before its queue is empty
    loses them (a normal exit waits up to ``timeout`` seconds for the queue). The thread starts
    on the first job, again in a forked child, and ends after a minute without work."""

    IDLE_SECONDS = 60.0

    def __init__(self, transport: Transport, attempts: int, retry_seconds: float, timeout: float):
        self.transport = transport
        self.attempts = max(1, attempts)
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self._pid = -1
        self._order = itertools.count()
        self._exit_hook = False

    def _reset(self) -> None:
        # Fresh locks and queue per process: a fork copies them in whatever state they were.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: queue.SimpleQueue[tuple[str, Job]] = queue.SimpleQueue()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def put(self, name: str, job: Job) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            self._pending += 1
            metrics.mail_queued(1)
            self._jobs.put((name, job))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="idp-mail", daemon=True)
                self._thread.start()
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(self.wait_idle, self.timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every job was sent or given up; False when ``timeout`` passed first."""
        if self._pid != os.getpid():
            return True
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            metrics.mail_queued(-1)
            self._idle.notify_all()

    def _run(self) -> None:
        retries: list[tuple[float, int, str, EmailMessage, int]] = []
        while True:
            wait = self.IDLE_SECONDS
            if retries:
                wait = max(0.0, retries[0][0] - time.monotonic())
            try:
                name, job = self._jobs.get(timeout=wait)
            except queue.Empty:
                name = ""
            if name:
                self._first_attempt(name, job, retries)
            while retries and retries[0][0] <= time.monotonic():
                _, _, rname, msg, attempt = heapq.heappop(retries)
                self._attempt(rname, msg, attempt, retries)
            if not name and not retries:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return

    def _first_attempt(self, name: str, job: Job, retries: list) -> None:
        try:
            msg = job()
        except Exception:  # a broken template must not stop the thread for other mails
            log.exception("mail %s could not be rendered", name, extra={"mail": name})
            msg = None
        if msg is None:
            self._done()
            return
        self._attempt(name, msg, 1, retries)

    def _attempt(self, name: str, msg: EmailMessage, attempt: int, retries: list) -> None:
        try:
            self.transport.send(msg)
        except (MailError, OSError) as exc:
            metrics.backend_error("smtp")
            if attempt >= self.attempts:
                log.error(
                    "mail %s not delivered after %d attempts, given up: %s",
                    name,
                    attempt,
                    exc,
                    extra={"mail": name},
                )
                self._done()
                return
            delay = self.retry_seconds * 2 ** (attempt - 1)
            log.warning(
                "mail %s attempt %d failed, next in %.0fs: %s",
                name,
                attempt,
                delay,
                exc,
                extra={"mail": name},
            )
            entry = (time.monotonic() + delay, next(self._order), name, msg, attempt + 1)
            heapq.heappush(retries, entry)
            return
        log.info("mail %s sent", name, extra={"mail": name})
        self._done()


def make_transport(settings: Any) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, settings.mail.timeout, settings.mail.verify_tls)
    return OutboxTransport(Path(settings.instance_dir) / "outbox")


def make_queue(settings: Any, transport: Transport) -> MailQueue:
    m = settings.mail
    return MailQueue(transport, m.attempts, m.retry_seconds, m.timeout)


def make_mailer(settings: Any) -> Mailer:
    return Mailer(
        make_transport(settings), settings.mail.from_address, settings.branding.product_name
    )
