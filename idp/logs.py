"""Logging: text or JSON lines; one access line per request. Never secrets, never query strings.

Mailed links carry one-time tokens in their path (``/password/reset/<token>``, ...) and OAuth
redirects carry one-time codes in their query: whoever reads a log line must not be able to use
them (RFC 9700 section 4.2.4 counts log files among the places an authorization code leaks to;
OWASP's logging cheat sheet asks that session identifiers and tokens are never written). Every
line the IdP's handler writes, and every line of werkzeug's request logger, passes
:class:`Redactor`, the one place that knows the token-bearing routes and query parameters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

REDACTED = "[redacted]"
# Routes whose last path segment is a one-time token (idp/web/password.py).
TOKEN_ROUTES = ("/password/reset/", "/login/magic/", "/verify-email/", "/register/approve/")
# Query or form parameters that are credentials, one-time codes or bearer messages.
SECRET_PARAMS = (
    "code",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "id_token_hint",
    "logout_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "code_verifier",
    "device_code",
    "password",
    "state",
    "SAMLRequest",
    "SAMLResponse",
)
_TOKEN_PATH = re.compile("(" + "|".join(re.escape(r) for r in TOKEN_ROUTES) + r")[^/?#\s\"']+")
_SECRET_QUERY = re.compile(r"([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&;#\s\"']*")
# Credential-looking assignments anywhere in a line (an exception message, a traceback's source
# line): ``password=...`` is never a thing a log line needs to show, wherever it stands.
_SECRET_ASSIGN = re.compile(
    r"(\b(?:password|passwd|client_secret|secret_key)=)(?![*\[])[^&;#\s\"',)]+", re.I
)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,64}")
access = logging.getLogger("idp.access")


def request_id(given: str | None) -> str:
    """A proxy's ``X-Request-ID`` when it is a plain token (it is echoed in a header and written
    to every log line), so log lines can be joined across hops; else a new one."""
    given = (given or "")[:64]
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def access_line(method: str, path: str, status: int, took_ms: float, rid: str | None) -> None:
    """The one access-log line of a request (``[logging] access_log``)."""
    access.info(
        "%s %s %s %.1fms",
        method,
        path,
        status,
        took_ms,
        extra={
            "request_id": rid,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(took_ms, 1),
        },
    )


def redact(text: str) -> str:
    """``text`` with every token path segment and secret query value replaced by [redacted];
    the route and the parameter's name stay, so a line still says what was asked."""
    if "/" not in text and "=" not in text:
        return text
    text = _SECRET_QUERY.sub(r"\1" + REDACTED, _TOKEN_PATH.sub(r"\1" + REDACTED, text))
    return _SECRET_ASSIGN.sub(r"\1" + REDACTED, text)


_TRACEBACKS = logging.Formatter()


class Redactor(logging.Filter):
    """Rewrites a record's message and its string extras with :func:`redact` (in place: every
    handler after this one sees the redacted record too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        for key, value in record.__dict__.items():
            if key not in _STD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            # A traceback quotes exception messages and source lines: formatted once here and
            # redacted like the message (formatters use a record's exc_text when it is set).
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STD})
        if record.exc_info:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STD}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return line


def configure(level: str, fmt: str) -> None:
    root = logging.getLogger("idp")
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redactor())
    root.handlers[:] = [handler]
    root.propagate = False
    # The development server (`flask run`) logs each request line, query string included, to
    # the "werkzeug" logger with handlers of its own: the filter goes on the logger itself.
    dev_server = logging.getLogger("werkzeug")
    if not any(isinstance(f, Redactor) for f in dev_server.filters):
        dev_server.addFilter(Redactor())
