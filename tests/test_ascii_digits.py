"""Numbers from requests are read as ASCII digits only. ``str.isdigit()`` is true for
superscripts ("¹", which ``int()`` then refuses: a 500) and for other scripts' digits ("٣",
which ``int()`` reads as 3): every use that leads to ``int()`` checks ``isascii()`` too."""

from __future__ import annotations

import re
from pathlib import Path

IDP = Path(__file__).resolve().parent.parent / "idp"
# Uses that never reach int(): a typed code compared as text, a password composition rule.
ALLOWED = {
    ("backends/otp_delivery.py", "typed.isdigit()"),
    ("core/policy.py", "c.isdigit()"),
}


def test_every_isdigit_is_an_ascii_check():
    found = []
    for path in sorted(IDP.rglob("*.py")):
        rel = path.relative_to(IDP).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for use in re.findall(r"[\w.\[\]\"'()-]*\.isdigit\(\)", line):
                if "isascii()" in line or any(rel == f and a in use for f, a in ALLOWED):
                    continue
                found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []
