"""Outgoing mail: ``.eml`` files in ``{instance_dir}/outbox/`` (default) or SMTP (``IDP_SMTP_URL``).

``smtp://user:pass@host:587`` speaks STARTTLS when the server offers it (and refuses to send the
password in the clear when it does not); ``smtps://host:465`` is TLS from the first byte. Mails are
multipart/alternative (text + HTML) rendered from ``templates/mail/<name>.txt|.html`` (overridable
from ``{instance_dir}/templates/mail/``). Links in mails are built from the configured issuer by the
caller, never from the request's Host header.

Pages do not send: they put a job on the :class:`MailQueue`, which writes a row to the durable
outbox table before the page answers and renders and sends the mail from a background thread
after the response (a slow or unreachable SMTP server never shows in a page's answer time, so
it cannot tell whether an address has an account), retrying a failed delivery with doubling
waits before it gives up with an error line in the log. Queued mail survives an SMTP outage and
a restart of the server (docs/deployment.md, "When a dependency fails").
"""

from __future__ import annotations

import atexit
import collections
import email
import email.policy
import logging
import math
import os
import secrets
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
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


# A job renders its message when the mail thread runs it; None = nothing to send (the job a
# request for an unknown address puts on the queue, so both cases do the same work in the request).
Job = Callable[[], EmailMessage | None]


class Outbox(Protocol):
    """Where queued mail waits durably (``idp.storage.mail_outbox.SqlOutbox``)."""

    lease: timedelta  # how long a row stays with the worker that leased it

    def add(self, name: str, owner: str) -> int: ...
    def rendered(self, row_id: int, message: bytes | None, owner: str | None = None) -> None: ...
    def release(self, row_id: int, owner: str) -> None: ...
    def claim(self, owner: str) -> tuple[int, str, bytes, int] | None: ...
    def sent(self, row_id: int, owner: str) -> None: ...
    def retry(self, row_id: int, owner: str, attempts: int, delay: float, error: str) -> None: ...
    def failed(self, row_id: int, owner: str, attempts: int, error: str) -> None: ...
    def abandoned(self) -> list[str]: ...
    def pending(self) -> tuple[int, float | None]: ...


class MailQueue:
    """Mail queued durably in the outbox table and sent by one thread per process.

    :meth:`put` writes the row (committed before the page answers, the same statement whatever
    the job will make) and hands the job to this process's mail thread, which renders it into
    the row and sends it. Any process's thread sends any due row: it takes a lease on the row
    first (``Outbox.claim``), so no two send one mail. A delivery that fails (``MailError`` /
    ``OSError`` from the transport) is tried again after ``retry_seconds``, then twice that, ...
    up to ``attempts`` tries; then the row is marked failed with an error line in the log. Mail
    queued while the SMTP server is down, or before a restart, goes out when a thread next
    looks (every ``poll_seconds``). A process killed between the row and its rendering (a few
    milliseconds) leaves a row that is marked failed with an error line once its lease ends.

    The thread starts on the first job (again in a forked child) and, unless :meth:`start` made
    it persistent (each ``idp serve`` worker), ends once the outbox has nothing left to send."""

    BATCH = 20

    def __init__(
        self,
        transport: Transport,
        outbox: Outbox,
        attempts: int,
        retry_seconds: float,
        timeout: float,
        poll_seconds: float = 5.0,
    ):
        self.transport = transport
        self.outbox = outbox
        self.attempts = max(1, attempts)
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self._send_within = outbox.lease.total_seconds() / 2
        self._pid = -1
        self._persistent = False
        self._stopped = False
        self._exit_hook = False

    def _reset(self) -> None:
        # Fresh locks and lists per process: a fork copies them in whatever state they were.
        self._pid = os.getpid()
        self._owner = f"{socket.gethostname()[:40]}:{self._pid}:{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._jobs: collections.deque[tuple[int, str, Job]] = collections.deque()
        self._rendering = 0
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="idp-mail", daemon=True)
                self._thread.start()
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(self._wait_rendered, self.timeout)

    def start(self) -> None:
        """Keep this process's mail thread running for good (a server worker): it sends what
        other workers, or this server before a restart, queued."""
        self._persistent = True
        self._ensure_thread()

    def stop(self) -> None:
        """End this process's mail thread after its current step (the app is going away);
        what is still queued stays in the outbox for the next process that looks."""
        self._stopped = True
        if self._pid == os.getpid():
            self._wake.set()

    def put(self, name: str, job: Job) -> None:
        if self._pid != os.getpid():
            self._reset()
        row_id = self.outbox.add(name, self._owner)
        with self._lock:
            self._jobs.append((row_id, name, job))
        self._ensure_thread()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the outbox holds nothing left to send (every mail sent or given up) and a
        thread that is not persistent has ended; False when ``timeout`` passed first."""
        end = time.monotonic() + timeout
        while True:
            try:
                waiting = self.outbox.pending()[0]
            except Exception:  # noqa: BLE001 - an unreachable database: not idle, look again
                waiting = 1
            if waiting == 0 and self._thread_done():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def _thread_done(self) -> bool:
        if self._pid != os.getpid() or self._stopped:
            return True
        with self._lock:
            if self._jobs or self._rendering:
                return False
            return self._persistent or self._thread is None or not self._thread.is_alive()

    def _wait_rendered(self, timeout: float) -> None:
        # At exit only what is in memory matters: the rows themselves outlive the process.
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._jobs and not self._rendering:
                    return
            time.sleep(0.05)

    def _run(self) -> None:
        swept = -math.inf
        while not self._stopped:
            self._wake.clear()
            try:
                self._send_rendered(self._render_waiting())
                if time.monotonic() - swept >= self.poll_seconds:
                    # Leases run for minutes: once a poll window is often enough to look.
                    swept = time.monotonic()
                    for name in self.outbox.abandoned():
                        log.error("mail %s lost: its worker ended before rendering it", name,
                                  extra={"mail": name})
                waiting, due = self.outbox.pending()
                more = 0
                if due == 0:
                    # Rows due that no thread holds (queued elsewhere, or a retry's time came).
                    more = self._send_due()
                    due = due if more else None  # others took them all: wait a poll
            except Exception as exc:  # noqa: BLE001 - the database is away: look again later
                metrics.backend_error("database")
                log.warning("mail outbox not reachable, next look in %.0fs: %s",
                            self.poll_seconds, exc)
                waiting, due, more = 1, self.poll_seconds, 0
            metrics.mail_waiting(waiting)
            if more:
                continue
            with self._lock:
                if waiting == 0 and not self._jobs and not self._persistent:
                    self._thread = None
                    return
            self._wake.wait(self.poll_seconds if due is None else min(due, self.poll_seconds))

    def _render_waiting(self) -> list[tuple[int, str, EmailMessage, float]]:
        """Render every job waiting in memory into its row (durable from then on), each row
        still leased to this thread: (row id, name, message, send-by time) to send from memory."""
        ready: list[tuple[int, str, EmailMessage, float]] = []
        while True:
            with self._lock:
                if not self._jobs:
                    return ready
                row_id, name, job = self._jobs.popleft()
                self._rendering += 1
            try:
                try:
                    msg = job()
                except Exception:  # a broken template must not stop the thread for other mails
                    log.exception("mail %s could not be rendered", name, extra={"mail": name})
                    msg = None
                try:
                    self.outbox.rendered(
                        row_id, None if msg is None else bytes(msg), owner=self._owner
                    )
                except Exception:
                    with self._lock:  # kept in memory until the database answers again
                        self._jobs.appendleft((row_id, name, lambda m=msg: m))
                    for done in ready:  # rendered and leased: another worker takes them
                        self._release_quietly(done[0])
                    raise
                if msg is not None:
                    # Half the lease: past it the row goes back to the outbox, so a run of slow
                    # deliveries never lets a lease end while its mail still waits here.
                    ready.append((row_id, name, msg, time.monotonic() + self._send_within))
            finally:
                with self._lock:
                    self._rendering -= 1

    def _send_rendered(self, ready: list[tuple[int, str, EmailMessage, float]]) -> int:
        """Send what this thread just rendered, without claiming the rows back."""
        sent = 0
        for row_id, name, msg, send_by in ready:
            if self._stopped or time.monotonic() > send_by:
                self._release_quietly(row_id)
                continue
            self._attempt(row_id, name, msg, 1)
            sent += 1
        return sent

    def _release_quietly(self, row_id: int) -> None:
        try:
            self.outbox.release(row_id, self._owner)
        except Exception:  # noqa: BLE001 - the lease runs out by itself; then it is claimable
            log.warning("mail row %d not released; claimable when its lease ends", row_id)

    def _send_due(self) -> int:
        """Send what is due, one leased row at a time, rendering new jobs in between (their
        rows are leased too, and must not wait behind a long run of slow deliveries)."""
        sent = 0
        while sent < self.BATCH:
            row = self.outbox.claim(self._owner)
            if row is None:
                break
            row_id, name, raw, tries = row
            msg = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
            self._attempt(row_id, name, msg, tries + 1)
            sent += 1
            sent += self._send_rendered(self._render_waiting())
        return sent

    def _attempt(self, row_id: int, name: str, msg: EmailMessage, attempt: int) -> None:
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
                self.outbox.failed(row_id, self._owner, attempt, str(exc))
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
            self.outbox.retry(row_id, self._owner, attempt, delay, str(exc))
            return
        self.outbox.sent(row_id, self._owner)
        log.info("mail %s sent", name, extra={"mail": name})


def make_transport(settings: Any) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, settings.mail.timeout, settings.mail.verify_tls)
    return OutboxTransport(Path(settings.instance_dir) / "outbox")


def make_queue(settings: Any, transport: Transport, outbox: Outbox) -> MailQueue:
    m = settings.mail
    return MailQueue(transport, outbox, m.attempts, m.retry_seconds, m.timeout, m.poll_seconds)


def make_mailer(settings: Any) -> Mailer:
    return Mailer(
        make_transport(settings), settings.mail.from_address, settings.branding.product_name
    )
