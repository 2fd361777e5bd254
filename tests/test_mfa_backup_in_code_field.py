"""One code field for either: a backup code typed into the authenticator app's code field at the
MFA step signs in, is spent (single use), is audited as a backup code, and wrong codes count
towards the account lockout without spending anything. "Use another method" stays offered.

Backup codes are NIST SP 800-63B section 5.1.2 look-up secrets: each is used once; RFC 8176
has no amr value of their own, so the session's amr is "otp" and the audit trail names them."""

from login_kit import GOOD, make_user, post_form
from mfa_kit import (
    audits,
    enrol_totp,
    mfa_counts,
    password_then_step,
    signed_in,
    step_page,
    submit_code,
)
from sqlalchemy import select

from idp.backends import backup_codes
from idp.sso.sessions import COOKIE, SessionManager, session_id_of
from idp.storage.directory import Directory
from idp.storage.models import GroupMember
from idp.storage.models_mfa import MfaBackupCode


def _codes(svc, uid):
    with svc.sessions.begin() as db:
        return backup_codes.regenerate(svc, db, uid)


def _used_at(svc, uid):
    with svc.sessions() as db:
        return sorted(
            str(t)
            for t in db.scalars(select(MfaBackupCode.used_at).where(MfaBackupCode.user_id == uid))
            if t
        )


def _failures(svc, uid) -> int:
    return svc.store.get(f"fail:mfa:u{uid}") or 0


def _amr(app, client):
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    with app.test_request_context():
        record = SessionManager(app.extensions["idp"])._record(session_id_of(cookie.value))
        return record["result"]["amr"]


def test_backup_code_in_the_totp_field_signs_in_once(app, svc, clock):
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    codes = _codes(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    # The authenticator app's field is offered, and "use another method" still lists backup codes.
    assert 'name="factor" value="totp"' in page
    assert "Use another method" in page and "factor=backup" in page
    resp = submit_code(client, codes[0], factor="totp", page=page)
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert signed_in(client) and _amr(app, client) == ["pwd", "otp"]
    assert mfa_counts(svc)["backup_unused"] == len(codes) - 1 and len(_used_at(svc, uid)) == 1
    (row,) = audits(svc, "mfa.backup_code_used")
    assert row.target == row.actor
    assert row.details["field"] == "totp" and row.details["remaining"] == len(codes) - 1
    (success,) = audits(svc, "login.success")
    assert success.details["amr"] == ["pwd", "otp"]

    # Spent: the same code in the same field is refused, and nothing changes.
    client = app.test_client()
    password_then_step(client, "ann")
    before, used = mfa_counts(svc), _used_at(svc, uid)
    resp = submit_code(client, codes[0].replace("-", "").lower(), factor="totp")
    assert resp.status_code == 400
    assert "That code is not correct." in resp.get_data(as_text=True)
    assert mfa_counts(svc) == before and _used_at(svc, uid) == used
    assert len(audits(svc, "mfa.backup_code_used")) == 1 and not signed_in(client)
    assert _failures(svc, uid) == 1


def test_a_wrong_code_in_the_totp_field_counts_and_spends_nothing(make_app, clock):
    app = make_app(clock=clock, lockout={"max_failures": 3})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    enrol_totp(svc, uid)
    codes = _codes(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    before = mfa_counts(svc)
    for n, wrong in enumerate(("ABCD-EFGH", "23456789"), start=1):  # backup-shaped, both
        resp = submit_code(client, wrong, factor="totp")
        assert resp.status_code == 400
        assert "That code is not correct." in resp.get_data(as_text=True)
        assert _failures(svc, uid) == n
    assert mfa_counts(svc) == before and _used_at(svc, uid) == []
    assert len(audits(svc, "login.step_failed.mfa")) == 2
    assert not audits(svc, "mfa.backup_code_used")
    # The third wrong code locks the account, as wrong TOTP codes do...
    resp = submit_code(client, "ZZZZ-ZZZZ", factor="totp")
    assert resp.status_code == 401
    assert "Too many failed sign-in attempts" in resp.get_data(as_text=True)
    assert audits(svc, "login.lockout")
    # ...and while locked even a right backup code gets nowhere and is not spent.
    other = app.test_client()
    resp = post_form(other, "/login", {"username": "ann", "password": GOOD})
    assert "Too many failed sign-in attempts" in resp.get_data(as_text=True)
    assert mfa_counts(svc)["backup_unused"] == len(codes) and not signed_in(other)
    assert mfa_counts(svc)["sessions"] == 0


def test_backup_code_in_the_totp_field_is_refused_where_the_policy_allows_totp_only(
    make_app, clock
):
    """A rule with ``methods=totp`` leaves backup codes out: typed into the TOTP field they are
    not taken either, and stay unspent."""
    app = make_app(clock=clock, mfa={"policies": ["group:admins methods=totp"]})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        group = Directory(db).create_group("admins")
        db.add(GroupMember(group_id=group.id, user_id=uid))
    enrol_totp(svc, uid)
    codes = _codes(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    assert "factor=backup" not in page
    before = mfa_counts(svc)
    resp = submit_code(client, codes[0], factor="totp", page=page)
    assert resp.status_code == 400 and not signed_in(client)
    assert mfa_counts(svc) == before and _used_at(svc, uid) == []
    assert not audits(svc, "mfa.backup_code_used") and _failures(svc, uid) == 1
