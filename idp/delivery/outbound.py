"""Outbound HTTP: the one way the IdP connects to a URL someone else chose (a client's jwks_uri,
sector_identifier_uri and back-channel logout URIs, SAML metadata URLs, outbound SCIM targets).
It sits below the engines so that every layer that connects out (``idp.oidc``, ``idp.manage``,
``idp.provisioning``) uses this same guard.

Clients and administrators choose these URLs, so without care they let anyone who can register
a client make the IdP reach inside its own network (SSRF: cloud metadata at 169.254.169.254,
admin ports on loopback, hosts on RFC 1918 networks). Every request here:

1. is https, unless ``[outbound] allow_http`` is on;
2. resolves the host once and refuses the request when ANY resolved address is loopback,
   private (RFC 1918, RFC 4193 fc00::/7, shared 100.64/10), link-local (169.254/16, fe80::/10),
   unspecified, multicast, reserved or otherwise not global (IPv4-mapped, NAT64 and 6to4
   IPv6 addresses are judged by the IPv4 address inside), unless
   ``[outbound] allow_private_addresses`` is on;
3. connects to an address it checked (never resolves again, so DNS rebinding between the check
   and the connection cannot move it), keeping the host name for TLS (SNI and certificate
   checks) and the Host header;
4. follows no redirect, asks for no compression, and bounds the connection time, the whole
   answer's time (``[outbound] timeout``) and its size (``[outbound] max_bytes``);
5. remembers a failed destination for ``[outbound] failure_cache_seconds`` in the shared store,
   so that one bad client cannot make every worker hammer a host.

Failures are ``OutboundError`` with a short reason that is safe to log and to show the client.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the container builds this guard on first use; no import cycle
    from ..services import Services

log = logging.getLogger("idp.outbound")

_FAILED = "outbound:failed:"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 * 1024


class OutboundError(Exception):
    """A refused or failed outbound request; ``reason`` is short and safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundRefused(OutboundError):
    """Refused before any connection (scheme, address): trying again will not help."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    # Response headers, names lower-cased (the last of repeated ones).
    headers: dict[str, str] = field(default_factory=dict)


def address_problem(address: str) -> str | None:
    """Why the IdP must not connect to ``address`` (None for a public unicast address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    for name, bad in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not global", not ip.is_global),
    ):
        if bad:
            return f"a {name} address"
    return None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to one checked address whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except ImportError:  # the system's store alone
        pass
    return context


class Outbound:
    """Built once per worker from ``[outbound]``; see the module docstring."""

    def __init__(self, svc: Services) -> None:
        cfg = svc.settings.outbound
        self.store = svc.store
        self.allow_http = bool(cfg.allow_http)
        self.allow_private = bool(cfg.allow_private_addresses)
        self.timeout = float(cfg.timeout)
        self.max_bytes = int(cfg.max_bytes)
        self.failure_ttl = float(cfg.failure_cache_seconds)
        self._tls = _tls_context()

    # --- the negative cache ----------------------------------------------------------------------

    @staticmethod
    def _key(uri: str) -> str:
        return _FAILED + hashlib.sha256(uri.encode()).hexdigest()[:40]

    def failed_recently(self, uri: str) -> str | None:
        reason = self.store.get(self._key(uri))
        return str(reason) if reason is not None else None

    def remember_failure(self, uri: str, reason: str) -> None:
        if self.failure_ttl > 0:
            self.store.put(self._key(uri), reason, self.failure_ttl)

    # --- destination checks ---------------------------------------------------------------------

    def destination(self, uri: str) -> tuple[str, str, int, str, list[str]]:
        """(scheme, host, port, path with query, checked addresses), or OutboundRefused."""
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:
            raise OutboundRefused("not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or (scheme == "http" and not self.allow_http):
            raise OutboundRefused("only https URLs are fetched")
        host = parts.hostname
        if not host or "@" in parts.netloc or parts.fragment:
            raise OutboundRefused("not a valid URL")
        port = port or (443 if scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise OutboundRefused("the host name does not resolve") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise OutboundRefused("the host name does not resolve")
        if not self.allow_private:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    raise OutboundRefused(f"the host resolves to {problem}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return scheme, host, port, path, addresses

    # --- requests -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        uri: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """One request, no redirects followed; OutboundError when refused or failed."""
        scheme, host, port, path, addresses = self.destination(uri)
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        last = "cannot connect"
        for address in addresses:
            if scheme == "https":
                conn: http.client.HTTPConnection = _PinnedHTTPSConnection(
                    host, port, address, limit, self._tls
                )
            else:
                conn = _PinnedHTTPConnection(host, port, address, limit)
            try:
                conn.connect()
            except ssl.SSLError:
                conn.close()
                raise OutboundError("the TLS handshake failed") from None
            except OSError:
                conn.close()
                last = "cannot connect"
                continue
            try:
                return self._exchange(conn, method, path, body, headers or {}, deadline)
            finally:
                conn.close()
        raise OutboundError(last)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: float,
    ) -> Answer:
        try:
            conn.request(method, path, body=body, headers=headers)
            sock = conn.sock  # getresponse() lets go of it when the server closes after
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            resp = conn.getresponse()
            length = resp.getheader("Content-Length")
            if length and length.isascii() and length.isdigit() and int(length) > self.max_bytes:
                raise OutboundError("the answer is too large")
            chunks: list[bytes] = []
            size = 0
            while not resp.isclosed():  # closed (and its socket with it) once fully read
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OutboundError("the answer took too long")
                sock.settimeout(remaining)
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise OutboundError("the answer is too large")
                chunks.append(chunk)
            headers = {name.lower(): value for name, value in resp.getheaders()}
            return Answer(resp.status, b"".join(chunks), headers)
        except TimeoutError:
            raise OutboundError("the answer took too long") from None
        except (OSError, http.client.HTTPException):
            raise OutboundError("the connection failed") from None

    def get_json(self, uri: str) -> Any:
        """GET a JSON document (200 only); failures are remembered for a while."""
        recent = self.failed_recently(uri)
        if recent:
            raise OutboundError(f"{recent} (failed recently, not tried again yet)")
        try:
            answer = self.request("GET", uri, headers={"Accept": "application/json"})
            if answer.status != 200:
                raise OutboundError(f"the server answered HTTP {answer.status}")
            try:
                return json.loads(answer.body)
            except ValueError:
                raise OutboundError("the answer is not JSON") from None
        except OutboundError as exc:
            log.info("outbound GET refused or failed: %s", exc.reason, extra={"uri": uri})
            self.remember_failure(uri, exc.reason)
            raise


def outbound(svc: Services) -> Outbound:
    fetcher = svc.outbound
    if fetcher is None:
        fetcher = svc.outbound = Outbound(svc)
    return fetcher
