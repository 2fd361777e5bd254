"""No secret in the logs of the whole test session (issue 22, "Secrets").

A pytest plugin (registered by tests/conftest.py) that:

- writes every log record emitted anywhere in the test process during the session (whatever its
  logger's handlers or ``propagate`` say: the ``idp`` logger does not propagate) to
  ``<basetemp>/secret-watch/log-<worker>.txt``, after the record's own handlers ran, so the
  line is what the IdP's redacting handler wrote;
- keeps a registry of the secrets tests and kits create (passwords, client secrets, tokens, TOTP
  seeds, recovery codes): :func:`register`; and a list of the stdout / stderr files of served
  subprocesses (``idp serve`` logs): :func:`watch_file`;
- at the end of the session (``pytest_sessionfinish``, each pytest-xdist worker for its own
  process) reads its log and every watched file and fails the run when any registered secret,
  a signed JWT, a ``Bearer`` credential or a ``password=`` value appears in them. The failure
  is an error in the teardown of the last test the process ran, headed ``secret-watch::logs``
  (counted like any error, also by the xdist controller, so the run exits 1), listing where
  each leak is, never the secret itself.

Values shorter than :data:`MIN_LENGTH` are not registered (a short value would match by chance).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

MIN_LENGTH = 8
NODEID = "secret-watch::logs"

_registered: set[str] = set()
_files: set[Path] = set()
_lock = threading.Lock()

# What a credential looks like even when no test registered it.
PATTERNS = {
    "signed JWT": re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{16,}"),
    "Bearer credential": re.compile(r"Bearer\s+(?!\[redacted\])[\w.~+/=-]{16,}"),
    "password= value": re.compile(
        r"\bpassword=(?!\[redacted\]|\*+|\s|$|&|\"|'|None\b|<|\{|\()[^\s&\"']{4,}", re.I
    ),
}


def register(*values: object) -> None:
    """Watch these values (strings; a dict or list is walked for its strings): they must never
    appear in a log line of this session."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            if len(value) >= MIN_LENGTH:
                found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                walk(item)

    for value in values:
        walk(value)
    with _lock:
        _registered.update(found)


def register_json(data: object, keys: Iterable[str] = ()) -> None:
    """Register the values under secret-looking keys of a JSON answer (``client_secret``,
    ``password``, ``*_token``, ``secret``, ``recovery_codes`` ...) and under ``keys``."""
    wanted = set(keys)

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                k = str(key).lower()
                if (
                    k in wanted
                    or k
                    in {
                        "password",
                        "secret",
                        "client_secret",
                        "recovery_codes",
                        "codes",
                        "backup_codes",
                        "token",
                        "seed",
                        "totp_secret",
                    }
                    or k.endswith("_token")
                ):
                    register(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)


def watch_file(path: os.PathLike | str) -> None:
    """A log file (a served subprocess's stdout / stderr) checked at the end of the session."""
    with _lock:
        _files.add(Path(path))


def registered() -> set[str]:
    with _lock:
        return set(_registered)


_ATOM = re.compile(r"[A-Za-z0-9_-]+")


def scan(text: str, secrets_: Iterable[str]) -> list[str]:
    """What leaks in ``text``: one entry per kind of leak and line number, never the value.

    Thousands of secrets against megabytes of log: a secret is looked for exactly only when
    each of its runs of letters, digits, ``-`` and ``_`` is such a run of the text (a log
    delimits what it writes with spaces, quotes, ``=``, ``/``...), so one pass over the text
    finds the candidates."""
    out: set[tuple[int, str]] = set()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def before(pos: int) -> str:
        """Up to 80 characters of the line before the leak (its logger and message start),
        never the value itself: enough to find what wrote it."""
        start = text.rfind("\n", 0, pos) + 1
        return text[max(start, pos - 80) : pos].strip()

    atoms = set(_ATOM.findall(text))
    for secret in {s for s in secrets_ if s}:
        if not all(a in atoms for a in _ATOM.findall(secret)):
            continue
        pos = text.find(secret)
        while pos != -1:
            out.add((line_of(pos), f"a registered secret, after {before(pos)!r}"))
            pos = text.find(secret, pos + 1)
    for name, pattern in PATTERNS.items():
        for found in pattern.finditer(text):
            out.add((line_of(found.start()), f"a {name}, after {before(found.start())!r}"))
    return [f"line {number}: {what}" for number, what in sorted(out)]


class _Capture(logging.Handler):
    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        self.path = path
        self.stream = path.open("a", encoding="utf-8", errors="replace")
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s %(extras)s")
        )

    def format(self, record: logging.LogRecord) -> str:
        base = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
            "message",
            "asctime",
            "extras",
        }
        extras = {k: v for k, v in record.__dict__.items() if k not in base}
        record.extras = " ".join(f"{k}={v}" for k, v in extras.items())
        try:
            return super().format(record)
        finally:
            del record.extras

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is not written by anyone
            return
        with _lock:
            self.stream.write(line.replace("\n", "\n  ") + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
        super().close()


class Plugin:
    """Registered by tests/conftest.py for the whole session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.capture: _Capture | None = None
        self._original = None
        self.last: tuple[str, tuple] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and not report.nodeid.startswith(NODEID):
            self.last = (report.nodeid, report.location)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        if getattr(self.config.option, "numprocesses", None) and not hasattr(
            self.config, "workerinput"
        ):
            return  # the pytest-xdist controller runs no test: each worker watches its own
        folder = Path(self.config._tmp_path_factory.getbasetemp()) / "secret-watch"
        folder.mkdir(parents=True, exist_ok=True)
        self.capture = _Capture(folder / f"log-{worker}.txt")
        capture = self.capture
        original = logging.Logger.callHandlers
        self._original = original

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            original(logger, record)  # the record's own handlers first (they redact in place)
            capture.handle(record)

        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.capture is None:
            return
        logging.Logger.callHandlers = self._original  # type: ignore[method-assign]
        self.capture.close()
        secrets_ = registered()
        leaks: list[str] = []
        with _lock:
            files = [self.capture.path, *sorted(_files)]
        for path in files:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            leaks += [f"{path}: {found}" for found in scan(text, secrets_)]
        if not leaks:
            return
        shown = "\n".join(leaks[:50]) + (
            f"\n... and {len(leaks) - 50} more" if len(leaks) > 50 else ""
        )
        # Reported as an error in the teardown of the last test this process ran: pytest-xdist
        # forwards a worker's reports only for its own items, and the controller counts it.
        nodeid, location = self.last or (NODEID, ("tests/secret_watch.py", 0, NODEID))
        report = pytest.TestReport(
            nodeid=nodeid,
            location=location,
            keywords={},
            outcome="failed",
            longrepr=f"{NODEID}: secrets in the logs of this test session ({len(secrets_)} "
            f"registered, {len(files)} log files read):\n{shown}",
            when="teardown",
            sections=[],
            duration=0.0,
            start=0.0,
            stop=0.0,
            user_properties=[],
        )
        session.config.hook.pytest_runtest_logreport(report=report)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
