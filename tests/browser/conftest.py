"""The browser tier's fixtures (browser_kit: a served app, Debian's Chromium, a page) for every
module in this folder, and the import path to the shared test helpers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from browser_kit import (  # noqa: E402, F401 (fixtures)
    browser_fixture,
    page_fixture,
    serve_fixture,
    server_fixture,
)
