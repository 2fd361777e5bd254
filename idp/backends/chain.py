"""Builds the credential chain from ``[auth] backends`` once per app (design idea 9): each
backend has an id and a factory; ``Services.credential_backends`` holds them (the built-ins
below, plus any added with :func:`register_credential_backend` while the app is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.credentials import CredentialBackend, CredentialChain
from ..errors import ConfigError
from .passwords import PasswordHasher

if TYPE_CHECKING:  # the container's type only: it is built above this layer
    from ..services import BackendFactory, Services


def _local(svc: Services) -> CredentialBackend:
    from .local import LocalPasswordBackend

    return LocalPasswordBackend(svc, svc.password_hasher)


def _ldap(svc: Services) -> CredentialBackend:
    from .ldap_login import ldap_backend

    return ldap_backend(svc)


# Backend id -> factory: the built-ins every app starts with.
BUILT_IN_BACKENDS: dict[str, BackendFactory] = {"local": _local, "ldap": _ldap}


def register_credential_backend(svc: Services, backend_id: str, factory: BackendFactory) -> None:
    """Make a backend available to this app as ``[auth] backends = [..., "<backend_id>"]``;
    before the chain is first used (while the app is built)."""
    svc.credential_backends[backend_id] = factory


def build_chain(svc: Services) -> CredentialChain:
    backends = []
    for name in svc.settings.auth.backends:
        if name not in svc.credential_backends:
            raise ConfigError(f"auth.backends names an unknown backend {name!r}")
        backends.append(svc.credential_backends[name](svc))
    return CredentialChain(backends)


def password_hasher(svc: Services) -> PasswordHasher:
    return svc.password_hasher


def credential_chain(svc: Services) -> CredentialChain:
    return svc.credential_chain
