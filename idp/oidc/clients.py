"""Clients as authlib sees them, cached per worker with invalidation across workers.

A worker keeps parsed clients and checks a generation counter in the shared store at most once a
second; any change to a client (registration, update, deletion) bumps it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import select

from ..core.client_metadata import is_loopback_host, safe_uri
from ..services import Services
from ..storage.models import Client, ClientServiceRole
from ..storage.store import GenerationWatch

GENERATION_KEY = "gen:clients"


def previous_secret_key(client_id: str) -> str:
    """Where the keyed hash of a rotated-out secret waits out its grace period (an entry of
    the short-lived store whose TTL is the grace period; ``idp.manage.clients.rotate_secret``)."""
    return f"client:previous-secret:{client_id}"


@dataclass
class OAuthClient(ClientMixin):
    client_id: str
    name: str
    meta: dict[str, Any]
    secret_hash: str | None
    secret_enc: str | None
    first_party: bool
    service_role_ids: list[int] = field(default_factory=list)
    _hasher: Any = None
    _store: Any = None

    # --- what authlib asks -----------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    @property
    def auth_method(self) -> str:
        return self.meta.get("token_endpoint_auth_method", "client_secret_basic")

    @property
    def is_public(self) -> bool:
        return self.auth_method == "none"

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.meta.get("redirect_uris", []))

    def get_default_redirect_uri(self) -> str | None:
        # Only a client with exactly one registered URI may omit redirect_uri (OIDC requires
        # it anyway; conformance: two registered URIs and none sent -> error page).
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.meta.get("scope", "").split()
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match (RFC 9700 §2.1); for loopback http URIs the port may differ
        (RFC 8252 §7.3: native apps listen on an ephemeral port)."""
        if redirect_uri in self.redirect_uris:
            return True
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not is_loopback_host(parts.hostname):
            return False
        for registered in self.redirect_uris:
            reg = urlsplit(registered)
            if (
                reg.scheme == "http"
                and reg.hostname == parts.hostname
                and urlunsplit(reg._replace(netloc=reg.hostname or ""))
                == urlunsplit(parts._replace(netloc=parts.hostname or ""))
                and "@" not in parts.netloc
            ):
                return True
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        if self._hasher.verify(client_secret, self.secret_hash):
            return True
        # A secret rotated out with a grace period still counts until that period ends.
        previous = self._store.get(previous_secret_key(self.client_id)) if self._store else None
        return bool(previous) and self._hasher.verify(client_secret, previous)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.meta.get("response_types", ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.meta.get("grant_types", [])

    # --- our own settings ------------------------------------------------------------------------

    def setting(self, key: str, default: Any = None) -> Any:
        return self.meta.get(key, default)

    def shown_uri(self, key: str) -> str | None:
        """A stored URI for a page (logo, policy, terms), or None when today's rules refuse it:
        rows written before the one validator existed may hold ``javascript:`` and the like."""
        uri = self.meta.get(key)
        return uri if uri and safe_uri(key, uri) else None


class ClientCache:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._clients: dict[str, OAuthClient | None] = {}
        # Once a second by the app's clock (tests move it), whatever reload_poll_seconds says.
        self._watch = GenerationWatch(
            svc.store, GENERATION_KEY, lambda: svc.clock.now(), lambda: 1.0
        )

    def bump(self) -> None:
        """Call after any change to any client: every worker reloads."""
        self._watch.bump()

    def _fresh(self) -> None:
        if self._watch.moved():
            with self._lock:
                self._clients.clear()

    def get(self, client_id: str | None) -> OAuthClient | None:
        if not client_id or not isinstance(client_id, str) or len(client_id) > 255:
            return None
        self._fresh()
        if client_id in self._clients:
            return self._clients[client_id]
        with self.svc.sessions() as db:
            row = db.get(Client, client_id)
            client = None
            if row is not None and row.enabled:
                roles = list(
                    db.scalars(
                        select(ClientServiceRole.role_id).where(
                            ClientServiceRole.client_id == client_id
                        )
                    )
                )
                client = OAuthClient(
                    row.client_id,
                    row.name or row.client_id,
                    dict(row.meta),
                    row.secret_hash,
                    row.secret_enc,
                    row.first_party,
                    roles,
                    self.svc.hasher,
                    self.svc.store,
                )
        with self._lock:
            if len(self._clients) > 10000:
                self._clients.clear()
            self._clients[client_id] = client
        return client


def client_cache(svc: Services) -> ClientCache:
    cache = svc.oidc_client_cache
    if cache is None:
        cache = svc.oidc_client_cache = ClientCache(svc)
    return cache
