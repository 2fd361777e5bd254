"""Outbound HTTP to upstream identity providers: the SSRF-guarded fetch of ``idp.oidc.fetch``
(checked and pinned addresses, no redirects, bounded time and size), with ``[broker]``'s own
``allow_http`` / ``allow_private_addresses`` (an operator configures upstreams, clients do not:
an on-premises upstream need not open private addresses to every client's URLs)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from ..oidc.fetch import Outbound, OutboundError
from ..services import Services
from .base import UpstreamError


def fetcher(svc: Services) -> Outbound:
    found = svc.broker_outbound
    if found is None:
        found = Outbound(svc)
        found.allow_http = bool(svc.settings.broker.allow_http)
        found.allow_private = bool(svc.settings.broker.allow_private_addresses)
        svc.broker_outbound = found
    return found


def call(
    svc: Services,
    method: str,
    url: str,
    *,
    what: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """A JSON (or, from some OAuth 2 token endpoints, form-encoded) answer of 200;
    UpstreamError ``<what>_failed`` otherwise."""
    try:
        answer = fetcher(svc).request(method, url, body=body, headers={
            "Accept": "application/json", **(headers or {})})
    except OutboundError as exc:
        raise UpstreamError(f"{what}_failed", exc.reason) from None
    if answer.status != 200:
        raise UpstreamError(f"{what}_failed", f"HTTP {answer.status}")
    try:
        return json.loads(answer.body)
    except ValueError:
        pairs = parse_qsl(answer.body.decode("utf-8", "replace"))
        if pairs:
            return dict(pairs)
        raise UpstreamError(f"{what}_failed", "the answer is not JSON") from None
