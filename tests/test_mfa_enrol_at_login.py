"""A user who must use MFA and has no factor sets up TOTP right after the password
(``[mfa] enroll_at_login``, on by default, as Keycloak's "Configure OTP" required action); with
the setting off such a login is refused until an administrator enrols a factor. RFC 6238 codes
are computed by pyotp from the secret the enrolment page shows."""

import re

import pyotp
from login_kit import csrf, make_user, user_row
from mfa_kit import add_channel, audits, mfa_counts, password_then_step, signed_in, step_page

from idp.core.policy import STEP_MFA, STEP_MFA_ENROLL, LoginFacts, plan_steps
from idp.settings import load_settings
from idp.sso.sessions import COOKIE, SessionManager, session_id_of
from idp.storage.directory import Directory


def _session_record(app, client):
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no SSO session cookie"
    with app.test_request_context():
        return SessionManager(app.extensions["idp"])._record(session_id_of(cookie.value))


def _secret(page: str) -> str:
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert m, "no TOTP secret on the enrolment page"
    return m.group(1).replace(" ", "")


def test_enrolment_at_login_is_on_by_default():
    assert load_settings(environ={}).mfa.enroll_at_login is True


def test_require_mfa_user_without_a_factor_enrols_totp_and_signs_in(make_app, clock):
    """The administrator's "require MFA" flag, no factor, default settings: the password leads to
    TOTP enrolment; a wrong first code stores nothing; the right one (pyotp) enrols, shows the
    backup codes once, and the SSO session says otp."""
    app = make_app(clock=clock)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann", require_mfa=True)
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/login/step"
    page = step_page(client)
    assert "Set up two-factor authentication" in page and "<svg" in page
    assert "none is set up" not in page
    secret = _secret(page)
    before = mfa_counts(svc)
    assert before["totp"] == 0 and before["sessions"] == 0

    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "000000"})
    assert resp.status_code == 400 and "That code is not correct." in resp.get_data(as_text=True)
    assert mfa_counts(svc) == before and client.get_cookie(COOKIE) is None
    assert not audits(svc, "mfa.totp_enrolled")

    p = svc.settings.mfa
    code = pyotp.TOTP(secret, digits=p.totp_digits, interval=p.totp_period).at(clock.now())
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": code})
    assert resp.status_code == 302 and resp.headers["Location"] == "/login/step"
    assert client.get_cookie(COOKIE) is None  # the backup codes come before the session
    page = step_page(client)
    codes = re.findall(r"<code>([A-Z2-9]{4}-[A-Z2-9]{4})</code>", page)
    assert len(codes) == p.backup_codes
    resp = client.post("/login/step", data={"csrf_token": csrf(page)})
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"

    rec = _session_record(app, client)
    assert rec["result"]["user_uuid"] == user_row(svc, "ann").uuid
    assert "otp" in rec["result"]["amr"] and rec["result"]["amr"] == ["pwd", "otp"]
    assert rec["result"]["acr"] == "urn:idp:acr:mfa"
    after = mfa_counts(svc)
    assert after["totp"] == 1 and after["sessions"] == 1
    assert after["backup_unused"] == p.backup_codes
    (row,) = audits(svc, "mfa.totp_enrolled")
    assert row.target == user_row(svc, "ann").uuid
    assert signed_in(client) and uid


def test_with_enrolment_off_the_login_is_refused_and_nothing_is_stored(make_app, clock):
    """``enroll_at_login = false``: the previous behaviour. The MFA step says a factor is needed
    and none is set up; a submitted code is refused (401), no factor and no session appear."""
    app = make_app(clock=clock, mfa={"enroll_at_login": False})
    svc = app.extensions["idp"]
    make_user(svc, "ann", require_mfa=True)
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/login/step"
    page = step_page(client)
    assert "none is set up" in page and 'id="totp-secret"' not in page
    before = mfa_counts(svc)
    token = csrf(client.get("/login").get_data(as_text=True))  # the page has no form
    resp = client.post("/login/step", data={"csrf_token": token, "code": "123456"})
    assert resp.status_code == 401
    assert mfa_counts(svc) == before and before["totp"] == before["sessions"] == 0
    assert client.get_cookie(COOKIE) is None and not signed_in(client)


def test_a_user_whose_factors_the_policy_does_not_allow_cannot_enrol_on_the_password_alone(
    make_app, clock
):
    """Ann's only factor is e-mail codes, the admins' rule allows TOTP only. Offering enrolment
    would let someone holding just her password add a factor without passing hers: the MFA step
    refuses instead, and nothing is stored."""
    app = make_app(
        clock=clock, mfa={"policies": ["group:admins methods=totp"], "enroll_at_login": True}
    )
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        group = Directory(db).create_group("admins")
        from idp.storage.models import GroupMember

        db.add(GroupMember(group_id=group.id, user_id=uid))
    add_channel(svc, uid, "email", "ann@example.org")
    client = app.test_client()
    password_then_step(client, "ann")
    page = step_page(client)
    assert "none is set up" in page and 'id="totp-secret"' not in page
    before = mfa_counts(svc)
    token = csrf(client.get("/login").get_data(as_text=True))  # the page has no form
    resp = client.post("/login/step", data={"csrf_token": token, "code": "123456"})
    assert resp.status_code == 401 and mfa_counts(svc) == before and before["totp"] == 0
    assert client.get_cookie(COOKIE) is None


def test_plan_steps_enrols_only_users_without_any_factor():
    base = dict(
        require_mfa=True,
        enrolled_factors=(),
        must_change_password=False,
        password_expired=False,
        password_expiry_warning=False,
        wanted_acr_level=0,
        local_password=True,
        enroll_at_login=True,
    )
    assert plan_steps(LoginFacts(**base)) == [STEP_MFA_ENROLL]
    assert plan_steps(LoginFacts(**{**base, "enroll_at_login": False})) == [STEP_MFA]
    # A factor exists but the policy does not allow it: no enrolment on the password alone.
    narrowed = {**base, "enrolled_factors": ("email",), "mfa_methods": ("totp",)}
    assert plan_steps(LoginFacts(**narrowed)) == [STEP_MFA]
    # TOTP not among the allowed methods: nothing to enrol here.
    assert plan_steps(LoginFacts(**{**base, "mfa_methods": ("webauthn",)})) == [STEP_MFA]
