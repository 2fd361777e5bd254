"""Credential backends as a chain (design idea 3).

Each backend answers three questions: does it handle this kind of credential, is it the one
for this login name, is the secret valid. The chain asks them in the configured order:
``NOT_MINE`` passes to the next backend; ``VALID`` and ``INVALID`` stop it; ``UNAVAILABLE``
(directory down) stops it with an error that is not counted as a failed attempt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class Outcome(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    NOT_MINE = "not_mine"
    UNAVAILABLE = "unavailable"


@dataclass
class Verdict:
    outcome: Outcome
    backend: str = ""
    amr: str = "pwd"
    # The local user id when the backend knows it (local store, or after JIT provisioning).
    user_id: int | None = None
    # Attributes read from the source (directory) for provisioning / refresh.
    attributes: dict[str, Any] = field(default_factory=dict)
    # A reason safe to show the user who typed the right password (expired, must change...).
    message: str | None = None
    # The password is right but must be changed before the login completes.
    must_change: bool = False


class CredentialBackend(Protocol):
    id: str

    def handles(self, kind: str) -> bool:
        """Kinds: "password" for now; OTP and WebAuthn steps have their own modules."""

    def verify(self, login: str, secret: str) -> Verdict:
        """Return NOT_MINE when ``login`` is not an account this backend serves. A backend
        with ``takes_known_user = True`` is called as ``verify(login, secret, known)``, where
        ``known`` is the user row the caller already found for ``login`` (None: not looked
        up), to use instead of reading the user again."""


class CredentialChain:
    def __init__(self, backends: list[CredentialBackend]) -> None:
        self.backends = backends

    def verify(
        self, login: str, secret: str, kind: str = "password", known: Any = None
    ) -> Verdict:
        for backend in self.backends:
            if not backend.handles(kind):
                continue
            if getattr(backend, "takes_known_user", False):
                verdict = backend.verify(login, secret, known)
            else:
                verdict = backend.verify(login, secret)
            if verdict.outcome is not Outcome.NOT_MINE:
                verdict.backend = verdict.backend or backend.id
                return verdict
        return Verdict(Outcome.NOT_MINE)
