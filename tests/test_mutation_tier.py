"""The mutation tier: mutmut over the lockout counters (idp/backends/lockout.py) with their fast
tests must kill at least 90 % of the mutants, so a boundary-moving change there cannot pass the
suite unnoticed. The other targets of tests/mutation_kit.py take longer than a test run should:
docs/development.md "Mutation testing" has the command and their last rates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from mutation_kit import ROOT, TARGETS, kill_rate, run

FLOOR = 0.90


def test_the_mutmut_table_is_the_union_of_the_targets():
    """pyproject.toml [tool.mutmut] (a plain `mutmut run`) covers exactly the targets, and each
    names files and tests that exist."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = {f for t in TARGETS.values() for f in t.files}
    tests = {f for t in TARGETS.values() for f in t.tests}
    assert set(table["only_mutate"]) == files
    assert set(table["pytest_add_cli_args_test_selection"]) == tests
    assert all((ROOT / p).is_file() for p in files | tests)


@pytest.mark.slow
def test_mutmut_kills_at_least_90_percent_of_the_lockout_mutants(tmp_path: Path):
    found = run("lockout", timeout=300, work=tmp_path)
    assert sum(found.values()) > 50, found  # mutmut ran over the whole module
    assert found.get("not checked", 0) == 0, found
    assert kill_rate(found) >= FLOOR, found
