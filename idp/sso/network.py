"""Where a sign-in may come from: the network rules (``idp.core.iprules``) of each scope,
checked against the client's address, and the audit row of every refusal.

Scopes, each with allow / deny lists (deny wins; an empty allow list lets any address in):

- ``global``: ``[ip_rules]`` (live settings), every request but health probes;
- ``admin``: ``[admin] allowed_networks``, the console; ``api``: ``[api] allowed_networks``,
  ``/api/v1`` and ``/scim/v2``;
- ``role`` / ``group``: stored rules (``idp.storage.iprules``) of every role the user holds
  (directly, through groups, through composites) and every group they are in (or below):
  each scope carrying rules must permit the address. Checked after the first factor and
  whenever an SSO session answers a relying party;
- ``client`` / ``sp``: stored rules of the OIDC client (``/oauth2/authorize``, the token
  endpoint) or the SAML SP (SSO).

A refusal writes one ``ip.denied`` audit row per scope and address per minute, so a blocked
network hammering an endpoint cannot flood the audit log."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ..core import rbac
from ..core.iprules import Rules, parse_address
from ..errors import new_reference
from ..storage import audit as audit_rows
from ..storage import iprules as stored
from ..storage.rbac import cached_graph
from ..storage.store import GenerationWatch

if TYPE_CHECKING:  # the container's type only: it is built above the hub
    from ..services import Services

# Audit rows of refusals: one per scope, key and address in this many seconds.
AUDIT_EVERY = 60


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as the web layer read it: the client's address (after the
    trusted-proxy rules, idp.web.proxies) and the request id for the audit row."""

    ip: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an address was refused: the scope (global, admin, api, role, group, client, sp),
    which one of it (a role's name, a group's path, a client_id, an entityID), and the
    reference shown to the person and written into the audit row."""

    scope: str
    key: str | None = None
    reference: str = field(default_factory=new_reference)


@lru_cache(maxsize=64)
def _setting_rules(allow: tuple[str, ...], deny: tuple[str, ...]) -> Rules:
    """Rules of a settings list pair (checked when the settings loaded), parsed once."""
    return Rules.of(allow, deny)


def setting_rules(allow: Any, deny: Any = ()) -> Rules:
    return _setting_rules(tuple(allow), tuple(deny))


def check_global(svc: Services, ip: str | None) -> Refusal | None:
    cfg = svc.settings.ip_rules
    rules = setting_rules(cfg.allow, cfg.deny)
    return None if rules.permits(ip) else Refusal("global")


def check_networks(scope: str, allowed: Any, ip: str | None) -> Refusal | None:
    """An allow-list setting (``[admin]`` / ``[api] allowed_networks``)."""
    return None if setting_rules(allowed).permits(ip) else Refusal(scope)


RULES_GENERATION_KEY = "gen:ip-rules"
_CACHED_MAX = 10_000


class StoredRulesCache:
    """The stored rules of clients and SPs, parsed once per worker, and whether any role or
    group has rules: the token endpoint, sign-in and SSO check them on every request. A worker
    reads a generation counter in the shared store at most once per ``[server]
    reload_poll_seconds``; every change of stored rules bumps it once committed
    (:func:`rules_changed`), and this worker drops its copies at once."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._rules: dict[tuple[str, str], Rules] = {}
        self._holders: bool | None = None
        self._watch = GenerationWatch(
            svc.store,
            RULES_GENERATION_KEY,
            lambda: time.monotonic(),  # read at each look (tests replace it)
            lambda: svc.settings.server.reload_poll_seconds,
        )

    def bump(self) -> None:
        self._watch.bump()
        self._forget()

    def _forget(self) -> None:
        with self._lock:
            self._rules.clear()
            self._holders = None

    def _look(self) -> None:
        if self._watch.moved():
            self._forget()

    def any_holder_rules(self, db: Session) -> bool:
        """Does any role or group carry a rule? (Most installations: none, and then a sign-in
        needs no look at the user's roles and groups.) Cached like the rules themselves."""
        self._look()
        found = self._holders
        if found is None:
            found = stored.any_holder_rules(db)
            with self._lock:
                self._holders = found
        return found

    def get(self, kind: str, key: str) -> Rules:
        self._look()
        found = self._rules.get((kind, key))
        if found is None:
            with self.svc.sessions() as db:
                lists = stored.rules_of(db, kind, key)
            found = Rules.of(lists["allow"], lists["deny"])
            with self._lock:
                if len(self._rules) >= _CACHED_MAX:
                    self._rules.clear()
                self._rules[(kind, key)] = found
        return found


def rules_cache(svc: Services) -> StoredRulesCache:
    cache = svc.ip_rules_cache
    if cache is None:
        cache = svc.ip_rules_cache = StoredRulesCache(svc)
    return cache


def rules_changed(svc: Services) -> None:
    """Call once a change of a client's or SP's stored rules is committed: every worker reloads."""
    rules_cache(svc).bump()


def _check_stored(svc: Services, kind: str, key: str | None, ip: str | None) -> Refusal | None:
    if not key:
        return None
    rules = rules_cache(svc).get(kind, key)
    return None if rules.permits(ip) else Refusal(kind, key)


def check_client(svc: Services, client_id: str | None, ip: str | None) -> Refusal | None:
    return _check_stored(svc, "client", client_id, ip)


def check_sp(svc: Services, entity_id: str | None, ip: str | None) -> Refusal | None:
    return _check_stored(svc, "sp", entity_id, ip)


def check_user(svc: Services, db: Session, user_id: int, ip: str | None) -> Refusal | None:
    """The rules of the user's roles and groups: each scope that has rules must permit ``ip``."""
    if not rules_cache(svc).any_holder_rules(db):
        return None
    graph = cached_graph(db, user_id)
    now = svc.clock.utcnow()
    role_ids = set(rbac.held_roles(graph, now))
    group_ids: set[int] = set()
    for m in graph.memberships:
        if m.expires_at is None or m.expires_at > now:
            group_ids.update(rbac.group_ancestors(m.group_id, graph.group_parent))
    address = parse_address(ip)
    for (kind, scope_id), found in sorted(stored.rules_for_holder(db, role_ids, group_ids).items()):
        if not Rules.of(found["allow"], found["deny"]).permits(address):
            names = graph.role_names if kind == "role" else graph.group_names
            return Refusal(kind, names.get(scope_id, str(scope_id)))
    return None


def record(
    svc: Services,
    refusal: Refusal,
    ip: str | None,
    *,
    request_id: str | None = None,
    user: str | None = None,
    path: str | None = None,
) -> None:
    """The ``ip.denied`` audit row of a refusal (at most one per scope, key and address per
    ``AUDIT_EVERY`` seconds). ``user``: the uuid of the person refused, when known."""
    seen = hashlib.sha256(f"{refusal.scope}|{refusal.key}|{ip}".encode()).hexdigest()[:32]
    if not svc.store.add(f"ipdenied:{seen}", 1, AUDIT_EVERY):
        return
    with svc.sessions.begin() as db:
        audit_rows.audit(
            db,
            "ip.denied",
            at=svc.clock.utcnow(),
            actor=user,
            target=refusal.key,
            ip=ip,
            request_id=request_id,
            scope=refusal.scope,
            reference=refusal.reference,
            path=path,
        )
