"""OIDC Discovery 1.0 / RFC 8414 metadata and the JWKS, cacheable with ETag and Cache-Control.

Endpoints are added to discovery by the blueprints that serve them (``Services.discovery``),
so the document never names an endpoint that does not exist.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, request

from .current import svc as current_services

bp = Blueprint("wellknown", __name__)


def _cacheable(key: tuple, build, max_age: int) -> Response:
    """Serve a JSON document serialized once per worker for each ``key`` (its ETag with it):
    these are the most requested URLs and change only with configuration or keys."""
    cache = current_services().wellknown_cache
    hit = cache.get(key)
    if hit is None:
        body = json.dumps(build(), separators=(",", ":"), sort_keys=True)
        if len(cache) > 32:
            cache.clear()
        hit = cache[key] = (body, hashlib.sha256(body.encode()).hexdigest()[:32])
    body, etag = hit
    resp = Response(body, mimetype="application/json")
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp.make_conditional(request)


def metadata() -> dict:
    svc = current_services()
    issuer = svc.settings.issuer
    doc = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
    }
    doc.update(svc.discovery)
    return doc


@bp.get("/.well-known/openid-configuration")
def openid_configuration():
    return _cacheable(("discovery",), metadata, 3600)


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server():
    return _cacheable(("discovery",), metadata, 3600)


@bp.get("/jwks")
def jwks():
    svc = current_services()
    ring = svc.keys.ring()
    published = ring.published(svc.clock.utcnow())
    # Keyed by the published kids: a rotation, or a previous key passing its overlap,
    # changes the document (and its ETag) at once.
    return _cacheable(
        ("jwks", *(k.kid for k in published)), lambda: {"keys": [k.public for k in published]}, 300
    )
