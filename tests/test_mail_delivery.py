"""Mail delivery: outbox .eml files (text + HTML) and real SMTP with STARTTLS and SMTPS against an
aiosmtpd server, with authentication only over TLS."""

import email
import email.policy
import socket
import ssl
import subprocess

import pytest

from idp.delivery.mail import Mailer, MailError, OutboxTransport, SmtpTransport


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(name, **ctx):
    return f"{name}: {ctx['link']}" if name.endswith(".txt") else f"<p>{ctx['link']}</p>"


def test_outbox_writes_multipart_eml(tmp_path):
    mailer = Mailer(OutboxTransport(tmp_path / "outbox"), "idp@example.org", "IdP")
    assert mailer.send_template(_render, "ann@example.org", "reset", "Reset", link="https://x/y")
    (path,) = list((tmp_path / "outbox").glob("*.eml"))
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["To"] == "ann@example.org" and msg["Subject"] == "Reset"
    assert "https://x/y" in msg.get_body(preferencelist=("plain",)).get_content()
    assert "<p>https://x/y</p>" in msg.get_body(preferencelist=("html",)).get_content()


@pytest.fixture
def tls_files(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        self.messages.append((session.authenticated, envelope.content))
        return "250 OK"


def _auth(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=auth_data.login == b"u" and auth_data.password == b"p")


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_smtp_delivery_over_tls(tls_files, mode):
    from aiosmtpd.controller import Controller

    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = _free_port()
    kw = {"authenticator": _auth, "auth_require_tls": True}
    if mode == "starttls":
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True, **kw
        )
    else:
        # Implicit TLS: aiosmtpd does not count it as TLS for auth_require_tls, but the whole
        # connection is encrypted from the first byte.
        kw["auth_require_tls"] = False
        controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=ctx, **kw)
    controller.start()
    try:
        scheme = "smtp" if mode == "starttls" else "smtps"
        transport = SmtpTransport(f"{scheme}://u:p@127.0.0.1:{port}", timeout=5, verify_tls=False)
        mailer = Mailer(transport, "idp@example.org", "IdP")
        mailer.transport.send(mailer.compose("ann@example.org", "Hi", "text", "<p>html</p>"))
        assert len(inbox.messages) == 1 and inbox.messages[0][0] is True
        bad = SmtpTransport(f"{scheme}://u:wrong@127.0.0.1:{port}", timeout=5, verify_tls=False)
        with pytest.raises(MailError):
            bad.send(mailer.compose("ann@example.org", "Hi", "text"))
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_smtp_refuses_password_without_tls():
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = SmtpTransport(f"smtp://u:p@127.0.0.1:{port}", timeout=5)
        mailer = Mailer(transport, "idp@example.org", "IdP")
        with pytest.raises(MailError, match="STARTTLS"):
            transport.send(mailer.compose("ann@example.org", "Hi", "text"))
        assert inbox.messages == []
    finally:
        controller.stop()


# --- the durable outbox (idp.storage.mail_outbox) ---------------------------------------------


class _Counting:
    """A transport that records each message it takes (by Message-ID), from any thread."""

    def __init__(self):
        import threading

        self.sent = []
        self._lock = threading.Lock()

    def send(self, msg):
        with self._lock:
            self.sent.append(msg["Message-ID"])


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, make_app):
    if request.param == "sqlite":
        return make_app()
    return make_app(database_url=request.getfixturevalue("pg_url"))


def test_two_workers_sharing_the_outbox_never_send_one_mail_twice(any_db_app):
    """The lease is a conditional UPDATE: on SQLite and on PostgreSQL one worker wins a row."""
    from idp.delivery.mail import MailQueue

    svc = any_db_app.extensions["idp"]
    outbox = svc.mail_queue.outbox
    ids = []
    for n in range(30):
        msg = svc.mailer.compose(f"u{n}@example.org", "Hi", "text")
        outbox.rendered(outbox.add("hello", "test"), bytes(msg))
        ids.append(msg["Message-ID"])
    transports = [_Counting(), _Counting()]
    workers = [MailQueue(t, outbox, attempts=3, retry_seconds=0.1, timeout=5,
                         poll_seconds=0.05) for t in transports]
    for worker in workers:
        worker.start()
    try:
        assert all(worker.wait_idle(20) for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
    sent = transports[0].sent + transports[1].sent
    assert sorted(sent) == sorted(ids)  # every mail once, whichever worker took it
    assert outbox.pending() == (0, None)


def test_a_mail_whose_worker_died_before_rendering_it_is_marked_failed(make_app, capsys):
    from sqlalchemy import select

    from idp.clock import FrozenClock
    from idp.storage.models_mail import MailOutbox

    clock = FrozenClock()
    svc = make_app(clock=clock).extensions["idp"]
    outbox = svc.mail_queue.outbox
    outbox.add("reset", "a-worker-that-was-killed")  # its job died with its process
    clock.advance(outbox.lease.total_seconds() + 1)
    svc.mail_queue.put("other", lambda: None)  # any worker's mail thread looks
    assert svc.mail_queue.wait_idle(10)
    with svc.sessions() as db:
        rows = db.execute(select(MailOutbox.name, MailOutbox.state)).all()
    assert rows == [("reset", "failed")]
    assert "ERROR idp.mail mail reset lost: its worker ended before rendering it" in (
        capsys.readouterr().err
    )


def test_mail_accepted_while_smtp_is_down_is_sent_by_the_next_process(make_app):
    """The queue that accepted the mail goes away (a restart); a new one sends it."""
    from idp.delivery.mail import MailError, MailQueue

    class Down:
        def send(self, msg):
            raise MailError("connection refused")

    svc = make_app().extensions["idp"]
    outbox = svc.mail_queue.outbox
    first = MailQueue(Down(), outbox, attempts=5, retry_seconds=0.1, timeout=5)
    first.put("hello", lambda: svc.mailer.compose("ann@example.org", "Hi", "text"))
    assert not first.wait_idle(0.5)  # still waiting for its next try
    first.stop()
    assert outbox.pending()[0] == 1
    up = _Counting()
    second = MailQueue(up, outbox, attempts=5, retry_seconds=0.1, timeout=5, poll_seconds=0.05)
    second.start()
    try:
        assert second.wait_idle(10)
    finally:
        second.stop()
    assert len(up.sent) == 1 and outbox.pending() == (0, None)


def test_the_worker_that_renders_a_mail_sends_it_without_claiming_it_back(make_app):
    """A mail goes out from the memory of the thread that rendered it: its row stays leased to
    that thread (no other worker can take it meanwhile) and no claim is made for it."""
    from idp.delivery.mail import MailQueue

    svc = make_app().extensions["idp"]
    outbox = svc.mail_queue.outbox
    claims, leases = [], []

    class Watching:
        def __getattr__(self, name):
            return getattr(outbox, name)

        def claim(self, owner):
            row = outbox.claim(owner)
            claims.append(row)
            return row

    class Looking(_Counting):
        def send(self, msg):
            leases.append(outbox.claim("another-worker"))  # the row is not free to take
            super().send(msg)

    transport = Looking()
    queue = MailQueue(transport, Watching(), attempts=3, retry_seconds=0.1, timeout=5)
    for n in range(3):
        queue.put("hello", lambda n=n: svc.mailer.compose(f"u{n}@example.org", "Hi", "text"))
    assert queue.wait_idle(10)
    assert len(transport.sent) == 3 and outbox.pending() == (0, None)
    assert leases == [None, None, None]
    assert [c for c in claims if c is not None] == []


def test_a_rendered_mail_whose_worker_died_before_sending_is_sent_once_its_lease_ends(make_app):
    from idp.clock import FrozenClock
    from idp.delivery.mail import MailQueue

    clock = FrozenClock()
    svc = make_app(clock=clock).extensions["idp"]
    outbox = svc.mail_queue.outbox
    msg = svc.mailer.compose("ann@example.org", "Hi", "text")
    # Rendered and leased by a worker that was killed before it sent the message.
    outbox.rendered(outbox.add("hello", "killed"), bytes(msg), owner="killed")
    up = _Counting()
    other = MailQueue(up, outbox, attempts=3, retry_seconds=0.1, timeout=5, poll_seconds=0.05)
    other.start()
    try:
        assert not other.wait_idle(0.5)  # still leased to the dead worker: nobody sends it
        assert up.sent == []
        clock.advance(outbox.lease.total_seconds() + 1)
        assert other.wait_idle(10)
    finally:
        other.stop()
    assert up.sent == [msg["Message-ID"]] and outbox.pending() == (0, None)
