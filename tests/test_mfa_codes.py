"""Backup codes, e-mail codes and SMS codes end to end over HTTP through /login and the MFA
step; SMS to a real local webhook receiver and to outbox files; admin reset audited and mailed."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from login_kit import GOOD, csrf, make_user, outbox, post_form, text_of
from mfa_kit import (
    add_channel,
    audits,
    code_at,
    enrol_totp,
    kv_keys,
    last_mail_code,
    mfa_counts,
    password_then_step,
    signed_in,
    sms_files,
    step_page,
    submit_code,
)
from support import backend_env

from idp.backends import backup_codes


def _codes(svc, uid, n=None):
    with svc.sessions.begin() as db:
        return backup_codes.regenerate(svc, db, uid)


def test_backup_code_signs_in_once_with_or_without_dash(app, svc, clock):
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    codes = _codes(svc, uid)
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", c) for c in codes)
    client = app.test_client()
    password_then_step(client, "ann")
    assert 'value="totp"' in step_page(client)  # the usual factor is offered first
    page = step_page(client, factor="backup")
    resp = submit_code(client, codes[0].replace("-", "").lower(), page=page)
    assert resp.status_code == 302 and signed_in(client)
    assert mfa_counts(svc)["backup_unused"] == 9
    # Used once: refused now, and nothing changes.
    client = app.test_client()
    password_then_step(client, "ann")
    before = mfa_counts(svc)
    resp = submit_code(client, codes[0], page=step_page(client, factor="backup"))
    assert resp.status_code == 400 and mfa_counts(svc) == before and not signed_in(client)


def test_other_users_and_regenerated_codes_are_refused(app, svc, clock):
    uid = make_user(svc, "ann")
    bob = make_user(svc, "bob")
    old = _codes(svc, uid)
    bobs = _codes(svc, bob)
    new = _codes(svc, uid)  # regeneration: the old set is gone
    client = app.test_client()
    password_then_step(client, "ann")
    for code in (old[1], bobs[0], "AAAA-AAA!", ""):
        before = mfa_counts(svc)
        resp = submit_code(client, code or "x", page=step_page(client, factor="backup"))
        assert resp.status_code == 400 and mfa_counts(svc) == before
    resp = submit_code(client, new[2], page=step_page(client, factor="backup"))
    assert resp.status_code == 302


def test_zero_backup_codes_turns_them_off(make_app, clock):
    app = make_app(clock=clock, mfa={"backup_codes": 0})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    with svc.sessions.begin() as db:
        assert backup_codes.regenerate(svc, db, uid) == []
    client = app.test_client()
    password_then_step(client, "ann")
    assert "Backup code" not in step_page(client)
    assert submit_code(client, code_at(t, clock)).status_code == 302
    assert client.get("/account/mfa/backup").status_code == 404


def test_recovery_with_a_backup_code_then_reenrol(app, svc, clock):
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    codes = _codes(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    submit_code(client, codes[0], page=step_page(client, factor="backup"))
    assert signed_in(client)
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    client.post("/account/mfa/reauth", data={"csrf_token": csrf(page), "password": GOOD})
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    import pyotp

    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    resp = client.post(
        "/account/mfa/totp",
        data={"csrf_token": csrf(page), "code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert resp.status_code == 302  # codes remained: none shown again
    clock.advance(30)
    other = app.test_client()
    password_then_step(other, "ann")
    assert submit_code(other, pyotp.TOTP(secret).at(clock.now())).status_code == 302


def test_email_code_login_expiry_and_attempts(app, svc, clock):
    uid = make_user(svc, "ann", email_verified=True)
    add_channel(svc, uid, "email", "ann@example.org")
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    assert "a***@example.org" in page
    code = last_mail_code(svc)
    assert len(outbox(svc)) == 1 and "sign-in code" in outbox(svc)[-1]["Subject"]
    step_page(client)  # reloading does not send another
    assert len(outbox(svc)) == 1
    clock.advance(301)  # 5 minutes and a second: expired
    before = mfa_counts(svc)
    resp = submit_code(client, code, page=page)
    assert resp.status_code == 400 and mfa_counts(svc) == before
    assert len(outbox(svc)) == 2  # the page after the refusal sent a fresh code for the old one
    page = step_page(client, factor="email", resend=1)
    code = last_mail_code(svc)
    assert len(outbox(svc)) == 3
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert submit_code(client, wrong, page=page).status_code == 400
    assert submit_code(client, code, page=page).status_code == 302 and signed_in(client)
    assert not kv_keys(svc, f"mfacode:email:{uid}:") or all(
        k.endswith(":fails") for k in kv_keys(svc, f"mfacode:email:{uid}:")
    )


def test_a_code_is_bound_to_its_login(app, svc, clock):
    uid = make_user(svc, "ann")
    add_channel(svc, uid, "email", "ann@example.org")
    first = app.test_client()
    password_then_step(first, "ann")
    step_page(first)
    code = last_mail_code(svc)
    second = app.test_client()  # another browser with the password, say an attacker
    password_then_step(second, "ann")
    page = step_page(second)
    other_code = last_mail_code(svc)
    if other_code != code:
        before = mfa_counts(svc)
        assert submit_code(second, code, page=page).status_code == 400
        assert mfa_counts(svc) == before


def test_send_limit(make_app, clock):
    app = make_app(clock=clock, mfa={"max_sends": 2})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    add_channel(svc, uid, "email", "ann@example.org")
    client = app.test_client()
    password_then_step(client, "ann")
    step_page(client)
    step_page(client, resend=1)
    page = step_page(client, resend=1)
    assert len(outbox(svc)) == 2 and "Too many codes were sent" in page


def test_sms_code_to_outbox_files(app, svc, clock):
    uid = make_user(svc, "ann")
    add_channel(svc, uid, "sms", "+491701234567")
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    assert "*567" in page
    msgs = sms_files(svc)
    assert len(msgs) == 1 and msgs[0]["to"] == "+491701234567" and set(msgs[0]) == {"to", "text"}
    code = re.search(r"\b(\d{6})\b", msgs[0]["text"]).group(1)
    assert submit_code(client, code, page=page).status_code == 302
    import idp.sso.sessions as sso

    with app.test_request_context():
        rec = sso.SessionManager(svc)._record(
            sso.session_id_of(client.get_cookie(sso.COOKIE).value)
        )
    assert rec["result"]["amr"] == ["pwd", "sms"] and rec["result"]["acr"] == "urn:idp:acr:mfa"


class _Receiver(BaseHTTPRequestHandler):
    got: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.headers["Content-Type"], body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        return


@pytest.fixture
def receiver():
    _Receiver.got, _Receiver.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms", _Receiver
    server.shutdown()


def test_sms_through_the_webhook_and_gateway_failure(make_app, clock, receiver):
    url, rec = receiver
    app = make_app(clock=clock, sms_url=url)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    add_channel(svc, uid, "sms", "+491701234567")
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    ctype, body = rec.got[-1]
    data = json.loads(body)
    assert ctype == "application/json" and data["to"] == "+491701234567"
    code = re.search(r"\b(\d{6})\b", data["text"]).group(1)
    assert sms_files(svc) == []
    assert submit_code(client, code, page=page).status_code == 302
    rec.status = 500
    client = app.test_client()
    password_then_step(client, "ann")
    assert "could not be sent" in step_page(client)


def test_twilio_shaped_sender(make_app, clock, receiver):
    url, rec = receiver
    app = make_app(
        clock=clock,
        sms_url=url,
        mfa={
            "sms_sender": "twilio",
            "sms_username": "AC1",
            "sms_password": "tok",
            "sms_from": "+100",
        },
    )
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    add_channel(svc, uid, "sms", "+491701234567")
    client = app.test_client()
    password_then_step(client, "ann")
    step_page(client)
    ctype, body = rec.got[-1]
    assert ctype == "application/x-www-form-urlencoded"
    assert "To=%2B491701234567" in body.decode() and "From=%2B100" in body.decode()


def test_sms_enrolment_on_the_account_page(app, svc, clock):
    uid = make_user(svc, "ann")
    client = app.test_client()
    post_form(client, "/login", {"username": "ann", "password": GOOD})
    page = client.get("/account/mfa/sms").get_data(as_text=True)
    client.post("/account/mfa/reauth", data={"csrf_token": csrf(page), "password": GOOD})
    page = client.get("/account/mfa/sms").get_data(as_text=True)
    resp = client.post(
        "/account/mfa/sms", data={"csrf_token": csrf(page), "action": "send", "phone": "12345"}
    )
    assert resp.status_code == 400 and sms_files(svc) == []
    resp = client.post(
        "/account/mfa/sms",
        data={"csrf_token": csrf(page), "action": "send", "phone": "+49 170 1234567"},
    )
    assert resp.status_code == 200 and sms_files(svc)[-1]["to"] == "+491701234567"
    code = re.search(r"\b(\d{6})\b", sms_files(svc)[-1]["text"]).group(1)
    resp = client.post(
        "/account/mfa/sms",
        data={
            "csrf_token": csrf(page),
            "action": "confirm",
            "code": "000000" if code != "000000" else "1",
        },
    )
    assert resp.status_code == 400 and mfa_counts(svc)["channels"] == 0
    resp = client.post(
        "/account/mfa/sms", data={"csrf_token": csrf(page), "action": "confirm", "code": code}
    )
    assert resp.status_code == 302 and mfa_counts(svc)["channels"] == 1
    assert audits(svc, "mfa.sms_enrolled") and uid


def test_admin_reset_is_audited_and_mailed(make_app, instance_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    app = make_app()
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    _codes(svc, uid)
    add_channel(svc, uid, "email", "ann@example.org")
    env = {
        **os.environ,
        "IDP_INSTANCE_DIR": str(instance_dir),
        "IDP_DATABASE_URL": svc.settings.database_url,
        **backend_env(instance_dir),
    }
    idp = str(Path(sys.executable).parent / "idp")
    run = subprocess.run(
        [idp, "users", "mfa", "reset", "ann", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["removed"] == ["backup", "email", "totp"] and out["mailed"]
    assert mfa_counts(svc) | {"sessions": 0} == {
        "sessions": 0,
        "totp": 0,
        "backup_unused": 0,
        "channels": 0,
        "devices": 0,
    }
    event = audits(svc, "mfa.reset")[-1]
    assert event.actor == "cli" and event.details["removed"] == ["backup", "email", "totp"]
    mail = outbox(svc)[-1]
    assert mail["To"] == "ann@example.org" and "removed the second factors" in text_of(mail)
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/account/"
