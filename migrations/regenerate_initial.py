"""Development only, until the first release: rewrite 0001_initial_schema.py from the models.

Run after changing ``idp/storage/models.py``:  .venv/bin/python migrations/regenerate_initial.py
Once a release has shipped, never do this again: add a new revision with
``alembic revision --autogenerate`` instead, so existing databases can upgrade.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from alembic import command

from idp.storage.migrate import alembic_config

HERE = Path(__file__).resolve().parent
TARGET = HERE / "versions" / "0001_initial_schema.py"


def main() -> None:
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(url=f"sqlite:///{tmp}/gen.db")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    text = TARGET.read_text()
    # Partial-index predicates must be SQL text, not bare strings, for SQLite's DDL compiler.
    text = re.sub(r"(sqlite|postgresql)_where='([^']*)'", r"\1_where=sa.text('\2')", text)
    text = re.sub(r"Create Date: .*\n", "", text).replace("Revises: \n", "Revises:\n")
    TARGET.write_text(text)
    print(f"rewrote {TARGET.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
