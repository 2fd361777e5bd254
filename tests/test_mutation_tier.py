"""The mutation tier: mutmut over a security-critical target of tests/mutation_kit.py with its
fast tests must kill at least 90 % of the mutants that are not listed as equivalent, so a
boundary-moving change there cannot pass the suite unnoticed.

Every target at or above the floor is in FLOORED; a run of all of them takes longer than CI
should (docs/development.md "Mutation testing" has the times), so the default run takes the
fast ones (EVERY_RUN) and one more of the others in turn, by the day of the year.
``IDP_TEST_MUTATION_TARGETS=all`` (or a comma-separated list) chooses instead;
``IDP_TEST_MUTATION_CHILDREN`` sets mutmut's parallel children (2)."""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path

import pytest
from mutation_kit import ROOT, TARGETS, kill_rate, run

FLOOR = 0.90
# target -> the fewest mutants a complete run of it has (fewer: mutmut did not reach them all).
FLOORED = {
    "lockout": 50,
    "totp": 100,
    "client_auth": 150,
    "csrf": 55,
    "pkce": 50,
    "redirect": 140,
    "refresh": 250,
    "saml_inbound": 550,
}
EVERY_RUN = ("lockout", "totp")
IN_TURN = tuple(sorted(set(FLOORED) - set(EVERY_RUN)))


def chosen(today: datetime.date | None = None, setting: str | None = None) -> list[str]:
    setting = os.environ.get("IDP_TEST_MUTATION_TARGETS", "") if setting is None else setting
    if setting.strip() == "all":
        return list(FLOORED)
    if setting.strip():
        return [name.strip() for name in setting.split(",") if name.strip()]
    day = (today or datetime.date.today()).timetuple().tm_yday
    return [*EVERY_RUN, IN_TURN[day % len(IN_TURN)]]


def test_the_mutmut_table_is_the_union_of_the_targets():
    """pyproject.toml [tool.mutmut] (a plain `mutmut run`) covers exactly the targets, and each
    names files and tests that exist."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    files = {f for t in TARGETS.values() for f in t.files}
    tests = {f for t in TARGETS.values() for f in t.tests}
    assert set(table["only_mutate"]) == files
    assert set(table["pytest_add_cli_args_test_selection"]) == tests
    assert all((ROOT / p).is_file() for p in files | tests)


def test_every_target_in_turn_comes_round_and_the_choice_can_be_named():
    assert set(FLOORED) <= set(TARGETS)
    days = {
        name
        for day in range(len(IN_TURN))
        for name in chosen(datetime.date(2026, 1, 1) + datetime.timedelta(day), "")
    }
    assert days == set(FLOORED)
    assert chosen(setting="all") == list(FLOORED)
    assert chosen(setting="totp, csrf") == ["totp", "csrf"]


@pytest.mark.slow
@pytest.mark.parametrize("name", chosen())
def test_mutmut_kills_at_least_90_percent_of_the_mutants(tmp_path: Path, name: str):
    children = int(os.environ.get("IDP_TEST_MUTATION_CHILDREN", "2"))  # a shared machine: 1
    found = run(name, max_children=children, timeout=900, work=tmp_path)
    assert sum(found.values()) >= FLOORED[name], found  # mutmut ran over the whole target
    assert found.get("not checked", 0) == 0, found
    assert kill_rate(found) >= FLOOR, found
