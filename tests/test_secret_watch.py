"""The session-wide log check of tests/secret_watch.py does what it says: an inner pytest run
(a subprocess, with the plugin registered the way tests/conftest.py does) fails when a
registered secret, a signed JWT, a Bearer credential or a password= value reaches a log line
or a watched server log, also under pytest-xdist (-n 2, each worker checking its own log), and
passes when nothing leaks. The report names where, never the secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SECRET = "leaky-secret-value-0123456789"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbm4iLCJpc3MiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"

CONFTEST = """
import secret_watch

def pytest_configure(config):
    config.pluginmanager.register(secret_watch.Plugin(config), "secret_watch")
"""

CLEAN = """
import logging
import secret_watch

def test_registers_and_logs_only_redacted():
    secret_watch.register("{secret}")
    logging.getLogger("idp.access").warning("POST /oauth2/token code=[redacted] 200")

def test_other():
    logging.getLogger("elsewhere").error("nothing secret here, password=[redacted]")
"""

LEAKS = {
    "registered": """
import logging
import secret_watch

def test_leaks():
    secret_watch.register("{secret}")
    quiet = logging.getLogger("idp.quiet")
    quiet.propagate = False  # the idp logger does not propagate either
    quiet.addHandler(logging.NullHandler())
    quiet.warning("made %s", "{secret}")

def test_other():
    pass
""",
    "jwt": """
import logging

def test_leaks():
    logging.getLogger("idp").error("token was {jwt}")

def test_other():
    pass
""",
    "bearer": """
import logging

def test_leaks():
    logging.getLogger("app").warning("Authorization: Bearer abcdefghijklmnop0123456789")

def test_other():
    pass
""",
    "password": """
import logging

def test_leaks():
    logging.getLogger("app").warning("login failed for ann password=hunter2hunter2")

def test_other():
    pass
""",
    "served log": """
import secret_watch

def test_leaks(tmp_path):
    secret_watch.register("{secret}")
    log = tmp_path / "server.log"
    log.write_text("INFO idp.access GET /x\\nINFO idp something {secret}\\n")
    secret_watch.watch_file(log)

def test_other():
    pass
""",
}


def _inner(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(body.replace("{secret}", SECRET).replace("{jwt}", JWT))
    env = {"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "bt"),
            *args,
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_clean_session_passes(tmp_path, xdist):
    done = _inner(tmp_path, CLEAN, *xdist)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "secret-watch" not in done.stdout
    logs = list((tmp_path / "bt").glob("**/secret-watch/log-*.txt"))
    assert logs, "no session log was written"
    text = "".join(p.read_text() for p in logs)
    assert "code=[redacted]" in text and "nothing secret here" in text


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["one-process", "xdist"])
@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_a_leak_fails_the_session_without_showing_the_secret(tmp_path, kind, xdist):
    done = _inner(tmp_path, LEAKS[kind], *xdist)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "secret-watch::logs" in out and "2 passed, 1 error" in out, out
    assert SECRET not in out and JWT not in out and "hunter2hunter2" not in out
