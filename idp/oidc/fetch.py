"""Outbound HTTP on a client's behalf (jwks_uri for private_key_jwt, sector_identifier_uri,
back-channel logout POSTs), through the one outbound guard of ``idp.delivery.outbound`` (https
only, no private or loopback address, pinned addresses, bounded time and size, a negative
cache): its names are re-exported here for the engine's modules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError

from ..delivery.outbound import (
    Answer,
    Outbound,
    OutboundError,
    OutboundRefused,
    address_problem,
    outbound,
)
from ..services import Services

__all__ = [
    "Answer",
    "Outbound",
    "OutboundError",
    "OutboundRefused",
    "address_problem",
    "client_key_set",
    "outbound",
    "poster",
]

log = logging.getLogger("idp.oidc.fetch")


def poster(svc: Services) -> Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]:
    """A POST through the outbound guard as ``(status, body)``: what idp.saml.logout sends its
    SOAP LogoutRequests with (the SAML engine cannot import this one)."""

    def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answer = outbound(svc).request("POST", url, body=body, headers=headers)
        return answer.status, answer.body

    return post


# --- a client's keys (RFC 7523 §3, OIDC Core §10.1.1) -----------------------------------------

JWKS_CACHE_SECONDS = 60


def client_key_set(svc: Services, client: Any, cache: dict[str, tuple[float, dict]]) -> dict:
    """The client's JWK Set from ``jwks`` or ``jwks_uri`` (kept ``JWKS_CACHE_SECONDS``).
    Keys that cannot be had are the client's failure to authenticate: ``invalid_client``
    (RFC 6749 §5.2), never a server error."""
    if client.setting("jwks"):
        return client.setting("jwks")
    uri = client.setting("jwks_uri")
    if not uri:
        raise InvalidClientError(description="The client has no registered keys.")
    cached = cache.get(uri)
    now = svc.clock.now()
    if cached and now - cached[0] < JWKS_CACHE_SECONDS:
        return cached[1]
    try:
        doc = outbound(svc).get_json(uri)
    except OutboundError as exc:
        log.info("client keys not fetched: %s", exc.reason, extra={"client_id": client.client_id})
        raise InvalidClientError(description="The client's keys cannot be fetched.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        raise InvalidClientError(description="The client's jwks_uri holds no key set.")
    if len(cache) > 1000:
        cache.clear()
    cache[uri] = (now, doc)
    return doc
