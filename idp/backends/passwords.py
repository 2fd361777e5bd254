"""Password hashing with passlib (the maintained ``libpass`` fork).

argon2id at OWASP's parameters (19 MiB, t=2, p=1) for new hashes; pbkdf2_sha256 and bcrypt
hashes of imported users verify and are replaced by argon2id on the next successful login.
Concurrent hashing per worker is bounded so that a login storm queues instead of exhausting
memory (each argon2id hash holds 19 MiB while it runs).
"""

from __future__ import annotations

import threading

from passlib.context import CryptContext

_CONTEXT = CryptContext(
    schemes=["argon2", "pbkdf2_sha256", "bcrypt"],
    deprecated=["pbkdf2_sha256", "bcrypt"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
)
# Verified against when the user does not exist, so unknown users cost the same time.
_DUMMY = _CONTEXT.hash("timing-equaliser-not-a-password")


class PasswordHasher:
    def __init__(self, max_concurrent: int = 2) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def hash(self, password: str) -> str:
        with self._slots:
            return _CONTEXT.hash(password)

    def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """(valid, new_hash): ``new_hash`` is set when the stored hash should be upgraded."""
        with self._slots:
            if not stored:
                _CONTEXT.verify(password, _DUMMY)
                return False, None
            try:
                return _CONTEXT.verify_and_update(password, stored)
            except ValueError:  # not a hash passlib knows: treat as a failed check
                return False, None
