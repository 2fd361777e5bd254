"""The discovery document and the JWKS answered before Flask (idp.web.wellknown's
DocumentsFastPath): the same answer as the Flask route, conditional GET and HEAD, a key
rotation served at once, the request metrics and the access line, and Flask's network gate
whenever global rules are set."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from werkzeug.test import Client

from idp.storage.models import AuditEvent
from idp.web.wellknown import DOCUMENTS, DocumentsFastPath

PATHS = sorted(DOCUMENTS)
# Differ on every response by design: the request id, the CSP nonce, the time.
PER_RESPONSE = {"X-Request-ID", "Content-Security-Policy", "Date"}


def _flask_only(app) -> Client:
    """The app as it would be without the fast path: the middleware's inner WSGI app."""
    assert isinstance(app.wsgi_app, DocumentsFastPath)
    return Client(app.wsgi_app.wsgi_app)


def _headers(resp) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k not in PER_RESPONSE}


@pytest.mark.parametrize("path", PATHS)
def test_the_fast_answer_is_the_flask_routes_answer(app, path):
    fast = Client(app).get(path)
    slow = _flask_only(app).get(path)
    assert fast.status_code == slow.status_code == 200
    assert fast.get_data() == slow.get_data() and fast.get_json()
    assert _headers(fast) == _headers(slow) and "Date" in fast.headers
    csp = fast.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'nonce-" in csp
    # A fresh nonce on every response, as on every Flask response.
    assert csp != Client(app).get(path).headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", PATHS)
def test_conditional_get_and_head(app, path):
    c = Client(app)
    etag = c.get(path).headers["ETag"]
    again = c.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert c.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    head = c.head(path)
    assert head.status_code == 200 and head.get_data() == b""
    assert int(head.headers["Content-Length"]) == len(c.get(path).get_data())
    slow = _flask_only(app).get(path, headers={"If-None-Match": etag})
    assert slow.status_code == 304


def test_a_rotated_key_is_published_at_once(app):
    svc = app.extensions["idp"]
    c = Client(app)
    before = {k["kid"] for k in c.get("/jwks").get_json()["keys"]}
    svc.keys.rotate(prepare=True)  # a next key, published before it signs
    svc.keys._checked = float("-inf")  # past the ring's cache time ([keys] cache_seconds)
    after = {k["kid"] for k in c.get("/jwks").get_json()["keys"]}
    assert before < after
    assert c.get("/jwks").get_data() == _flask_only(app).get("/jwks").get_data()


def test_request_ids_metrics_and_the_access_line(make_app, capsys):
    app = make_app(logging={"access_log": True, "format": "json", "level": "INFO"})
    c = Client(app)

    def count() -> float:
        labels = {"endpoint": "/jwks", "method": "GET", "status": "200"}
        return REGISTRY.get_sample_value("idp_http_requests_total", labels) or 0.0

    before = count()
    capsys.readouterr()
    kept = c.get("/jwks", headers={"X-Request-ID": "lb-1234"})
    junk = c.get("/jwks", headers={"X-Request-ID": "<script>"})
    assert kept.headers["X-Request-ID"] == "lb-1234"
    assert junk.headers["X-Request-ID"] != "<script>" and len(junk.headers["X-Request-ID"]) == 32
    assert count() == before + 2
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    access = [r for r in lines if r.get("logger") == "idp.access"]
    assert [(r["path"], r["status"], r["request_id"]) for r in access][0] == (
        "/jwks",
        200,
        "lb-1234",
    )
    assert len(access) == 2


def test_other_methods_and_query_strings_go_to_flask(app):
    c = Client(app)
    assert c.post("/jwks").status_code == 405
    assert c.get("/jwks?x=1").get_data() == c.get("/jwks").get_data()


def test_with_global_network_rules_flask_refuses_and_audits(make_app):
    app = make_app(ip_rules={"deny": ["127.0.0.0/8"]})
    svc = app.extensions["idp"]

    def denied() -> int:
        with svc.sessions() as db:
            return db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "ip.denied")
            )

    resp = Client(app).get("/.well-known/openid-configuration")
    assert resp.status_code == 403 and "keys" not in resp.get_data(as_text=True)
    assert denied() == 1
    allowed = Client(app).get(
        "/.well-known/openid-configuration", environ_base={"REMOTE_ADDR": "198.51.100.7"}
    )
    assert allowed.status_code == 200 and allowed.get_json()["issuer"]
