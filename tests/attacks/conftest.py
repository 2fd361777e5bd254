"""The attack suite by area (issue 22) reuses the kits of the other test packages: the OIDC
helpers (tests/oidc/oidc_support.py, dpop_client.py), the SAML flow helpers (tests/flows/) and
the SCIM ones (tests/scim/scim_kit.py). Each module builds its own app."""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_TESTS / "flows"), str(_TESTS / "oidc"), str(_TESTS / "scim")]
