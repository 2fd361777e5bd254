"""``/api/v1/saml/federations``: the federation aggregates listed, and refreshed now through
the outbound fetcher (a file: URL refused and recorded, nothing imported); an unknown name is a
404 problem; a caller without saml:providers:update cannot refresh."""

from __future__ import annotations

import http.server
import threading
from datetime import timedelta

from directory_api_kit import service_caller
from federation_kit import aggregate, keypair, sp_entity
from login_kit import audit_actions
from sqlalchemy import func, select

from idp.storage.models import SamlServiceProvider
from idp.storage.models_saml import SamlFederation


def federation(svc, folder, url: str):
    key, cert = keypair(folder, "fed")
    with svc.sessions.begin() as db:
        db.add(
            SamlFederation(
                name="testfed", url=url, cert_pem=cert.read_text(), filters={}, refresh_seconds=3600
            )
        )
    return key, cert


def sp_count(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(SamlServiceProvider))


def test_list_and_a_refused_refresh(app, svc, admin, tmp_path):
    assert admin.get("/saml/federations").json == {"items": []}
    federation(svc, tmp_path, "file:///etc/passwd")
    (item,) = admin.get("/saml/federations").json["items"]
    assert item["name"] == "testfed" and item["last_refresh"] is None
    response = admin.post("/saml/federations/testfed/refresh")
    assert response.status_code == 200
    assert response.json["ok"] is False and "only https" in response.json["error"]
    assert "only https" in admin.get("/saml/federations").json["items"][0]["last_error"]
    assert sp_count(svc) == 0 and "saml.federation_refresh_failed" in audit_actions(svc)
    missing = admin.post("/saml/federations/nope/refresh")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"


def test_refresh_imports_the_aggregate(make_app, clock, tmp_path):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})
    svc = app.extensions["idp"]
    admin = service_caller(app)
    body = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body["data"])))
            self.end_headers()
            self.wfile.write(body["data"])

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        key, cert = federation(svc, tmp_path, f"http://127.0.0.1:{httpd.server_port}/agg.xml")
        body["data"] = aggregate(
            [sp_entity("https://a.example.org")],
            key,
            cert,
            valid_until=clock.utcnow() + timedelta(days=3),
        )
        response = admin.post("/saml/federations/testfed/refresh")
        assert response.json["ok"] is True and response.json["added"] == 1
        assert sp_count(svc) == 1
        listed = admin.get("/saml/federations").json["items"][0]
        assert listed["entity_count"] == 1 and listed["last_error"] is None
    finally:
        httpd.shutdown()


def test_an_auditor_cannot_refresh(app, svc, tmp_path):
    federation(svc, tmp_path, "file:///etc/passwd")
    auditor = service_caller(app, roles=("Auditor",))
    before = len(audit_actions(svc))
    assert auditor.post("/saml/federations/testfed/refresh").status_code == 403
    with svc.sessions() as db:
        assert db.get(SamlFederation, "testfed").last_error is None
    assert len(audit_actions(svc)) == before
