"""The local password store: users whose password hash lives in our database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, or_, select, update

from ..core.credentials import Outcome, Verdict
from ..storage.directory import username_key
from ..storage.models import User
from .passwords import PasswordHasher

if TYPE_CHECKING:  # the container's type only: it is built above this layer
    from ..services import Services

_LOGIN = bindparam("login")
# Three columns, not the whole user (the caller loads the user it needs itself), in a statement
# built once: reusing it skips SQLAlchemy's per-statement build and cache-key work.
_BY_LOGIN = select(User.id, User.source, User.password_hash).where(
    or_(func.lower(User.username) == _LOGIN, User.email == _LOGIN)
)
_REHASH = (
    update(User.__table__).where(User.id == bindparam("uid")).values(password_hash=bindparam("h"))
)


class LocalPasswordBackend:
    id = "local"
    takes_known_user = True  # the login's own lookup of the user spares ours

    def __init__(self, svc: Services, hasher: PasswordHasher) -> None:
        self.svc = svc
        self.hasher = hasher

    def handles(self, kind: str) -> bool:
        return kind == "password"

    def verify(self, login: str, secret: str, known: Any = None) -> Verdict:
        login = login.strip()
        user = known
        if user is None:
            # A plain connection, released before the hash: no ORM session for a read.
            with self.svc.engine.connect() as conn:
                user = conn.execute(_BY_LOGIN, {"login": username_key(login)}).first()
        if user is None or user.source not in ("local", "scim"):
            # Equal cost for unknown users: a hash is computed either way.
            self.hasher.verify(secret, None)
            return Verdict(Outcome.NOT_MINE)
        if not secret:
            return Verdict(Outcome.INVALID, user_id=user.id)
        ok, new_hash = self.hasher.verify(secret, user.password_hash)
        if not ok:
            return Verdict(Outcome.INVALID, user_id=user.id)
        if new_hash:  # imported pbkdf2/bcrypt hash, or old argon2 parameters
            with self.svc.engine.begin() as conn:
                conn.execute(_REHASH, {"uid": user.id, "h": new_hash})
        return Verdict(Outcome.VALID, user_id=user.id)
