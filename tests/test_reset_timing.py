"""Password reset and first-login links cannot tell, by time or by page, whether an address has
an account (OWASP Authentication / Forgot Password cheat sheets: "return a consistent message for
both existent and non-existent accounts" and "ensure that responses return in a consistent
amount of time"; RFC 9700 has no word on it, OWASP ASVS 2.5 does).

The mail is rendered and sent by the process's background queue after the response, and the
request itself does the same work either way: the same SQL statements (among them the outbox
row, written for both), the same store writes and one queued job (for an unknown address a job
that sends nothing). Shown with an SMTP server
that takes 1.5 s per mail, with recorded statements, store calls and queue jobs, and with a
server that refuses (retried, then given up with an error line).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time

import pytest
from login_kit import company_with_control_word, make_user, post_form
from sqlalchemy import event, select

from idp.delivery.mail import MailQueue
from idp.storage import audit as audit_rows
from idp.storage.models import AuditEvent

SLOW = 1.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler: takes ``delay`` seconds per mail; refuses the first ``refuse``."""

    def __init__(self, delay: float = 0.0, refuse: int = 0) -> None:
        self.delay, self.refuse = delay, refuse
        self.messages: list[email.message.EmailMessage] = []
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        await asyncio.sleep(self.delay)
        if self.refused < self.refuse:
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    started = []

    def start(**kw):
        inbox = Inbox(**kw)
        port = _free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        return inbox, f"smtp://127.0.0.1:{port}"

    yield start
    for controller in started:
        controller.stop()


def _main(resp) -> str:
    return resp.get_data(as_text=True).split("<main")[1].split("</main>")[0]


def _timed_post(client, url: str, data: dict) -> tuple[float, object]:
    from login_kit import csrf

    page = client.get(url).get_data(as_text=True)
    began = time.perf_counter()
    resp = client.post(url, data={"csrf_token": csrf(page), **data})
    return time.perf_counter() - began, resp


def test_slow_smtp_never_shows_in_the_answer_time(make_app, smtp):
    inbox, url = smtp(delay=SLOW)
    app = make_app(smtp_url=url)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    known_time, known = _timed_post(
        app.test_client(), "/password/reset", {"email": "ann@example.org"}
    )
    unknown_time, unknown = _timed_post(
        app.test_client(), "/password/reset", {"email": "ghost@example.org"}
    )
    assert known.status_code == unknown.status_code == 200
    assert _main(known) == _main(unknown)  # the same page answers both
    # Far below one SMTP delivery: the mail is not sent inside the request.
    assert known_time < SLOW / 3 and unknown_time < SLOW / 3, (known_time, unknown_time)
    # ...and it still arrives, once, to the account's address only.
    assert svc.mail_queue.wait_idle(10)
    (mail,) = inbox.messages
    assert (
        mail["To"] == "ann@example.org"
        and "/password/reset/" in mail.get_body(preferencelist=("plain",)).get_content()
    )


def test_slow_smtp_never_shows_in_the_magic_link_answer_time(make_app, smtp):
    inbox, url = smtp(delay=SLOW)
    app = make_app(smtp_url=url)
    svc = app.extensions["idp"]
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)
    times, pages = [], []
    for address in ("newbie@example.org", "ghost@example.org"):
        took, resp = _timed_post(
            app.test_client(), "/login/first", {"email": address, "control_word": "Blue Harbour"}
        )
        assert resp.status_code == 200
        times.append(took)
        pages.append(_main(resp))
    assert max(times) < SLOW / 3, times
    assert pages[0] == pages[1]
    assert svc.mail_queue.wait_idle(10)
    (mail,) = inbox.messages
    assert mail["To"] == "newbie@example.org"


class Recorder:
    """What one request did: SQL statements (through SQLAlchemy), store calls (by method and
    key prefix: the embedded SQLite store runs its statements on the DBAPI connection) and
    mail queue jobs (by name, and whether the job produced a message)."""

    STORE_METHODS = ("get", "get_many", "put", "add", "take", "delete", "incr")

    def __init__(self, svc, monkeypatch) -> None:
        # A log that already has rows, as every running one does: the first row of a new
        # database starts the hash chain, two statements that no later row runs.
        with svc.sessions.begin() as db:
            audit_rows.audit_now(db, "test.started", at=svc.clock.utcnow())
        self.sql: list[str] = []
        self.store: list[tuple[str, str]] = []
        self.jobs: list[str] = []
        self.job_fns: list = []
        self._thread = threading.get_ident()
        event.listen(svc.engine, "before_cursor_execute", self._statement)
        self._engine = svc.engine
        for name in self.STORE_METHODS:
            original = getattr(svc.store, name)
            monkeypatch.setattr(svc.store, name, self._wrap(name, original))
        put = MailQueue.put

        def recording_put(queue, name, job):
            self.jobs.append(name)
            self.job_fns.append(job)
            return put(queue, name, job)

        monkeypatch.setattr(MailQueue, "put", recording_put)

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        # The request's own statements: the mail thread renders and sends meanwhile.
        if threading.get_ident() == self._thread:
            self.sql.append(statement)

    def _wrap(self, name, original):
        def call(key, *args, **kw):
            first = key[0] if isinstance(key, list) else key
            self.store.append((name, first.split(":")[0]))
            return original(key, *args, **kw)

        return call

    def clear(self) -> None:
        self.sql, self.store, self.jobs, self.job_fns = [], [], [], []

    def done(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)


def _record(recorder, client, url, data) -> dict:
    from login_kit import csrf

    page = client.get(url).get_data(as_text=True)
    recorder.clear()
    resp = client.post(url, data={"csrf_token": csrf(page), **data})
    assert resp.status_code == 200
    return {
        "sql": list(recorder.sql),
        "store": list(recorder.store),
        "jobs": list(recorder.jobs),
        "fns": list(recorder.job_fns),
    }


def test_known_and_unknown_address_do_the_same_work(make_app, monkeypatch):
    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    make_user(svc, "gone", status="inactive")
    recorder = Recorder(svc, monkeypatch)
    try:
        known = _record(
            recorder, app.test_client(), "/password/reset", {"email": "ann@example.org"}
        )
        unknown = _record(
            recorder, app.test_client(), "/password/reset", {"email": "ghost@example.org"}
        )
        inactive = _record(
            recorder, app.test_client(), "/password/reset", {"email": "gone@example.org"}
        )
    finally:
        recorder.done()
    assert known["sql"] and known["store"]
    for other in (unknown, inactive):
        assert other["sql"] == known["sql"]  # same statements, in the same order
        assert other["store"] == known["store"]  # same store calls (rate count, a token)
        assert other["jobs"] == known["jobs"] == ["reset"]  # one queued job each
    assert ("incr", "rl") in known["store"] and ("put", "ott") in known["store"]
    # The known address's job makes a mail; the others' make nothing.
    with app.app_context():
        assert known["fns"][0]() is not None
        assert unknown["fns"][0]() is None and inactive["fns"][0]() is None
    with svc.sessions() as db:
        rows = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "password.reset_requested")
            .order_by(AuditEvent.id)
        ).all()
    assert [(r.target is not None, r.details["sent"]) for r in rows] == [
        (True, True),
        (False, False),
        (False, False),
    ]


def test_magic_link_known_and_unknown_address_do_the_same_work(make_app, monkeypatch):
    """Without the control word, a new account's address and an unknown one take the same
    path. With it, the only difference is that a wrong word (and an unknown address has no
    right one) counts against the client's address, as every failed sign-in does."""
    app = make_app()
    svc = app.extensions["idp"]
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)
    recorder = Recorder(svc, monkeypatch)
    runs = {}
    try:
        for address, word in (
            ("newbie@example.org", "Blue Harbour"),
            ("ghost@example.org", "Blue Harbour"),
            ("newbie@example.org", "Red Harbour"),
            ("ghost2@example.org", "Red Harbour"),
        ):
            runs[address, word] = _record(
                recorder,
                app.test_client(),
                "/login/first",
                {"email": address, "control_word": word},
            )
    finally:
        recorder.done()
    known = runs["newbie@example.org", "Blue Harbour"]
    unknown = runs["ghost@example.org", "Blue Harbour"]
    wrong_known = runs["newbie@example.org", "Red Harbour"]
    wrong_unknown = runs["ghost2@example.org", "Red Harbour"]
    assert wrong_known["sql"] == wrong_unknown["sql"] == unknown["sql"] == known["sql"]
    assert wrong_known["store"] == wrong_unknown["store"] == unknown["store"]
    assert [c for c in unknown["store"] if c[1] not in ("ipfail", "ipfails")] == known["store"]
    for run in runs.values():
        assert run["jobs"] == ["magic_link"]
    with app.app_context():
        assert known["fns"][0]() is not None
        assert all(r["fns"][0]() is None for r in (unknown, wrong_known, wrong_unknown))


def test_a_refused_delivery_is_retried_until_it_arrives(make_app, smtp, capsys):
    inbox, url = smtp(refuse=2)
    app = make_app(smtp_url=url, mail={"attempts": 4, "retry_seconds": 0.1})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    resp = post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    assert resp.status_code == 200
    assert svc.mail_queue.wait_idle(10)
    assert inbox.refused == 2
    (mail,) = inbox.messages
    assert mail["To"] == "ann@example.org"
    err = capsys.readouterr().err
    assert "mail reset attempt 1 failed" in err and "mail reset attempt 2 failed" in err
    assert "mail reset sent" in err and "given up" not in err


def test_a_delivery_that_keeps_failing_is_given_up_with_an_error_line(make_app, capsys):
    app = make_app(
        smtp_url=f"smtp://127.0.0.1:{_free_port()}",  # nothing listens
        mail={"attempts": 3, "retry_seconds": 0.05, "timeout": 2},
    )
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    resp = post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    assert resp.status_code == 200 and "Check your e-mail" in resp.get_data(as_text=True)
    assert svc.mail_queue.wait_idle(10)
    err = capsys.readouterr().err
    assert err.count("mail reset attempt") == 2
    assert "ERROR idp.mail mail reset not delivered after 3 attempts, given up" in err


def test_the_locking_failure_queues_one_job_for_known_and_unknown_names(make_app, monkeypatch):
    """The failure that locks an account mails its owner; an unknown name locks the same way
    (test_lockout.py) and queues a job that sends nothing."""
    from login_kit import login

    app = make_app(lockout={"max_failures": 2, "window_minutes": 10, "lock_minutes": 10})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    recorder = Recorder(svc, monkeypatch)
    jobs = {}
    try:
        for name in ("ann", "nobody"):
            client = app.test_client()
            assert login(client, name, "wrong-1").status_code == 401
            recorder.clear()
            assert login(client, name, "wrong-2").status_code == 401  # this one locks
            jobs[name] = (list(recorder.jobs), list(recorder.job_fns))
    finally:
        recorder.done()
    assert jobs["ann"][0] == jobs["nobody"][0] == ["lockout"]
    with app.app_context():
        assert jobs["ann"][1][0]() is not None and jobs["nobody"][1][0]() is None
