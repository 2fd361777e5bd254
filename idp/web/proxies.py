"""The client's address, scheme and host behind reverse proxies: a WSGI middleware that
believes ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` only from a trusted proxy
(``[server] trusted_proxies`` of them in front of us, counted from the right, and when
``[server] trusted_proxy_networks`` is set, a direct peer inside those networks). Everything
else ignores those headers: Flask's ``request.remote_addr`` is then the one client address
the whole app uses (``idp.web.requestinfo.client_ip``). The socket's own peer is kept in the
environ under ``PEER_KEY`` for the access log.

The client certificate header of RFC 8705 (``[mtls] client_cert_header``) is dropped the same
way and kept, under ``CLIENT_CERT_KEY``, only when the direct peer is inside
``trusted_proxy_networks`` (never when that list is empty): only our proxy, which terminated the
TLS connection, may say which certificate the client presented."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.iprules import Network, forwarded_client, forwarded_value, parse_address

PEER_KEY = "idp.peer_addr"
CLIENT_CERT_KEY = "idp.client_cert"
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TrustedProxies:
    """Rewrites ``REMOTE_ADDR``, ``wsgi.url_scheme`` and ``HTTP_HOST`` from the forwarded
    headers of a trusted proxy; drops the headers in every case, so no code below can read an
    unchecked one by mistake."""

    def __init__(self, app: WsgiApp, trusted: int, networks: Sequence[Network] = (),
                 cert_header: str = "") -> None:
        self.app = app
        self.trusted = trusted
        self.networks = tuple(networks)
        self.cert_key = "HTTP_" + cert_header.upper().replace("-", "_") if cert_header else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        peer = environ.get("REMOTE_ADDR")
        environ[PEER_KEY] = peer
        forwarded = [environ.pop(key, None) for key in _FORWARDED]
        if self.cert_key is not None:
            cert = environ.pop(self.cert_key, None)
            address = parse_address(peer)
            if cert and address is not None and any(address in n for n in self.networks):
                environ[CLIENT_CERT_KEY] = cert
        client = forwarded_client(peer, forwarded[0], self.trusted, self.networks)
        if client is not None:
            environ["REMOTE_ADDR"] = client
            proto = forwarded_value(forwarded[1], self.trusted)
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = forwarded_value(forwarded[2], self.trusted)
            if host and _HOST.fullmatch(host):
                environ["HTTP_HOST"] = host
        return self.app(environ, start_response)
