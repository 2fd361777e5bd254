"""LDAP / Active Directory access on ldap3: connections, searches, binds (the "ldap" credential
backend on top of it is ``ldap_login``, the import into local rows ``ldap_sync``).

RFC 4511 (search, simple bind), RFC 4513 (StartTLS §3, the unauthenticated-bind trap §5.1.2:
a simple bind with a DN and an empty password "succeeds" anonymously, so empty passwords are
refused before any bind), RFC 4515 (filter values are escaped), RFC 2696 (paged results, used by
``ldap_sync``). The password is verified by binding as the user on a fresh connection; searches
run on a small pool of service-account connections. Several server URLs fail over in order.
"""

from __future__ import annotations

import logging
import queue
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPCommunicationError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

from .. import metrics
from ..settings import Section
from . import ldap_dn

if TYPE_CHECKING:  # the container's type only: it is built above this layer
    from ..services import Services

log = logging.getLogger(__name__)

# AD's LDAP_MATCHING_RULE_IN_CHAIN: transitive group membership in one search.
IN_CHAIN = "1.2.840.113556.1.4.1941"
# rootDSE supportedCapabilities value of Active Directory (LDAP_CAP_ACTIVE_DIRECTORY_OID).
AD_CAPABILITY = "1.2.840.113556.1.4.800"
# userAccountControl ACCOUNTDISABLE.
UAC_ACCOUNTDISABLE = 0x2
# A password longer than this is refused without contacting the directory (no server needs more).
MAX_SECRET_LENGTH = 1024
UNAVAILABLE_MESSAGE = "The directory cannot be reached. Try again later."

# AD bind failures carry a sub-code in the diagnostic message: "... AcceptSecurityContext error,
# data 532, v4563". These are only returned when the password itself was right (except 775).
AD_SUBCODES = {
    "525": None,  # no such user: a plain wrong-credentials answer
    "52e": None,  # wrong password
    "530": "You may not sign in at this time of day.",
    "531": "You may not sign in from this workstation.",
    "532": "Your directory password has expired. Change it with your organization's tools, "
    "then sign in again.",
    "533": "This account is disabled in the directory.",
    "701": "This directory account has expired.",
    "773": "You must change your directory password before you can sign in. Change it with "
    "your organization's tools, then sign in again.",
    "775": "This directory account is locked. Try again later or contact your administrator.",
}
_AD_DATA_RE = re.compile(r"\bdata ([0-9a-f]{3,4})\b", re.I)
# Result codes that mean "the server cannot answer now", not "wrong password".
_BUSY_RESULTS = {51, 52, 53, 80}


class DirectoryUnavailable(Exception):
    """No configured server could be reached (or the service account cannot bind)."""


def ad_message(diagnostic: str) -> str | None:
    """The user-facing reason hidden in an AD bind failure's diagnostic message, if any."""
    match = _AD_DATA_RE.search(diagnostic or "")
    return AD_SUBCODES.get(match.group(1).lower()) if match else None


def filter_value(value: str) -> str:
    """``value`` escaped for an LDAP filter (RFC 4515 §3: ``* ( ) \\ NUL``)."""
    return escape_filter_chars(value)


def is_directory_user(user: Any) -> bool:
    """Whether ``user`` (a ``User`` row) signs in against the directory: such users change and
    reset their password with the directory's tools, not with our password reset."""
    return getattr(user, "source", None) == "ldap"


@dataclass
class DirGroup:
    dn: str
    name: str


@dataclass
class DirectoryUser:
    """What the directory says about one user, mapped to our field names."""

    dn: str
    username: str
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    external_id: str | None = None
    disabled: bool = False
    modified: str | None = None
    groups: list[DirGroup] = field(default_factory=list)

    def attributes(self) -> dict[str, Any]:
        return {
            "dn": self.dn,
            "username": self.username,
            "email": self.email,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "display_name": self.display_name,
            "groups": [g.name for g in self.groups],
        }


def server_urls(cfg: Section) -> list[str]:
    return list(cfg.urls) or ([cfg.url] if cfg.url else [])


def _attr(entry: dict[str, Any], name: str) -> list[Any]:
    """Attribute values of a search entry, by case-insensitive name."""
    if not name:
        return []
    for key, values in entry.get("attributes", {}).items():
        if key.lower() == name.lower():
            return values if isinstance(values, list) else [values]
    return []


def _first(entry: dict[str, Any], name: str) -> str | None:
    for value in _attr(entry, name):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        text = str(value).strip()
        if text:
            return text
    return None


def _external_id(entry: dict[str, Any], name: str) -> str | None:
    """entryUUID is text; AD's objectGUID is 16 raw bytes in little-endian GUID order."""
    for key, values in entry.get("raw_attributes", {}).items():
        if key.lower() == name.lower() and values:
            raw = values[0]
            if len(raw) == 16:
                return str(uuid.UUID(bytes_le=bytes(raw)))
            return raw.decode("utf-8", "replace").strip() or None
    return None


class LdapConnector:
    """Servers in failover order, TLS, and a pool of service-account connections.

    ldap3 connections are not thread-safe, so each thread borrows one from the pool and gives
    it back. A server that fails is skipped for ``server_retry_seconds`` (then tried again); when
    every server is marked down they are all tried anyway rather than failing blind.
    """

    def __init__(self, cfg: Section) -> None:
        self.cfg = cfg
        self.servers = [self._server(url) for url in server_urls(cfg)]
        self._down_until = [0.0] * len(self.servers)
        self._lock = threading.Lock()
        self._pool: queue.LifoQueue[Connection] = queue.LifoQueue(maxsize=cfg.pool_size)
        self._is_ad: bool | None = None

    def _tls(self) -> Tls:
        if not self.cfg.tls_verify:
            return Tls(validate=ssl.CERT_NONE)
        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.cfg.ca_file or None)

    def _server(self, url: str) -> Server:
        parts = urlsplit(url)
        secure = parts.scheme == "ldaps"
        return Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=self._tls(),
            get_info=NONE,
            connect_timeout=self.cfg.connect_timeout,
        )

    def _order(self) -> list[int]:
        now = time.monotonic()
        with self._lock:
            up = [i for i, t in enumerate(self._down_until) if t <= now]
            down = [i for i, t in enumerate(self._down_until) if t > now]
        return up + sorted(down, key=lambda i: self._down_until[i])

    def _mark_down(self, index: int) -> None:
        metrics.backend_error("ldap")
        with self._lock:
            self._down_until[index] = time.monotonic() + self.cfg.server_retry_seconds

    def connect(self, user: str | None, password: str | None) -> tuple[Connection, bool]:
        """Open a connection to the first server that answers and bind as ``user``.

        Returns the connection and whether the bind succeeded (its ``result`` says why not).
        Raises DirectoryUnavailable when no server can be reached.
        """
        reasons = []
        for index in self._order():
            server = self.servers[index]
            conn = Connection(
                server,
                user=user,
                password=password,
                authentication=SIMPLE if user else None,
                receive_timeout=self.cfg.receive_timeout,
                raise_exceptions=False,
                auto_referrals=False,
                read_only=True,
            )
            try:
                conn.open()
                if self.cfg.start_tls and not server.ssl:
                    conn.start_tls()
                ok = conn.bind()
            except (LDAPCommunicationError, LDAPStartTLSError, LDAPCertificateError) as exc:
                self._mark_down(index)
                conn.unbind()
                reasons.append(f"{server.host}:{server.port}: {exc}")
                continue
            except LDAPException as exc:
                # ldap3 refused the credentials themselves (not the server's fault): a failed
                # bind, never a reason to mark a server down on a user's input.
                conn.unbind()
                conn.result = {"result": 49, "description": "invalidCredentials", "message": ""}
                log.info("ldap: bind refused by the client library: %s", type(exc).__name__)
                return conn, False
            if not ok and conn.result.get("result") in _BUSY_RESULTS:
                self._mark_down(index)
                conn.unbind()
                reasons.append(f"{server.host}:{server.port}: {conn.result.get('description')}")
                continue
            return conn, ok
        raise DirectoryUnavailable("; ".join(reasons) or "no LDAP server is configured")

    def _service_connection(self) -> Connection:
        conn, ok = self.connect(self.cfg.bind_dn or None, self.cfg.bind_password or None)
        if not ok:
            reason = conn.result.get("description")
            conn.unbind()
            # A service account that cannot bind is a configuration problem: every directory
            # login would fail, so it is an outage, not the user's wrong password.
            raise DirectoryUnavailable(f"the service account cannot bind: {reason}")
        return conn

    @contextmanager
    def service(self) -> Iterator[Connection]:
        """Borrow a service-account connection; a broken one is dropped, not returned."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._service_connection()
        try:
            yield conn
        except BaseException:
            conn.unbind()
            raise
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.unbind()

    def run(self, operation: Any) -> Any:
        """Run ``operation(conn)`` on a service connection; if that connection turns out to be
        dead (server stopped since it was pooled), fail over once to a fresh one."""
        for attempt in range(2):
            try:
                with self.service() as conn:
                    return operation(conn)
            except LDAPCommunicationError as exc:
                metrics.backend_error("ldap")
                if attempt:
                    raise DirectoryUnavailable(str(exc)) from None
            except LDAPException as exc:
                raise DirectoryUnavailable(str(exc)) from None
        raise DirectoryUnavailable("no LDAP server answered")  # pragma: no cover

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().unbind()
            except queue.Empty:
                return

    # --- reading the directory -----------------------------------------------------------------

    def user_attributes(self) -> list[str]:
        cfg = self.cfg
        names = [
            cfg.username_attribute,
            cfg.email_attribute,
            cfg.given_name_attribute,
            cfg.family_name_attribute,
            cfg.display_name_attribute,
            cfg.uuid_attribute,
            cfg.user_account_control_attribute,
            cfg.modify_timestamp_attribute,
        ]
        if cfg.group_membership == "memberof":
            names.append(cfg.member_of_attribute)
        return sorted({n for n in names if n})

    def to_user(self, entry: dict[str, Any]) -> DirectoryUser | None:
        cfg = self.cfg
        username = _first(entry, cfg.username_attribute)
        if not username:
            return None
        uac = _first(entry, cfg.user_account_control_attribute)
        numeric = bool(uac) and uac.isascii() and uac.lstrip("-").isdigit()
        disabled = bool(numeric and int(uac) & UAC_ACCOUNTDISABLE)
        return DirectoryUser(
            dn=entry["dn"],
            username=username,
            email=_first(entry, cfg.email_attribute),
            given_name=_first(entry, cfg.given_name_attribute),
            family_name=_first(entry, cfg.family_name_attribute),
            display_name=_first(entry, cfg.display_name_attribute),
            external_id=_external_id(entry, cfg.uuid_attribute) if cfg.uuid_attribute else None,
            disabled=disabled,
            modified=_first(entry, cfg.modify_timestamp_attribute),
        )

    def find_user(self, conn: Connection, login: str) -> tuple[list[dict[str, Any]], bool]:
        """Entries matching the login name (at most 2: more than one is ambiguous)."""
        search_filter = self.cfg.user_filter.replace("{username}", filter_value(login))
        conn.search(
            self.cfg.user_base_dn,
            search_filter,
            SUBTREE,
            attributes=self.user_attributes(),
            size_limit=2,
            time_limit=self.cfg.receive_timeout,
        )
        self.check(conn, allow={4})  # sizeLimitExceeded: two entries are enough to know
        return _entries(conn), conn.result.get("result") == 4

    def read_user(self, conn: Connection, dn: str) -> dict[str, Any] | None:
        """The entry at ``dn`` if it still exists and still matches the user filter."""
        base_filter = self.sync_filter()
        conn.search(dn, base_filter, BASE, attributes=self.user_attributes())
        self.check(conn, allow={32})  # noSuchObject: the user is gone
        entries = _entries(conn)
        return entries[0] if entries else None

    def sync_filter(self) -> str:
        return self.cfg.sync_filter or self.cfg.user_filter.replace("{username}", "*")

    def check(self, conn: Connection, allow: set[int] = frozenset()) -> None:
        code = conn.result.get("result", 0)
        if code and code not in allow:
            raise DirectoryUnavailable(
                f"search failed: {conn.result.get('description')} {conn.result.get('message')}"
            )

    def is_active_directory(self, conn: Connection) -> bool:
        if self._is_ad is None:
            conn.search("", "(objectClass=*)", BASE, attributes=["supportedCapabilities"])
            entries = _entries(conn)
            caps = [str(v) for v in _attr(entries[0], "supportedCapabilities")] if entries else []
            self._is_ad = AD_CAPABILITY in caps
        return self._is_ad

    def nested_mode(self, conn: Connection) -> str:
        mode = self.cfg.nested_groups
        if mode == "auto":
            return "in_chain" if self.is_active_directory(conn) else "recursive"
        return mode

    def groups_of(
        self,
        conn: Connection,
        user: DirectoryUser,
        entry: dict[str, Any],
        parents_cache: dict[str, list[DirGroup]] | None = None,
    ) -> list[DirGroup]:
        """Every group the user is in, directly or (per ``nested_groups``) through other groups.
        ``parents_cache`` (dn -> its direct groups) lets a sync look each group up once."""
        cfg = self.cfg
        base = cfg.group_base_dn or cfg.user_base_dn
        mode = self.nested_mode(conn)
        if mode == "in_chain":
            in_chain = f"(member:{IN_CHAIN}:={filter_value(user.dn)})"
            return self._search_groups(conn, base, in_chain)
        cache = {} if parents_cache is None else parents_cache
        if cfg.group_membership == "memberof":
            direct = self._groups_from_dns(
                conn, [str(v) for v in _attr(entry, cfg.member_of_attribute)], base, cache
            )
        else:
            direct = self._direct_groups(conn, base, user.dn, cache)
        found = {ldap_dn.normalized(g.dn): g for g in direct}
        if mode == "recursive":
            frontier = list(direct)
            for _ in range(cfg.nested_groups_max_depth):
                next_frontier = []
                for group in frontier:
                    for parent in self._parents(conn, base, group.dn, cache):
                        if ldap_dn.normalized(parent.dn) not in found:
                            found[ldap_dn.normalized(parent.dn)] = parent
                            next_frontier.append(parent)
                if not next_frontier:
                    break
                frontier = next_frontier
        return sorted(found.values(), key=lambda g: g.name.lower())

    def _direct_groups(
        self, conn: Connection, base: str, dn: str, cache: dict[str, list[DirGroup]]
    ) -> list[DirGroup]:
        key = dn.lower()
        if key not in cache:
            group_filter = self.cfg.group_filter.replace("{user_dn}", filter_value(dn))
            cache[key] = self._search_groups(conn, base, group_filter)
        return cache[key]

    def _parents(
        self, conn: Connection, base: str, dn: str, cache: dict[str, list[DirGroup]]
    ) -> list[DirGroup]:
        if self.cfg.group_membership == "search":
            return self._direct_groups(conn, base, dn, cache)
        key = "memberof:" + dn.lower()
        if key not in cache:
            conn.search(dn, "(objectClass=*)", BASE, attributes=[self.cfg.member_of_attribute])
            self.check(conn, allow={32})
            entries = _entries(conn)
            dns = (
                [str(v) for v in _attr(entries[0], self.cfg.member_of_attribute)] if entries else []
            )
            cache[key] = self._groups_from_dns(conn, dns, base, cache)
        return cache[key]

    def _groups_from_dns(
        self, conn: Connection, dns: list[str], base: str, cache: dict[str, list[DirGroup]]
    ) -> list[DirGroup]:
        groups = []
        for dn in dns:
            # memberOf lists every group; only those under the group base count, compared RDN
            # by RDN: "cn=x,ou=a\\,ou=groups,dc=corp" is not under "ou=groups,dc=corp".
            if not ldap_dn.within(dn, base):
                continue
            key = "name:" + ldap_dn.normalized(dn)
            if key not in cache:
                cache[key] = [DirGroup(dn, self._group_name(conn, dn))]
            groups.extend(g for g in cache[key] if g.name)
        return groups

    def _group_name(self, conn: Connection, dn: str) -> str:
        attr = self.cfg.group_name_attribute
        rdn_attr, rdn_value = ldap_dn.first_value(dn)
        if rdn_attr.lower() == attr.lower():
            return rdn_value
        conn.search(dn, "(objectClass=*)", BASE, attributes=[attr])
        self.check(conn, allow={32})
        entries = _entries(conn)
        return (_first(entries[0], attr) or "") if entries else ""

    def _search_groups(self, conn: Connection, base: str, search_filter: str) -> list[DirGroup]:
        attr = self.cfg.group_name_attribute
        conn.search(base, search_filter, SUBTREE, attributes=[attr])
        self.check(conn, allow={32})
        groups = []
        for entry in _entries(conn):
            name = _first(entry, attr)
            if name:
                groups.append(DirGroup(entry["dn"], name))
        return groups


def _entries(conn: Connection) -> list[dict[str, Any]]:
    # Referrals (AD answers them for other domains) are not entries.
    return [e for e in (conn.response or []) if e.get("type") == "searchResEntry"]


def ldap_connector(svc: Services) -> LdapConnector:
    """The process-wide connector (its pool is shared by the backend, sync and the CLI)."""
    return svc.ldap_connector
