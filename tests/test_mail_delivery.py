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
