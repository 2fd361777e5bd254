"""OIDC Discovery 1.0 / RFC 8414 metadata and the JWKS, cacheable with ETag and Cache-Control.

Endpoints are added to discovery by the blueprints that serve them (``app.extensions
["idp"].extras["discovery"]``), so the document never names an endpoint that does not exist.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, request

bp = Blueprint("wellknown", __name__)


def _cacheable(doc: dict, max_age: int) -> Response:
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    etag = hashlib.sha256(body.encode()).hexdigest()[:32]
    resp = Response(body, mimetype="application/json")
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp.make_conditional(request)


def metadata() -> dict:
    from ..app import services

    svc = services()
    issuer = svc.settings.issuer
    doc = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
    }
    doc.update(svc.extras.get("discovery", {}))
    return doc


@bp.get("/.well-known/openid-configuration")
def openid_configuration():
    return _cacheable(metadata(), 3600)


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server():
    return _cacheable(metadata(), 3600)


@bp.get("/jwks")
def jwks():
    from ..app import services

    return _cacheable(services().keys.jwks(), 300)
