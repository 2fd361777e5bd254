"""An initialised instance directory (migrated SQLite database, signing keys, role templates)
made once per process and copied for each app that needs one.

`idp init` (tests/support.py ``init_database``) takes seconds; a mutation run (tests/
mutation_kit.py) builds a module's app again for every mutant, in a child forked from a process
that has already made the template, so there the copy is nearly all that is left. Only for
SQLite instances under the default database URL.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from support import base_overrides, init_database

_template: Path | None = None


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # not from a forked child: the parent still copies it
        shutil.rmtree(path.parent, ignore_errors=True)


def initialised(instance: Path, **settings: Any) -> dict[str, Any]:
    """``base_overrides(instance, **settings)`` with ``instance`` initialised as by `idp init`."""
    global _template
    overrides = base_overrides(instance, **settings)
    if "database_url" in overrides:  # the PostgreSQL tier: the instance's own database
        init_database(overrides)
        return overrides
    if _template is None or not _template.is_dir():
        template = Path(tempfile.mkdtemp(prefix="idp-instance-")) / "instance"
        template.mkdir()
        init_database(base_overrides(template))
        atexit.register(_remove, template, os.getpid())
        _template = template
    shutil.copytree(_template, instance, dirs_exist_ok=True)
    return overrides
