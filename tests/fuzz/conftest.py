"""The fuzz tests reuse the SAML flow helpers (tests/flows/saml_support.py) and the OIDC ones
(tests/oidc/oidc_support.py) and SCIM ones (tests/scim/scim_kit.py)."""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_TESTS / "flows"), str(_TESTS / "oidc"), str(_TESTS / "scim")]
