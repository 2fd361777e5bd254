"""The audit chain in the REST API (GET /api/v1/audit/verify) and the console
(/admin/audit/verify); requests stamp their user agent on audit rows; committed rows stream to
a file or to syslog (a real UDP socket), rolled-back ones do not, and a sink failure never fails
the request."""

from __future__ import annotations

import json
import socket

import pytest
from admin_kit import make_admin, signed_in
from api_kit import api, service_token
from sqlalchemy import select, text

from idp.storage import audit as chain
from idp.storage.models import AuditEvent

PROBLEM = "application/problem+json"
BROWSER = "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 test-agent"


def _tamper(svc) -> int:
    with svc.engine.begin() as conn:
        victim = conn.scalar(select(AuditEvent.id).order_by(AuditEvent.id).limit(1))
        conn.execute(
            text("UPDATE audit_events SET action = 'x.forged' WHERE id = :id"), {"id": victim}
        )
    return victim


def test_api_verify_answers_the_report_and_names_the_first_bad_row(app):
    svc = app.extensions["idp"]
    client = app.test_client()
    token = service_token(app, roles=("Auditor",))
    resp = api(client, "GET", "/api/v1/audit/verify", token)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["ok"] is True and resp.json["rows"] == resp.json["head_seq"] > 0
    victim = _tamper(svc)
    resp = api(client, "GET", "/api/v1/audit/verify", token)
    assert resp.status_code == 200
    assert (resp.json["ok"], resp.json["bad_id"]) == (False, victim)
    assert "edited" in resp.json["reason"]
    assert "/api/v1/audit/verify" in client.get("/api/v1/openapi.json").json["paths"]


def test_api_verify_needs_the_audit_permission(app):
    token = service_token(app, roles=("Helpdesk",))
    resp = api(app.test_client(), "GET", "/api/v1/audit/verify", token)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert "audit:log:read" in resp.json["detail"]


def test_console_verify_shows_intact_then_the_first_bad_row(app):
    svc = app.extensions["idp"]
    make_admin(svc, "aud", role="Auditor")
    client = signed_in(app, "aud")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert 'href="/admin/audit/verify"' in page and "Verify chain" in page
    html = client.get("/admin/audit/verify").get_data(as_text=True)
    assert "The audit chain is intact" in html
    victim = _tamper(svc)
    resp = client.get("/admin/audit/verify")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f"The audit chain is broken at event {victim}" in html
    assert f'href="/admin/audit/{victim}"' in html


def test_console_verify_is_refused_without_the_audit_permission(app):
    svc = app.extensions["idp"]
    make_admin(svc, "desk", role="Helpdesk")
    resp = signed_in(app, "desk").get("/admin/audit/verify")
    assert resp.status_code == 403


def test_admin_changes_record_ip_user_agent_and_request_id(app):
    svc = app.extensions["idp"]
    make_admin(svc, "root")
    client = signed_in(app, "root")
    token = service_token(app)
    resp = api(
        client,
        "POST",
        "/api/v1/groups",
        token,
        json={"name": "auditors"},
        headers={"User-Agent": BROWSER},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    with svc.sessions() as db:
        row = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "group.created").order_by(AuditEvent.id)
        ).all()[-1]
    assert (row.user_agent, row.ip) == (BROWSER, "127.0.0.1")
    assert row.request_id
    assert chain.verify_chain(svc.engine).ok


def test_sign_ins_record_the_user_agent(app):
    from login_kit import GOOD, login, make_user

    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER
    login(client, "ann", GOOD)
    with svc.sessions() as db:
        agents = set(
            db.scalars(select(AuditEvent.user_agent).where(AuditEvent.action == "login.success"))
        )
    assert agents == {BROWSER}


@pytest.fixture
def file_stream(make_app, clock, instance_dir):
    app = make_app(clock=clock, audit={"stream": "file", "stream_path": "siem/audit.jsonl"})
    (instance_dir / "siem").mkdir(exist_ok=True)
    return app, instance_dir / "siem" / "audit.jsonl"


def test_file_stream_gets_each_committed_row_as_one_json_line(file_stream):
    app, path = file_stream
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        chain.audit(db, "group.created", at=svc.clock.utcnow(), actor="cli", target="g1", a=1)
        chain.audit_now(db, "group.deleted", at=svc.clock.utcnow(), actor="cli", target="g1")
    with pytest.raises(RuntimeError), svc.sessions.begin() as db:
        chain.audit_now(db, "group.rolled_back", at=svc.clock.utcnow(), actor="cli")
        raise RuntimeError("the change failed")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    actions = [line["action"] for line in lines]
    assert actions[-2:] == ["group.deleted", "group.created"]  # commit (chain) order
    assert "group.rolled_back" not in actions
    with svc.sessions() as db:
        stored = db.execute(
            select(AuditEvent.seq, AuditEvent.row_hash).where(AuditEvent.target == "g1")
        ).all()
    assert sorted((line["seq"], line["row_hash"]) for line in lines[-2:]) == sorted(stored)
    assert lines[-1]["details"] == {"a": 1} and lines[-1]["at"].endswith("+00:00")
    assert path.stat().st_mode & 0o077 == 0


def test_a_failing_sink_never_fails_the_request(file_stream, caplog):
    app, path = file_stream
    svc = app.extensions["idp"]
    path.parent.rmdir()  # the stream's directory is gone: every write fails
    with svc.sessions.begin() as db:
        chain.audit(db, "group.created", at=svc.clock.utcnow(), actor="cli", target="g2")
    with svc.sessions() as db:
        assert db.scalar(select(AuditEvent.id).where(AuditEvent.target == "g2"))
    assert "audit stream: 1 row(s) not sent" in caplog.text


def test_syslog_stream_sends_each_committed_row_to_a_udp_listener(make_app, clock):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    try:
        app = make_app(
            clock=clock, audit={"stream": "syslog", "syslog_address": f"127.0.0.1:{port}"}
        )
        svc = app.extensions["idp"]
        with svc.sessions.begin() as db:
            chain.audit(db, "client.created", at=svc.clock.utcnow(), actor="cli", target="rp")
        datagram = listener.recv(65535).decode()
    finally:
        listener.close()
    assert datagram.startswith("<86>1 ")  # authpriv.info, RFC 5424
    header, _, payload = datagram.partition(" idp - audit - ")
    record = json.loads(payload)
    assert (record["action"], record["target"]) == ("client.created", "rp")
    assert len(record["row_hash"]) == 64


def test_stream_settings_are_checked(make_app, clock):
    from idp.errors import ConfigError

    with pytest.raises(ConfigError, match="audit.stream must be"):
        make_app(clock=clock, audit={"stream": "kafka"})
    with pytest.raises(ConfigError, match="audit.syslog_address"):
        make_app(clock=clock, audit={"stream": "syslog", "syslog_address": "nohost"})
    with pytest.raises(ConfigError, match="audit.retention_days"):
        make_app(clock=clock, audit={"retention_days": -1})


def _last(svc, action: str) -> AuditEvent:
    with svc.sessions() as db:
        return db.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc())
        ).first()


def test_user_updates_record_before_and_after_values(app):
    from login_kit import make_user

    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    client, token = app.test_client(), service_token(app)
    uuid = api(client, "GET", "/api/v1/users?q=ann", token).json["items"][0]["id"]
    resp = api(
        client,
        "PATCH",
        f"/api/v1/users/{uuid}",
        token,
        data=json.dumps({"given_name": "Anna", "active": False}),
        headers={"Content-Type": "application/merge-patch+json", "User-Agent": BROWSER},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    row = _last(svc, "user.updated")
    assert row.target == uuid
    assert row.details["fields"] == ["active", "given_name"]
    assert row.details["before"] == {"active": "active", "given_name": "Ann"}
    assert row.details["after"] == {"active": "inactive", "given_name": "Anna"}
    assert (row.user_agent, row.ip) == (BROWSER, "127.0.0.1") and row.request_id


def test_client_updates_record_before_and_after_values(app):
    client, token = app.test_client(), service_token(app)
    made = api(
        client,
        "POST",
        "/api/v1/clients",
        token,
        json={"client_id": "wiki", "metadata": {"redirect_uris": ["https://wiki.example.org/cb"]}},
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    resp = api(
        client,
        "PATCH",
        "/api/v1/clients/wiki",
        token,
        json={"metadata": {"redirect_uris": ["https://wiki.example.org/cb2"]}},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    row = _last(app.extensions["idp"], "client.updated")
    assert row.target == "wiki" and "redirect_uris" in row.details["changed"]
    assert row.details["before"]["redirect_uris"] == ["https://wiki.example.org/cb"]
    assert row.details["after"]["redirect_uris"] == ["https://wiki.example.org/cb2"]
    assert "client_secret" not in json.dumps(row.details)
