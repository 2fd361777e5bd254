"""OIDC Discovery 1.0 / RFC 8414 metadata and the JWKS, cacheable with ETag and Cache-Control.

Endpoints are added to discovery by the blueprints that serve them (``Services.discovery``),
so the document never names an endpoint that does not exist.

These are the most requested URLs of an IdP (every relying party's library fetches them,
resource servers poll the JWKS) and change only with configuration or keys: each is serialized
once per worker, and :class:`DocumentsFastPath` answers a plain GET of them before Flask builds
a request at all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response
from flask import request as flask_request
from werkzeug.http import http_date, parse_etags

from .. import logs, metrics
from .csp import SECURITY_HEADERS, content_security_policy, new_nonce
from .current import svc as current_services

bp = Blueprint("wellknown", __name__)

# Path -> document; the documents' Cache-Control max-age.
DOCUMENTS = {
    "/.well-known/openid-configuration": "discovery",
    "/.well-known/oauth-authorization-server": "discovery",
    "/jwks": "jwks",
}
MAX_AGE = {"discovery": 3600, "jwks": 300}
_CACHED_MAX = 32


def metadata(svc: Any) -> dict:
    issuer = svc.settings.issuer
    doc = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
    }
    doc.update(svc.discovery)
    return doc


def document(svc: Any, kind: str) -> tuple[bytes, str]:
    """(body, ETag) of the discovery document or the JWKS, serialized once per worker. The
    JWKS is keyed by the published kids: a rotation, or a previous key passing its overlap,
    changes the document (and its ETag) at once; a settings reload clears the cache."""
    if kind == "discovery":
        key: tuple = ("discovery",)

        def build() -> dict:
            return metadata(svc)
    else:
        published = svc.keys.ring().published(svc.clock.utcnow())
        key = ("jwks", *(k.kid for k in published))

        def build() -> dict:
            return {"keys": [k.public for k in published]}

    cache = svc.wellknown_cache
    hit = cache.get(key)
    if hit is None:
        body = json.dumps(build(), separators=(",", ":"), sort_keys=True).encode()
        if len(cache) > _CACHED_MAX:
            cache.clear()
        hit = cache[key] = (body, hashlib.sha256(body).hexdigest()[:32])
    return hit


def _respond(kind: str) -> Response:
    body, etag = document(current_services(), kind)
    resp = Response(body, mimetype="application/json")
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = f"public, max-age={MAX_AGE[kind]}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp.make_conditional(flask_request)


@bp.get("/.well-known/openid-configuration")
def openid_configuration():
    return _respond("discovery")


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server():
    return _respond("discovery")


@bp.get("/jwks")
def jwks():
    return _respond("jwks")


class DocumentsFastPath:
    """WSGI middleware: a GET or HEAD of the discovery document or the JWKS answered from the
    worker's cache, past Flask's request context, hooks and response object, which cost more
    than three times the rest (bench/: docs/performance.md). The answer is the Flask route's:
    the same bytes, ETag / ``If-None-Match`` (304), Cache-Control and CORS headers, the
    headers of every response (request id, CSP, nosniff, ...), the request metrics and the
    access-log line; the live settings are looked at first as for any request.

    Everything else goes to Flask, and so do these documents when the global network rules
    (``[ip_rules]``) are set, so that a refusal is answered and audited in one place, and when
    a query string is present."""

    def __init__(self, app: Flask, wsgi_app: Callable, access_log: bool) -> None:
        self.svc = app.extensions["idp"]
        self.live = app.extensions["idp.live_settings"]
        self.wsgi_app = wsgi_app
        self.access_log = access_log

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        kind = DOCUMENTS.get(path)
        method = environ.get("REQUEST_METHOD", "")
        if kind is None or method not in ("GET", "HEAD") or environ.get("QUERY_STRING"):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        svc = self.svc
        self.live.check()
        rules = svc.settings.ip_rules
        if rules.allow or rules.deny:
            return self.wsgi_app(environ, start_response)
        body, etag = document(svc, kind)
        rid = logs.request_id(environ.get("HTTP_X_REQUEST_ID"))
        given = environ.get("HTTP_IF_NONE_MATCH")
        status = 304 if given and parse_etags(given).contains(etag) else 200
        headers = [
            ("Content-Type", "application/json"),
            ("Date", http_date()),
            ("ETag", f'"{etag}"'),
            ("Cache-Control", f"public, max-age={MAX_AGE[kind]}"),
            ("Access-Control-Allow-Origin", "*"),
            ("X-Request-ID", rid),
            *SECURITY_HEADERS,
            ("Content-Security-Policy", content_security_policy(new_nonce())),
        ]
        if status == 200:
            headers.insert(1, ("Content-Length", str(len(body))))
        start_response("200 OK" if status == 200 else "304 Not Modified", headers)
        took = time.perf_counter() - started
        metrics.observe_request(path, method, status, took)
        if self.access_log:
            logs.access_line(method, path, status, took * 1000, rid)
        return [body] if status == 200 and method == "GET" else []
