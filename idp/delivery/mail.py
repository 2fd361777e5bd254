"""Outgoing mail: ``.eml`` files in ``{instance_dir}/outbox/`` (default) or SMTP (``IDP_SMTP_URL``).

``smtp://user:pass@host:587`` speaks STARTTLS when the server offers it (and refuses to send the
password in the clear when it does not); ``smtps://host:465`` is TLS from the first byte. Mails are
multipart/alternative (text + HTML) rendered from ``templates/mail/<name>.txt|.html`` (overridable
from ``{instance_dir}/templates/mail/``). Links in mails are built from the configured issuer by the
caller, never from the request's Host header.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

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

    def send_template(
        self, render: Renderer, to: str, name: str, subject: str, **context: Any
    ) -> bool:
        """Render ``mail/<name>.txt`` and ``.html`` and send. Returns False (and logs) when the
        transport fails: a mail that cannot go out must not turn a page into an error, and the
        pages never tell whether a mail was sent to an address anyway."""
        context.setdefault("product_name", self.product_name)
        text = render(f"mail/{name}.txt", subject=subject, **context)
        html = render(f"mail/{name}.html", subject=subject, **context)
        msg = self.compose(to, subject, text, html)
        try:
            self.transport.send(msg)
        except (MailError, OSError) as exc:
            log.error("mail %s not delivered: %s", name, exc)
            return False
        log.info("mail %s sent", name, extra={"mail": name})
        return True


def make_mailer(settings: Any) -> Mailer:
    if settings.smtp_url:
        transport: Transport = SmtpTransport(
            settings.smtp_url, settings.mail.timeout, settings.mail.verify_tls
        )
    else:
        transport = OutboxTransport(Path(settings.instance_dir) / "outbox")
    return Mailer(transport, settings.mail.from_address, settings.branding.product_name)
