"""The policy settings set with ``idp config apply``, kept in ``applied_settings``.

``read_applied`` is what a node does once at start (``idp.services.load_effective_settings``):
the rows become the "applied" layer of ``idp.settings.load_settings``, over the TOML file and
under the environment. The other functions work in the caller's session.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..errors import StartupError
from ..settings import Section, redact_url
from .db import make_engine
from .models import RbacState
from .models_config import AppliedSetting

Applied = dict[str, dict[str, Any]]

# The settings generation: row 3 of the shared generation table ``rbac_state`` (1: RBAC,
# 2: claim rules), bumped in the same transaction as every stored change, so each worker of
# each node sees with one primary-key read whether its settings are still current.
SETTINGS_STATE_ID = 3


def generation(db: Session) -> int:
    return int(
        db.scalar(select(RbacState.generation).where(RbacState.id == SETTINGS_STATE_ID)) or 0
    )


def bump_generation(db: Session) -> None:
    done = db.execute(
        update(RbacState)
        .where(RbacState.id == SETTINGS_STATE_ID)
        .values(generation=RbacState.generation + 1)
    )
    if done.rowcount == 0:
        db.add(RbacState(id=SETTINGS_STATE_ID, generation=1))
        db.flush()


def rows(db: Session) -> Applied:
    """{section: {key: value}} of every stored policy setting."""
    out: Applied = {}
    for row in db.scalars(
        select(AppliedSetting).order_by(AppliedSetting.section, AppliedSetting.key)
    ):
        out.setdefault(row.section, {})[row.key] = row.value
    return out


def put(db: Session, section: str, key: str, value: Any, at: datetime) -> None:
    row = db.get(AppliedSetting, (section, key))
    if row is None:
        db.add(AppliedSetting(section=section, key=key, value=value, updated_at=at))
    else:
        row.value = value
        row.updated_at = at
    db.flush()


def drop(db: Session, section: str, key: str) -> bool:
    row = db.get(AppliedSetting, (section, key))
    if row is None:
        return False
    db.delete(row)
    db.flush()
    return True


def read_applied(settings: Section) -> Applied:
    """The stored policy settings, read with a short-lived connection before the services
    exist. Nothing stored yet (no database file, a database ``idp init`` has not migrated): {}.
    A database that cannot be read stops the start: running with the TOML file's policies
    while stricter ones were applied would weaken sign-in without anybody noticing."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or not Path(url.database).exists():
            return {}
    engine = make_engine(settings.database_url, connect_timeout=settings.database.connect_timeout)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(AppliedSetting.__tablename__):
                return {}
            with Session(bind=conn) as db:
                return rows(db)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StartupError(
            f"database {redact_url(settings.database_url)} is not reachable: {reason} "
            "(reading the applied configuration)"
        ) from None
    finally:
        engine.dispose()
