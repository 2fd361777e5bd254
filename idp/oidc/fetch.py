"""Fetching a client's JWKS (jwks_uri) and sector documents: bounded size and time."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import requests
from authlib.oauth2.rfc6749.errors import InvalidClientError

from ..storage.clients import is_loopback_host

MAX_BYTES = 512 * 1024


def fetch_json(uri: str, timeout: float = 5.0) -> dict:
    parts = urlsplit(uri)
    if parts.scheme != "https" and not (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname)):
        raise InvalidClientError(description="jwks_uri must use https")
    try:
        with requests.get(uri, headers={"Accept": "application/json"}, timeout=timeout,
                          stream=True, allow_redirects=False) as resp:
            resp.raise_for_status()
            body = resp.raw.read(MAX_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise InvalidClientError(description=f"cannot fetch the client's keys: {exc}") from None
    if len(body) > MAX_BYTES:
        raise InvalidClientError(description="the client's key set is too large")
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidClientError(description="the client's key set is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise InvalidClientError(description="the client's key set has no keys")
    return doc
