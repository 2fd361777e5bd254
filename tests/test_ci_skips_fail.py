"""Under CI=true a skipped test fails the run (tests/conftest.py's pytest_runtest_makereport),
whichever way it skips; without CI it stays a skip. Proved on a throw-away test file run by a
real pytest in a subprocess, with this suite's conftest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest


def test_skips_by_call():
    pytest.skip("a tier is missing")


@pytest.mark.skip(reason="marked")
def test_skips_by_mark():
    pass


def test_passes():
    pass
'''


@pytest.fixture
def skipping_suite(tmp_path: Path) -> Path:
    for helper in ("conftest.py", "support.py", "pg_tier.py", "secret_watch.py"):
        shutil.copy(TESTS / helper, tmp_path / helper)
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    return tmp_path


def _pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(folder), str(folder / "test_skipping.py")],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_skip_fails_the_run_under_ci(skipping_suite):
    run = _pytest(skipping_suite, "true")
    assert run.returncode == 1, run.stdout
    # A skip in the test body is a failure; a skip mark acts in set-up, so an error there.
    assert run.stdout.splitlines()[-1].startswith("1 failed, 1 passed, 1 error in ")
    assert "skipped under CI=true, which fails the run: Skipped: a tier is missing" in run.stdout
    assert "skipped under CI=true, which fails the run: Skipped: marked" in run.stdout


def test_a_skip_is_a_skip_elsewhere(skipping_suite):
    run = _pytest(skipping_suite, None)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 2 skipped" in run.stdout
