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


def _expression_indexes() -> list[tuple[str, str, list[str], bool]]:
    """(name, table, SQL expressions, unique) of indexes on expressions such as lower(x):
    autogenerate skips them (SQLite cannot reflect them), so they are written here."""
    from sqlalchemy.sql.elements import TextClause

    from idp.storage.models import Base

    found = []
    for table in Base.metadata.sorted_tables:
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            exprs = list(index.expressions)
            if exprs and all(isinstance(e, TextClause) for e in exprs):
                found.append((index.name, table.name, [e.text for e in exprs], index.unique))
    return found


def _with_expression_indexes(text: str) -> str:
    creates, drops = [], []
    for name, table, exprs, unique in _expression_indexes():
        cols = ", ".join(f"sa.text({e!r})" for e in exprs)
        creates.append(f"    op.create_index({name!r}, {table!r}, [{cols}], unique={unique})\n")
        drops.append(f"    op.drop_index({name!r}, table_name={table!r})\n")
    if not creates:
        return text
    up_end = text.index("    # ### end Alembic commands ###", text.index("def upgrade()"))
    text = text[:up_end] + "".join(creates) + text[up_end:]
    down_start = text.index("    # ### commands auto generated", text.index("def downgrade()"))
    down_start = text.index("\n", down_start) + 1
    return text[:down_start] + "".join(drops) + text[down_start:]


def main() -> None:
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(url=f"sqlite:///{tmp}/gen.db")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    text = TARGET.read_text()
    # Partial-index predicates must be SQL text, not bare strings, for SQLite's DDL compiler.
    text = re.sub(r"(sqlite|postgresql)_where='([^']*)'", r"\1_where=sa.text('\2')", text)
    text = re.sub(r"Create Date: .*\n", "", text).replace("Revises: \n", "Revises:\n")
    text = _with_expression_indexes(text)
    TARGET.write_text(text)
    print(f"rewrote {TARGET.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
