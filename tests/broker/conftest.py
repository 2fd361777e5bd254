"""Brokering tests: one real upstream IdP (a second instance of this IdP, served on a loopback
port) and one brokering IdP per module (tests/broker/broker_kit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for folder in ("oidc", "flows", "broker"):
    if str(_TESTS / folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / folder))
