"""The container of concrete parts, built once from settings (by ``create_app`` or the CLI)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .clock import Clock
from .crypto import KeyedHasher, Sealer, derive_key
from .errors import StartupError
from .keys import KeyManager
from .settings import Section, redact_url
from .storage.db import make_engine, make_session_factory
from .storage.store import make_store


def ensure_instance_dir(path: str) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        # A name of its own per process: several workers start at once and probe together.
        probe = p / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"instance dir {p} is not writable: {exc.strerror}") from None
    return p


def load_secret_key(settings: Section) -> str:
    """IDP_SECRET_KEY, else a key generated once into {instance_dir}/secret_key (0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.instance_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    # Written under a private name, then linked into place: link() fails if another worker
    # got there first, and no worker can ever read a created-but-not-yet-written file.
    tmp = path.with_name(f".secret_key-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another worker won the race: everyone uses its key
        return path.read_text().strip()
    finally:
        tmp.unlink()
    return key


@dataclass
class Services:
    settings: Section
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    store: Any
    keys: KeyManager
    secret_key: str
    hasher: KeyedHasher
    sealer: Sealer
    extras: dict[str, Any] = field(default_factory=dict)

    def check_database(self) -> None:
        """Raise StartupError with a one-line reason when the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            reason = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
            raise StartupError(
                f"database {redact_url(self.settings.database_url)} is not reachable: {reason}"
            ) from None


def build_services(settings: Section, clock: Clock | None = None) -> Services:
    clock = clock or Clock()
    ensure_instance_dir(settings.instance_dir)
    db = settings.database
    engine = make_engine(
        settings.database_url,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        connect_timeout=db.connect_timeout,
        echo=db.echo,
    )
    sessions = make_session_factory(engine)
    secret_key = load_secret_key(settings)
    # Values sealed at rest use the key-encryption key when set, else the secret key.
    seal_master = settings.keys.encryption_key or secret_key
    return Services(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        store=make_store(settings, engine, clock),
        keys=KeyManager(sessions, settings, clock),
        secret_key=secret_key,
        hasher=KeyedHasher(derive_key(secret_key, "keyed-hash")),
        sealer=Sealer(derive_key(seal_master, "sealed-values")),
    )
