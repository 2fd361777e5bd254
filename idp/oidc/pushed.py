"""Pushed authorization requests in the short-lived store (RFC 9126 §2.2, §4, §7.3).

A push stores the validated request under the hash of a random handle; the client sends the
browser to /oauth2/authorize with ``request_uri=urn:ietf:params:oauth:request_uri:<handle>``.
Presenting it again before the authorization completes (a reload, the login round trip) works;
completing it (a code issued) is one atomic ``add`` of a used-marker, so of two parallel
completions exactly one wins, and the entry is deleted: a later presentation finds nothing.
Expiry is checked against the injected clock as well as by the store's TTL.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..services import Services

PAR_URN = "urn:ietf:params:oauth:request_uri:"
_PAR = "par:"
_PAR_USED = "parused:"
# The key of a pushed request among the authorization request's own parameters once loaded.
LOADED = "_par"


def save(svc: Services, client_id: str, params: dict[str, Any]) -> tuple[str, int]:
    """Store a validated request; returns (request_uri, expires_in)."""
    lifetime = int(svc.settings.oidc.par_lifetime)
    handle = secrets.token_urlsafe(32)
    key = svc.hasher.hash(handle)
    svc.store.put(_PAR + key, {"client_id": client_id, "params": params,
                               "exp": svc.clock.now() + lifetime}, lifetime)
    return PAR_URN + handle, lifetime


def load(svc: Services, request_uri: str, client_id: str | None) -> dict[str, Any] | None:
    """The pushed request's parameters (with ``_par`` naming it), or None when it is unknown,
    expired, completed already, or pushed by another client than ``client_id``."""
    handle = request_uri.removeprefix(PAR_URN)
    if not handle or len(handle) > 200 or not client_id:
        return None
    key = svc.hasher.hash(handle)
    entry = svc.store.get(_PAR + key)
    if (entry is None or entry["client_id"] != client_id or entry["exp"] <= svc.clock.now()
            or svc.store.get(_PAR_USED + key)):
        return None
    return dict(entry["params"], **{LOADED: key})


def complete(svc: Services, key: str) -> bool:
    """Use the pushed request up as its authorization completes; False when it was already."""
    if not svc.store.add(_PAR_USED + key, 1, int(svc.settings.oidc.par_lifetime)):
        return False
    svc.store.delete(_PAR + key)
    return True
