"""docs/security.md names the test that holds each row: every name it gives must exist, or the
table promises protection nobody checks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_security_md_exists():
    """A renamed or deleted test shows up here instead of leaving a row without a guard."""
    text = (ROOT / "docs" / "security.md").read_text()
    missing = []
    named = 0
    for row in text.splitlines():
        if not row.startswith("|"):
            continue
        current = None
        for path, name in re.findall(r"(tests/[\w/]+\.py)?(?:::(\w+))?", row):
            if path:
                current = path
            if current is None:
                continue
            source = ROOT / current
            if not source.is_file():
                missing.append(current)
                continue
            if name:
                named += 1
                if not re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.M):
                    missing.append(f"{current}::{name}")
    assert named > 50
    assert not missing, missing
