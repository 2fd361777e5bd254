"""SMTP down, through a real `idp serve --workers 2` and a real aiosmtpd server.

The promise (docs/security.md, "Faults"): a page that mails answers at once whatever the SMTP
server does; the mail is a row of the outbox table before the page answers, retried with
doubling waits, and delivered when the server is back — also after the IdP was restarted in
between. Nothing is lost, nothing is sent twice (a row is leased to one worker at a time and
deleted once the SMTP server took the mail).
"""

from __future__ import annotations

import email
import email.policy
import re
import time

import pytest
import requests
from fault_kit import Served
from sqlalchemy import create_engine, text
from test_serve import free_port

pytestmark = pytest.mark.slow


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


class Smtp:
    """An aiosmtpd server on a fixed port, started and stopped by the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def recipients(self) -> list[str]:
        return sorted(str(m["To"]) for m in self.inbox.messages)


@pytest.fixture(scope="module")
def smtp():
    server = Smtp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory, smtp):
    served = Served(
        tmp_path_factory.mktemp("smtp"),
        IDP_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
        IDP_MAIL_ATTEMPTS="20",
        IDP_MAIL_RETRY_SECONDS="0.2",
        IDP_MAIL_POLL_SECONDS="0.5",
        IDP_MAIL_TIMEOUT="2",
    )
    served.idp("init")
    for n in range(4):
        served.idp("users", "create", "--username", f"mailme{n}", "--email",
                   f"mailme{n}@example.org", "--password", "Tr0ub4dor-Horse-Battery")
    served.start()
    yield served
    served.stop()


def _outbox_rows(served: Served) -> list[tuple[str, str]]:
    engine = create_engine(f"sqlite:///{served.workdir / 'instance' / 'idp.db'}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT name, state FROM mail_outbox"))]
    finally:
        engine.dispose()


def _ask_reset(served: Served, address: str) -> None:
    browser = requests.Session()
    page = browser.get(f"{served.base}/password/reset", timeout=5).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    began = time.monotonic()
    resp = browser.post(f"{served.base}/password/reset",
                        data={"csrf_token": token, "email": address}, timeout=10)
    assert resp.status_code == 200 and "Check your e-mail" in resp.text
    assert time.monotonic() - began < 1.5  # the dead SMTP server never shows in the answer


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_mail_queued_while_smtp_is_down_goes_out_when_it_is_back(served, smtp):
    _ask_reset(served, "mailme0@example.org")
    assert _wait(lambda: "mail reset attempt 2 failed" in served.log(), 20), served.log()
    assert _outbox_rows(served) == [("reset", "queued")]
    smtp.start()
    assert _wait(lambda: smtp.recipients() == ["mailme0@example.org"], 20), served.log()
    assert _wait(lambda: _outbox_rows(served) == [], 5)
    time.sleep(2)  # several polls of both workers later: still sent once
    assert smtp.recipients() == ["mailme0@example.org"]
    smtp.stop()


def test_mail_queued_before_a_restart_goes_out_after_it(served, smtp):
    smtp.inbox.messages.clear()
    for n in (1, 2, 3):
        _ask_reset(served, f"mailme{n}@example.org")
    assert _wait(lambda: served.log().count("attempt 1 failed") >= 4, 20), served.log()
    served.stop()  # the IdP goes down with three mails undelivered
    assert sorted(_outbox_rows(served)) == [("reset", "queued")] * 3
    smtp.start()
    served.start()  # nobody asks for anything: the workers' mail threads look by themselves
    expected = [f"mailme{n}@example.org" for n in (1, 2, 3)]
    assert _wait(lambda: smtp.recipients() == expected, 30), served.log()
    assert _wait(lambda: _outbox_rows(served) == [], 5)
    time.sleep(2)
    assert smtp.recipients() == expected  # each once
    links = {re.search(r"/password/reset/([A-Za-z0-9_-]{40,})",
                       m.get_body(preferencelist=("plain",)).get_content()).group(1)
             for m in smtp.inbox.messages}
    assert len(links) == 3
    assert "given up" not in served.log() and "Traceback" not in served.log()
