"""Outgoing SMS, through a sender picked by id (design idea 9).

* ``sms_url`` unset: each message is written as ``{instance_dir}/outbox/<timestamp>.sms.json``
  holding ``{"to", "text"}`` (written under a temporary name, then renamed).
* ``[mfa] sms_sender = "webhook"`` (default): ``POST sms_url`` with the JSON ``{"to", "text"}``.
* ``[mfa] sms_sender = "twilio"``: the shape of Twilio's Messages API, a form post of ``To``,
  ``From`` and ``Body`` to ``sms_url`` with HTTP Basic auth (``sms_username``/``sms_password``).

Other gateways plug in with :func:`register_sms_sender` (a factory from settings to a sender).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("idp.sms")


class SmsError(Exception):
    """Delivery failed; the message is safe to log (no credentials, no code)."""


class SmsSender(Protocol):
    def send(self, to: str, text: str) -> None: ...


class OutboxSms:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, to: str, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"to": to, "text": text}, ensure_ascii=False).encode()
        stamp = time.time()
        while True:
            name = f"{stamp:.6f}.sms.json"
            tmp = self.directory / f".{name}.{os.getpid()}.tmp"
            tmp.write_bytes(body)
            try:
                # link() refuses an existing name: two messages in one microsecond both survive.
                os.link(tmp, self.directory / name)
                return
            except FileExistsError:
                stamp += 0.000001
            finally:
                tmp.unlink()


class WebhookSms:
    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    def send(self, to: str, text: str) -> None:
        import requests  # with the first SMS, not at every worker's start

        try:
            resp = requests.post(self.url, json={"to": to, "text": text}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmsError(f"SMS webhook unreachable: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise SmsError(f"SMS webhook answered HTTP {resp.status_code}")


class TwilioSms:
    """Twilio's ``/2010-04-01/Accounts/{sid}/Messages.json`` shape (also spoken by several
    other gateways): form fields To/From/Body, Basic auth with the account id and token."""

    def __init__(self, url: str, username: str, password: str, sender: str, timeout: float) -> None:
        self.url, self.auth, self.sender, self.timeout = url, (username, password), sender, timeout

    def send(self, to: str, text: str) -> None:
        import requests

        try:
            resp = requests.post(
                self.url,
                data={"To": to, "From": self.sender, "Body": text},
                auth=self.auth,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise SmsError(f"SMS gateway unreachable: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise SmsError(f"SMS gateway answered HTTP {resp.status_code}")


SenderFactory = Callable[[Any], SmsSender]
# Sender id -> factory (from settings): the built-ins every app starts with.
BUILT_IN_SENDERS: dict[str, SenderFactory] = {
    "webhook": lambda s: WebhookSms(s.sms_url, s.mfa.sms_timeout),
    "twilio": lambda s: TwilioSms(
        s.sms_url, s.mfa.sms_username, s.mfa.sms_password, s.mfa.sms_from, s.mfa.sms_timeout
    ),
}


def register_sms_sender(svc: Any, sender_id: str, factory: SenderFactory) -> None:
    """Make a gateway available to this app as ``[mfa] sms_sender = "<sender_id>"`` (while the
    app is built: the sender is made on first use)."""
    svc.sms_senders[sender_id] = factory


def make_sms_sender(
    settings: Any, senders: Mapping[str, SenderFactory] = BUILT_IN_SENDERS
) -> SmsSender:
    if not settings.sms_url:
        return OutboxSms(Path(settings.instance_dir) / "outbox")
    factory = senders.get(settings.mfa.sms_sender)
    if factory is None:
        raise SmsError(f"unknown SMS sender {settings.mfa.sms_sender!r}")
    return factory(settings)
