"""Typed errors. Each carries what its surface needs to answer without a stack trace."""

from __future__ import annotations

import secrets


class IdPError(Exception):
    """Base of every error the IdP raises on purpose."""


class ConfigError(IdPError):
    """Settings that cannot be used; the CLI prints the message and exits 2."""


class StartupError(IdPError):
    """A dependency needed at start (database, instance dir, port) is not usable; exit 1."""


class NotFound(IdPError):
    pass


class Conflict(IdPError):
    """The request would break a uniqueness or integrity rule (duplicate name, cycle...)."""


class Forbidden(IdPError):
    """The actor may not do this; the message names the missing permission (HTTP 403)."""


class ValidationError(IdPError):
    """Input that fails a rule; the message is safe to show to the person who sent it."""


def new_reference() -> str:
    """A short id shown to the user on an error page and written to the log beside the cause."""
    return secrets.token_hex(6)
