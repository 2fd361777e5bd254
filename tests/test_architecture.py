"""The shape of ../shared/design.md, held by import-linter contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_every_contract_is_kept() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_contract_fails_the_check(tmp_path: Path) -> None:
    """The check reads our code: a contract the code breaks (web imports flask) is reported."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["idp"]\n'
        "include_external_packages = true\n"
        "[[tool.importlinter.contracts]]\n"
        'name = "web without flask"\n'
        'type = "forbidden"\n'
        'source_modules = ["idp.web"]\n'
        'forbidden_modules = ["flask"]\n'
    )
    result = _lint(str(config))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "idp.web" in result.stdout
