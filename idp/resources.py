"""Where the files that live outside the ``idp`` package are found.

In a source checkout (editable install) they sit beside the package; in a wheel they are
bundled under ``idp/_bundled/`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Return the directory ``templates``, ``config`` or ``migrations``."""
    for candidate in (_PKG / "_bundled" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the IdP's {name}/ folder is missing from this installation")
