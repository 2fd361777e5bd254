"""The fuzz tests reuse the SAML flow helpers (tests/flows/saml_support.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "flows"))
