"""One-time tokens never reach a log line.

Mailed links (password reset, first-login magic link, e-mail verification, registration approval)
carry a single-use token in their path; OAuth redirects carry one-time codes in their query. Logs
are read by more people, and kept longer, than the tokens live: RFC 9700 section 4.2.4 lists log
files among the places an authorization code leaks to, and the OWASP Logging Cheat Sheet says
access tokens and session identifiers are never logged. Each flow is driven for real with the
logs captured in both formats; each token must be absent from every line while the redacted line
still names the route.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests
from login_kit import company_with_control_word, csrf, link_in, make_user, outbox, post_form

from idp.logs import REDACTED, redact

NEW = "Fresh-Cactus-Lamp-42"
LOGGING = {"access_log": True, "level": "INFO"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(link: str, route: str) -> str:
    path = urlsplit(link).path
    assert path.startswith(route)
    token = path[len(route) :]
    assert len(token) >= 40  # a real token, not an empty segment
    return token


def _lines(err: str, fmt: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    if fmt == "json":
        for line in lines:
            json.loads(line)  # every line still parses
    return lines


def _assert_redacted(err: str, fmt: str, token: str, route: str) -> None:
    lines = _lines(err, fmt)
    leaks = [line for line in lines if token in line]
    assert leaks == []
    shown = f"{route}{REDACTED}"
    access = [line for line in lines if "idp.access" in line and shown in line]
    assert access, f"no access line shows {shown}"
    if fmt == "json":
        assert any(json.loads(line)["path"] == shown for line in access)
    else:
        assert any(f"path={shown}" in line for line in access)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_reset_token_is_redacted_in_every_line(make_app, capsys, fmt):
    app = make_app(logging={**LOGGING, "format": fmt})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    post_form(client, "/password/reset", {"email": "ann@example.org"})
    token = _token(link_in(outbox(svc)[-1], "/password/reset/"), "/password/reset/")
    capsys.readouterr()
    page = client.get(f"/password/reset/{token}").get_data(as_text=True)
    # A wrong method logs an "http error" line naming the path too.
    assert client.put(f"/password/reset/{token}").status_code == 405
    resp = client.post(
        f"/password/reset/{token}",
        data={"csrf_token": csrf(page), "new_password": NEW, "confirm": NEW},
    )
    assert resp.status_code == 302
    err = capsys.readouterr().err
    _assert_redacted(err, fmt, token, "/password/reset/")
    assert any("http error 405 on /password/reset/[redacted]" in line for line in err.splitlines())


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_magic_link_token_is_redacted(make_app, capsys, fmt):
    app = make_app(logging={**LOGGING, "format": fmt})
    svc = app.extensions["idp"]
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)
    client = app.test_client()
    post_form(
        client, "/login/first", {"email": "newbie@example.org", "control_word": "Blue Harbour"}
    )
    token = _token(link_in(outbox(svc)[-1], "/login/magic/"), "/login/magic/")
    capsys.readouterr()
    assert post_form(client, f"/login/magic/{token}", {}).status_code == 302
    _assert_redacted(capsys.readouterr().err, fmt, token, "/login/magic/")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_verification_and_approval_tokens_are_redacted(make_app, capsys, fmt):
    app = make_app(
        logging={**LOGGING, "format": fmt},
        registration={
            "enabled": True,
            "require_approval": True,
            "admin_emails": ["boss@example.org"],
        },
    )
    svc = app.extensions["idp"]
    client = app.test_client()
    form = {"username": "reg1", "email": "reg1@example.org", "new_password": NEW, "confirm": NEW}
    assert post_form(client, "/register", form).status_code == 200
    verify = _token(link_in(outbox(svc)[-1], "/verify-email/"), "/verify-email/")
    capsys.readouterr()
    assert post_form(client, f"/verify-email/{verify}", {}).status_code == 200
    _assert_redacted(capsys.readouterr().err, fmt, verify, "/verify-email/")
    approve = _token(link_in(outbox(svc)[-1], "/register/approve/"), "/register/approve/")
    admin = app.test_client()
    capsys.readouterr()
    page = admin.get(f"/register/approve/{approve}").get_data(as_text=True)
    resp = admin.post(
        f"/register/approve/{approve}", data={"csrf_token": csrf(page), "approve": "Approve"}
    )
    assert resp.status_code == 200
    outbox(svc)  # the decision mail leaves while this test's log stream is still open
    _assert_redacted(capsys.readouterr().err, fmt, approve, "/register/approve/")


def test_secret_query_values_are_redacted_in_any_line(make_app, capsys):
    """A line that quotes a URL (a library's message, an error) loses the one-time values of the
    OAuth and SAML parameters; the parameter names and the other values stay."""
    make_app(logging={**LOGGING, "format": "text"})
    capsys.readouterr()
    logging.getLogger("idp.test").warning(
        "redirecting to %s",
        "https://rp.example/cb?code=c0de-one-time&state=st4te&iss=https://id.example",
    )
    logging.getLogger("idp.test").info(
        "saw", extra={"url": "/saml/sso?SAMLRequest=fVJdb4Iw&RelayState=back"}
    )
    err = capsys.readouterr().err
    assert "c0de-one-time" not in err and "st4te" not in err and "fVJdb4Iw" not in err
    assert "cb?code=[redacted]&state=[redacted]&iss=https://id.example" in err
    assert "url=/saml/sso?SAMLRequest=[redacted]&RelayState=back" in err


def test_redact_keeps_other_paths_and_is_idempotent():
    assert redact("GET /password/reset 200") == "GET /password/reset 200"
    assert redact("/login?r=abc&next=/account/") == "/login?r=abc&next=/account/"
    once = redact('"GET /verify-email/AbC_-9?x=1 HTTP/1.1" 200')
    assert once == '"GET /verify-email/[redacted]?x=1 HTTP/1.1" 200'
    assert redact(once) == once


def test_werkzeug_development_server_lines_are_redacted(make_app, caplog):
    """`flask run` logs each request line, query string included, through werkzeug's logger."""
    from werkzeug.serving import make_server

    app = make_app(logging={**LOGGING, "format": "text"})
    port = _free_port()
    server = make_server("127.0.0.1", port, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            base = f"http://127.0.0.1:{port}"
            requests.get(f"{base}/login/magic/Mag1cT0kenValue", timeout=5)
            requests.get(f"{base}/healthz?code=Auth0rizationCode&x=1", timeout=5)
    finally:
        server.shutdown()
        thread.join(5)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("GET /login/magic/[redacted] HTTP/1.1" in line for line in lines)
    assert any("GET /healthz?code=[redacted]&x=1 HTTP/1.1" in line for line in lines)
    assert "Mag1cT0kenValue" not in caplog.text and "Auth0rizationCode" not in caplog.text
