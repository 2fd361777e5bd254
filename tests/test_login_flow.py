"""The hosted login over HTTP: the AuthnRequest hand-off, steps, states, bad input, logout."""

from datetime import timedelta

import pytest
from login_kit import GOOD, audit_actions, counts, csrf, login, make_user, post_form, user_row

from idp.core.authn import AuthnRequest
from idp.core.steps import register_factor
from idp.sso.sessions import COOKIE, SessionManager, session_id_of


@pytest.fixture
def app(make_app):
    return make_app()


def _save_request(app, **kw) -> str:
    with app.test_request_context():
        mgr = SessionManager(app.extensions["idp"])
        req = AuthnRequest(protocol="oidc", resume_url="/oauth2/authorize/resume?r=X", **kw)
        rid = mgr.save_request(req)
        return rid


def _cookie(client):
    c = client.get_cookie(COOKIE)
    return c.value if c else None


def _sid(client):
    """The id the server keeps of the browser's session (a hash of the cookie)."""
    return session_id_of(_cookie(client))


def test_login_success_goes_to_account_and_sets_session(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert _cookie(client)
    assert client.get("/account/").status_code == 200
    assert "login.success" in audit_actions(svc)
    assert user_row(svc, "ann").last_login_at is not None


def test_login_by_email_too(app, svc):
    make_user(svc, "ann")
    assert login(app.test_client(), "ANN@example.org", GOOD).status_code == 302


def test_unknown_user_and_wrong_password_get_the_same_answer(app, svc):
    make_user(svc, "ann")
    before = counts(svc)
    a = login(app.test_client(), "ann", "wrong-password")
    b = login(app.test_client(), "nobody", "wrong-password")
    assert a.status_code == b.status_code == 401
    msg = "The username or password is not correct."
    assert msg in a.get_data(as_text=True) and msg in b.get_data(as_text=True)
    after = counts(svc)
    assert after["sessions"] == before["sessions"] == 0 and after["users"] == before["users"]
    assert audit_actions(svc).count("login.failure") == 2


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"status": "inactive"}, "disabled"),
        ({"status": "locked"}, "locked"),
        ({"status": "pending"}, "approval"),
        ({"status": "expired"}, "expired"),
        ("start_tomorrow", "start date"),
        ("ended_yesterday", "expired"),
    ],
)
def test_account_states_refuse_login_without_a_session(app, svc, fields, text):
    today = svc.clock.utcnow().date()
    if fields == "start_tomorrow":
        fields = {"start_date": today + timedelta(days=1)}
    elif fields == "ended_yesterday":
        fields = {"end_date": today - timedelta(days=1)}
    make_user(svc, "ann", **fields)
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    assert resp.status_code == 403 and text in resp.get_data(as_text=True)
    assert _cookie(client) is None and counts(svc)["sessions"] == 0
    # A stranger with a wrong password learns nothing about the state.
    resp = login(app.test_client(), "ann", "wrong-password")
    assert resp.status_code == 401 and text not in resp.get_data(as_text=True)


def test_authn_request_handoff(app, svc):
    make_user(svc, "ann")
    rid = _save_request(app, login_hint="ann@example.org", client_id="rp1")
    client = app.test_client()
    page = client.get(f"/login?r={rid}").get_data(as_text=True)
    assert 'value="ann@example.org"' in page  # login_hint prefilled
    resp = login(client, "ann", GOOD, r=rid)
    assert resp.headers["Location"] == "/oauth2/authorize/resume?r=X"
    # The login only read the request; the engine takes it when it resumes.
    with app.test_request_context():
        assert SessionManager(svc).load_request(rid) is not None
    # With a valid SSO session the next request goes straight back...
    rid2 = _save_request(app)
    resp = client.get(f"/login?r={rid2}")
    assert resp.status_code == 302 and resp.headers["Location"].startswith(
        "/oauth2/authorize/resume"
    )
    # ...unless it demands a fresh login.
    for kw in ({"prompt": ["login"]}, {"force_authn": True}):
        rid3 = _save_request(app, **kw)
        assert client.get(f"/login?r={rid3}").status_code == 200


def test_unknown_or_expired_request_id(app):
    resp = app.test_client().get("/login?r=doesnotexist")
    assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)


def test_session_id_is_new_on_every_login(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    first = _cookie(client)
    rid = _save_request(app, prompt=["login"])
    login(client, "ann", GOOD, r=rid)
    second = _cookie(client)
    assert first and second and first != second
    with app.test_request_context():
        assert SessionManager(svc)._record(session_id_of(first)) is None  # the old one ended
        assert SessionManager(svc)._record(session_id_of(second)) is not None


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "http://127.0.0.1:5000.evil.example/",
    ],
)
def test_open_redirect_targets_are_dropped(app, svc, target):
    make_user(svc, "ann")
    resp = login(app.test_client(), "ann", GOOD, next=target)
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"


def test_same_origin_targets_are_kept(app, svc):
    make_user(svc, "ann")
    resp = login(app.test_client(), "ann", GOOD, next="/account/sessions")
    assert resp.headers["Location"] == "/account/sessions"
    resp = login(app.test_client(), "ann", GOOD, next="http://127.0.0.1:5000/account/apps")
    assert resp.headers["Location"] == "http://127.0.0.1:5000/account/apps"


def test_missing_csrf_refused_and_nothing_changed(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    before = counts(svc)
    resp = client.post("/login", data={"username": "ann", "password": GOOD})
    assert resp.status_code == 400 and _cookie(client) is None
    assert counts(svc) == before


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"username": "ann", "password": GOOD, "csrf_token": "forged"}, "a forged CSRF token"),
        ({"username": "ann", "password": "   "}, "a blank password"),
        ({"username": "   ", "password": GOOD}, "a blank username"),
        ({"username": "ann" + "x" * 320, "password": GOOD}, "a username over 320 characters"),
        ({"username": "ann", "password": GOOD + "x" * 1024}, "a password over 1024 characters"),
    ],
)
def test_malformed_login_posts_are_refused_and_change_nothing(app, svc, fields, why):
    """Whatever skips the form's own validation on the common path must refuse exactly what
    the form refuses: each of these is a 400 with the form's message, and no session."""
    make_user(svc, "ann")
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    before = counts(svc)
    resp = client.post("/login", data={"csrf_token": token, **fields})
    assert resp.status_code == 400, why
    assert "Please fill in both fields" in resp.get_data(as_text=True)
    assert _cookie(client) is None and counts(svc) == before


def test_forced_change_step(app, svc):
    make_user(svc, "ann", must_change_password=True)
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    assert resp.headers["Location"] == "/login/step" and _cookie(client) is None
    page = client.get("/login/step").get_data(as_text=True)
    assert "administrator asks you" in page
    # The policy applies: a common password, a mismatch, the same password again.
    for new, confirm in (("password123", "password123"), ("Xy9-abcdefgh", "other"), (GOOD, GOOD)):
        resp = client.post(
            "/login/step", data={"csrf_token": csrf(page), "new_password": new, "confirm": confirm}
        )
        assert resp.status_code == 400 and _cookie(client) is None
        page = resp.get_data(as_text=True)
    assert user_row(svc, "ann").must_change_password is True
    resp = client.post(
        "/login/step",
        data={
            "csrf_token": csrf(page),
            "new_password": "Fresh-Cactus-Lamp-42",
            "confirm": "Fresh-Cactus-Lamp-42",
        },
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert _cookie(client)
    assert user_row(svc, "ann").must_change_password is False
    assert login(app.test_client(), "ann", "Fresh-Cactus-Lamp-42").status_code == 302


def test_expired_password_must_be_changed(make_app):
    app = make_app(password_policy={"max_age_days": 30})
    svc = app.extensions["idp"]
    make_user(svc, "ann", password_changed_at=svc.clock.utcnow() - timedelta(days=31))
    client = app.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/login/step"
    assert "has expired" in client.get("/login/step").get_data(as_text=True)


def test_expiry_warning_notice_and_mail(make_app):
    from login_kit import outbox

    app = make_app(password_policy={"max_age_days": 30, "warn_days": 7})
    svc = app.extensions["idp"]
    make_user(svc, "ann", password_changed_at=svc.clock.utcnow() - timedelta(days=25))
    client = app.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    assert "expires in 5 days" in page
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "later": "1"})
    assert resp.headers["Location"] == "/account/"
    mails = outbox(svc)
    assert len(mails) == 1 and "expires in 5 days" in mails[0]["Subject"]


class CodeFactor:
    """A second factor with a fixed code: stands in for TOTP (a later issue) to drive the step."""

    id, amr, label, template = "testcode", "otp", "test code", None

    def enrolled(self, svc, user):
        return user.username == "mfa-user"

    def begin(self, svc, user, pending):
        return {}

    def verify(self, svc, user, pending, form):
        return form.get("code") == "123456"


@pytest.fixture
def factor(svc):
    register_factor(svc, CodeFactor())


def test_mfa_step_runs_for_enrolled_users(app, svc, factor):
    make_user(svc, "mfa-user")
    client = app.test_client()
    assert login(client, "mfa-user", GOOD).headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    assert 'name="code"' in page
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "000000"})
    assert resp.status_code == 400 and _cookie(client) is None
    page = resp.get_data(as_text=True)
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "123456"})
    assert resp.status_code == 302 and _cookie(client)
    with app.test_request_context():
        rec = SessionManager(svc)._record(_sid(client))
    assert rec["result"]["amr"] == ["pwd", "otp"]
    assert rec["result"]["acr"] == "urn:idp:acr:mfa"


def test_mfa_required_but_not_enrolled_stops(make_app):
    """With login enrolment switched off (it is on by default)."""
    app = make_app(mfa={"enroll_at_login": False})
    svc = app.extensions["idp"]
    make_user(svc, "ann", require_mfa=True)
    client = app.test_client()
    login(client, "ann", GOOD)
    page = client.get("/login/step").get_data(as_text=True)
    assert "none is set up" in page and 'name="code"' not in page
    token = csrf(client.get("/login").get_data(as_text=True))
    resp = client.post("/login/step", data={"csrf_token": token, "code": "1"})
    assert resp.status_code == 401 and _cookie(client) is None
    assert counts(svc)["sessions"] == 0


def test_pending_login_is_not_replayable_nor_portable(app, svc, factor):
    make_user(svc, "mfa-user")
    client = app.test_client()
    login(client, "mfa-user", GOOD)
    page = client.get("/login/step").get_data(as_text=True)
    stolen = client.get_cookie("session").value
    # Another browser without this browser's cookie finds nothing.
    other = app.test_client()
    assert other.post("/login/step", data={"code": "123456"}).status_code == 400
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "123456"})
    assert resp.status_code == 302
    # Replaying the old cookie after the step was used: the record is gone.
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    resp = replay.post("/login/step", data={"csrf_token": csrf(page), "code": "123456"})
    assert resp.status_code == 400 and _cookie(replay) is None


def test_logout_needs_csrf_and_ends_the_session(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    sid = _sid(client)
    assert "Sign out?" in client.get("/logout").get_data(as_text=True)
    assert client.post("/logout").status_code == 400
    with app.test_request_context():
        assert SessionManager(svc)._record(sid) is not None
    resp = post_form(client, "/logout", {})
    assert resp.status_code == 200 and _cookie(client) is None
    with app.test_request_context():
        assert SessionManager(svc)._record(sid) is None
    assert counts(svc)["sessions"] == 0
    assert client.get("/account/").status_code == 302


def test_end_sso_session_for_rp_initiated_logout(app, svc):
    from idp.web.login import end_sso_session

    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    sid = _sid(client)
    with app.test_request_context():
        record = end_sso_session(sid)
        assert record["result"]["user_uuid"] == user_row(svc, "ann").uuid
        assert end_sso_session(sid) is None
    assert client.get("/account/").status_code == 302
