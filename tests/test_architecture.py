"""The shape of ../shared/design.md, held by import-linter contracts in pyproject.toml."""

from __future__ import annotations

import json
import os
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


def _cycle_edges(package: str, cwd: Path) -> list[tuple[str, str]]:
    """Direct imports a -> b where b also reaches a: each is part of an import cycle. Imports
    under ``if TYPE_CHECKING:`` are left out (annotations only, never run)."""
    code = (
        "import grimp, json\n"
        f"g = grimp.build_graph({package!r}, exclude_type_checking_imports=True)\n"
        "print(json.dumps(sorted({tuple(sorted((m, t))) for m in g.modules\n"
        "    for t in g.find_modules_directly_imported_by(m)\n"
        "    if g.find_shortest_chain(importer=t, imported=m)})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(cwd)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [tuple(pair) for pair in json.loads(out.stdout)]


def test_no_import_cycles() -> None:
    assert _cycle_edges("idp", ROOT) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """a <-> b is a cycle; a -> c -> a is not, since c names a for annotations only."""
    pkg = tmp_path / "cyclic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b, c\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    assert _cycle_edges("cyclic", tmp_path) == [("cyclic.a", "cyclic.b")]
