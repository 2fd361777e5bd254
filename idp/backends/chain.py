"""Builds the credential chain from ``[auth] backends`` once per process (design idea 9)."""

from __future__ import annotations

from collections.abc import Callable

from ..core.credentials import CredentialBackend, CredentialChain
from ..errors import ConfigError
from ..services import Services
from .passwords import PasswordHasher


def _local(svc: Services) -> CredentialBackend:
    from .local import LocalPasswordBackend

    return LocalPasswordBackend(svc, password_hasher(svc))


def _ldap(svc: Services) -> CredentialBackend:
    from .ldap_login import ldap_backend

    return ldap_backend(svc)


# Backend id -> factory. Another backend registers here.
FACTORIES: dict[str, Callable[[Services], CredentialBackend]] = {"local": _local, "ldap": _ldap}


def password_hasher(svc: Services) -> PasswordHasher:
    hasher = svc.extras.get("password_hasher")
    if hasher is None:
        hasher = svc.extras["password_hasher"] = PasswordHasher(
            svc.settings.auth.max_concurrent_hashes
        )
    return hasher


def credential_chain(svc: Services) -> CredentialChain:
    chain = svc.extras.get("credential_chain")
    if chain is None:
        backends = []
        for name in svc.settings.auth.backends:
            if name not in FACTORIES:
                raise ConfigError(f"auth.backends names an unknown backend {name!r}")
            backends.append(FACTORIES[name](svc))
        chain = svc.extras["credential_chain"] = CredentialChain(backends)
    return chain
