"""TOTP end to end over HTTP: enrolment on the account page (re-authentication, QR, first code),
login through the MFA step, and every bad code (wrong, expired, replayed, another user's,
guessed until the account locks) refused without a session or any other change."""

import re
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from login_kit import GOOD, csrf, make_user, outbox, post_form
from mfa_kit import (
    audits,
    code_at,
    enrol_totp,
    mfa_counts,
    password_then_step,
    signed_in,
    submit_code,
)
from sqlalchemy import select
from support import backend_env

from idp.sso.sessions import COOKIE, SessionManager, session_id_of
from idp.storage.models_mfa import MfaTotp


def _session(app, client):
    with app.test_request_context():
        return SessionManager(app.extensions["idp"])._record(
            session_id_of(client.get_cookie(COOKIE).value)
        )


def test_login_with_totp_sets_amr_and_acr(app, svc, clock):
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/login/step"
    assert not signed_in(client)  # no SSO session between the factors
    resp = submit_code(client, code_at(t, clock))
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    rec = _session(app, client)
    assert rec["result"]["amr"] == ["pwd", "otp"]
    assert rec["result"]["acr"] == "urn:idp:acr:mfa"


@pytest.mark.parametrize("offset", [-1, 1])
def test_one_step_of_clock_skew_is_accepted(app, svc, clock, offset):
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, code_at(t, clock, offset)).status_code == 302
    assert signed_in(client)


def _refused(app, svc, client, code):
    before = mfa_counts(svc)
    resp = submit_code(client, code)
    assert resp.status_code == 400
    assert "That code is not correct" in resp.get_data(as_text=True)
    assert mfa_counts(svc) == before  # no session, no spent step, nothing else
    assert not signed_in(client)


def test_wrong_expired_and_other_users_codes_are_refused(app, svc, clock):
    uid = make_user(svc, "ann")
    other = make_user(svc, "bob")
    t = enrol_totp(svc, uid)
    t_bob = enrol_totp(svc, other)
    client = app.test_client()
    password_then_step(client, "ann")
    good = code_at(t, clock)
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    _refused(app, svc, client, wrong)
    _refused(app, svc, client, code_at(t, clock, -2))  # two steps old: expired
    _refused(app, svc, client, code_at(t_bob, clock))  # bob's code for ann
    _refused(app, svc, client, "12345a")
    assert audits(svc, "login.step_failed.mfa")


def test_a_used_code_is_refused_and_so_is_an_earlier_step(app, svc, clock):
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    first = app.test_client()
    password_then_step(first, "ann")
    code = code_at(t, clock)
    assert submit_code(first, code).status_code == 302
    with svc.sessions() as db:
        spent = db.get(MfaTotp, uid).last_step
    second = app.test_client()
    password_then_step(second, "ann")
    _refused(app, svc, second, code)  # the same code again: replay
    _refused(app, svc, second, code_at(t, clock, -1))  # an earlier step than the one used
    with svc.sessions() as db:
        assert db.get(MfaTotp, uid).last_step == spent
    clock.advance(30)
    assert submit_code(second, code_at(t, clock)).status_code == 302


def test_guessing_codes_locks_the_account_like_passwords(app, svc, clock):
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    good = code_at(t, clock)
    wrong = f"{(int(good) + 7) % 10**6:06d}"
    # Fresh logins between guesses do not reset the count: knowing the password buys no more.
    for _ in range(2):
        client = app.test_client()
        password_then_step(client, "ann")
        for _ in range(2):
            assert submit_code(client, wrong).status_code == 400
    client = app.test_client()
    password_then_step(client, "ann")
    resp = submit_code(client, wrong)
    assert resp.status_code == 401 and "Too many failed sign-in attempts" in resp.get_data(
        as_text=True
    )
    assert audits(svc, "login.lockout")
    # Locked: the right password and the right code get nowhere now.
    client = app.test_client()
    resp = post_form(client, "/login", {"username": "ann", "password": GOOD})
    assert resp.status_code == 429 and "Too many failed sign-in attempts" in resp.get_data(
        as_text=True
    )
    assert mfa_counts(svc)["sessions"] == 0


def test_the_seed_is_sealed_at_rest(app, svc, clock):
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    with svc.sessions() as db:
        stored = db.scalar(select(MfaTotp.secret_sealed).where(MfaTotp.user_id == uid))
    assert t.secret not in stored and stored.startswith("v1:")
    assert svc.sealer.open(stored, f"totp:{uid}").decode() == t.secret
    with pytest.raises(ValueError):
        svc.sealer.open(stored, "totp:999")  # bound to its user


def _reauth(client):
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    assert 'name="password"' in page
    resp = client.post(
        "/account/mfa/reauth",
        data={"csrf_token": csrf(page), "password": GOOD, "next": "/account/mfa/totp"},
    )
    assert resp.status_code == 302


def test_enrolment_on_the_account_page(app, svc, clock):
    uid = make_user(svc, "ann")
    client = app.test_client()
    post_form(client, "/login", {"username": "ann", "password": GOOD})
    assert signed_in(client)
    # Without a fresh password the page asks for it, and a wrong one changes nothing.
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    resp = client.post("/account/mfa/reauth", data={"csrf_token": csrf(page), "password": "wrong"})
    assert resp.status_code == 401 and mfa_counts(svc)["totp"] == 0
    _reauth(client)
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    t = pyotp.TOTP(secret)
    # A wrong first code does not enrol.
    resp = client.post(
        "/account/mfa/totp",
        data={
            "csrf_token": csrf(page),
            "code": "000000" if t.at(clock.now()) != "000000" else "111111",
        },
    )
    assert resp.status_code == 400 and mfa_counts(svc)["totp"] == 0
    resp = client.post(
        "/account/mfa/totp", data={"csrf_token": csrf(page), "code": t.at(clock.now())}
    )
    assert resp.status_code == 200  # the backup codes, shown once
    codes = re.findall(r"<code>([A-Z2-9]{4}-[A-Z2-9]{4})</code>", resp.get_data(as_text=True))
    assert len(codes) == 10 and resp.headers["Cache-Control"] == "no-store"
    assert mfa_counts(svc)["totp"] == 1 and mfa_counts(svc)["backup_unused"] == 10
    assert audits(svc, "mfa.totp_enrolled")
    assert "Your sign-in methods were changed" in outbox(svc)[-1]["Subject"]
    # The confirming code cannot sign in again; the next step's code does.
    other = app.test_client()
    password_then_step(other, "ann")
    assert submit_code(other, t.at(clock.now())).status_code == 400
    clock.advance(30)
    assert submit_code(other, t.at(clock.now())).status_code == 302
    assert uid


def test_admin_enforced_mfa_cannot_be_removed_by_the_user(app, svc, clock):
    uid = make_user(svc, "ann", require_mfa=True)
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, code_at(t, clock)).status_code == 302
    _reauth(client)
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    resp = client.post("/account/mfa/totp/remove", data={"csrf_token": csrf(page)})
    assert resp.status_code == 302 and mfa_counts(svc)["totp"] == 1
    assert "must keep a second factor" in client.get("/account/mfa").get_data(as_text=True)


def test_cli_enroll_totp_prints_a_seed_pyotp_can_use(make_app, instance_dir, tmp_path):
    import json
    import os

    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    env = {
        **os.environ,
        "IDP_INSTANCE_DIR": str(instance_dir),
        "IDP_DATABASE_URL": svc.settings.database_url,
        **backend_env(instance_dir),
    }
    idp = str(Path(sys.executable).parent / "idp")  # the installed console script
    run = subprocess.run(
        [idp, "users", "mfa", "enroll-totp", "ann", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert set(out) == {"secret", "otpauth_uri", "backup_codes"}
    assert len(out["backup_codes"]) == 10
    parsed = pyotp.parse_uri(out["otpauth_uri"])
    assert parsed.secret == out["secret"] and parsed.issuer == "IdP"
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, pyotp.TOTP(out["secret"]).now()).status_code == 302
    bad = subprocess.run(
        [idp, "users", "mfa", "enroll-totp", "nobody"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr == "idp: no user 'nobody'\n"  # one line, nothing else
