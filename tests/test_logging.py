"""Logging: one access line per request (request id, method, path, status, duration), text or
JSON lines, and never a password, secret or query string."""

from __future__ import annotations

import json
import re

import pytest

SECRETS = ("hunter2-password", "s3cr3t-client-secret", "code-abc-123", "tok-xyz-789")


def request_all(client) -> None:
    client.get(
        "/healthz?password=hunter2-password&client_secret=s3cr3t-client-secret",
        headers={"X-Request-ID": "req-fixed-1"},
    )
    client.post(
        "/nowhere?code=code-abc-123",
        data={"username": "alice", "password": "hunter2-password"},
        headers={"Authorization": "Bearer tok-xyz-789"},
    )
    client.get("/.well-known/openid-configuration")


def access_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "idp.access" in line]


def test_text_access_lines(make_app, capsys):
    app = make_app(logging={"access_log": True, "format": "text", "level": "INFO"})
    capsys.readouterr()
    request_all(app.test_client())
    err = capsys.readouterr().err
    lines = access_lines(err)
    assert len(lines) == 3  # one line per request
    first = lines[0]
    assert " GET /healthz 200 " in first
    assert "request_id=req-fixed-1" in first
    assert re.search(r"duration_ms=\d+(\.\d+)?", first)
    assert "status=200" in first and "method=GET" in first and "path=/healthz" in first
    assert " POST /nowhere 404 " in lines[1] or " POST /nowhere 405 " in lines[1]
    ids = [re.search(r"request_id=(\S+)", line).group(1) for line in lines]
    assert ids[0] == "req-fixed-1" and len(set(ids)) == 3  # generated ids are unique
    for secret in SECRETS:
        assert secret not in err
    assert "?" not in "".join(lines)  # no query strings at all


def test_json_lines(make_app, capsys):
    app = make_app(logging={"access_log": True, "format": "json", "level": "INFO"})
    capsys.readouterr()
    client = app.test_client()
    request_all(client)
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line parses
    access = [r for r in records if r["logger"] == "idp.access"]
    assert len(access) == 3
    first = access[0]
    assert first["request_id"] == "req-fixed-1"
    assert first["method"] == "GET" and first["path"] == "/healthz" and first["status"] == 200
    assert isinstance(first["duration_ms"], float | int)
    assert first["level"] == "INFO" and first["ts"].endswith("Z")
    for secret in SECRETS:
        assert secret not in err


def test_request_id_is_returned_and_bounded(make_app):
    client = make_app().test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    long = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert len(long) == 64


def test_request_id_cannot_forge_log_lines(make_app, capsys):
    app = make_app(logging={"access_log": True, "format": "text", "level": "INFO"})
    capsys.readouterr()
    client = app.test_client()
    resp = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": "a\nFAKE admin in"})
    assert resp.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])  # replaced, not echoed
    resp = client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])
    err = capsys.readouterr().err
    assert not any(line.startswith("FAKE") for line in err.splitlines())
    assert "<script>" not in err


def test_unexpected_error_logged_with_reference_not_shown(make_app, capsys):
    app = make_app(logging={"access_log": True, "format": "json", "level": "INFO"})

    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError("internal detail password=hunter2-password")

    capsys.readouterr()
    resp = app.test_client().get("/boom-for-test", headers={"Accept": "application/json"})
    assert resp.status_code == 500
    body = resp.get_json()
    assert body["error"] == "server_error" and "internal detail" not in resp.get_data(True)
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    failure = next(r for r in records if r["msg"] == "unhandled error")
    assert failure["reference"] == body["reference"]
    # The traceback is logged, redacted like a message: it quotes the exception and its source.
    assert "RuntimeError: internal detail password=[redacted]" in failure["exc"]
    assert "hunter2" not in err


def test_settings_repr_in_logs_is_redacted(make_app, capsys):
    app = make_app(secret_key="flask-secret-never-logged-000")
    import logging

    logging.getLogger("idp.test").warning("settings: %r", app.extensions["idp"].settings)
    err = capsys.readouterr().err
    assert "flask-secret-never-logged" not in err and "secret_key='***'" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_log_can_be_turned_off(make_app, capsys, fmt):
    app = make_app(logging={"access_log": False, "format": fmt, "level": "INFO"})
    capsys.readouterr()
    app.test_client().get("/healthz")
    assert access_lines(capsys.readouterr().err) == []
