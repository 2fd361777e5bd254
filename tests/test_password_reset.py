"""Password reset, first-login magic link, e-mail verification and self-registration with
approval, driven over HTTP with the mails read back from the outbox."""

from urllib.parse import urlsplit

from login_kit import (
    GOOD,
    audit_actions,
    company_with_control_word,
    counts,
    csrf,
    link_in,
    login,
    make_user,
    outbox,
    post_form,
    user_row,
)
from sqlalchemy import select

from idp.clock import FrozenClock
from idp.sso.sessions import COOKIE
from idp.storage.models import User

NEW = "Fresh-Cactus-Lamp-42"
ISSUER = "https://id.example.org"


def _path(link):
    return urlsplit(link).path


def test_login_page_links_forgot_password(make_app):
    page = make_app().test_client().get("/login").get_data(as_text=True)
    assert 'href="/password/reset">Forgot password?' in page


def test_reset_flow(make_app):
    app = make_app(issuer=ISSUER)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    old_browser = app.test_client()
    login(old_browser, "ann", GOOD)
    client = app.test_client()
    resp = post_form(client, "/password/reset", {"email": "ann@example.org"})
    assert "Check your e-mail" in resp.get_data(as_text=True)
    (mail,) = outbox(svc)
    link = link_in(mail, "/password/reset/")
    assert link.startswith(ISSUER + "/")  # from the issuer, never the Host header
    assert mail.get_body(preferencelist=("html",)) is not None
    path = _path(link)
    page = client.get(path).get_data(as_text=True)
    # Policy applies and a refused password changes nothing.
    before = user_row(svc, "ann").password_hash
    resp = client.post(
        path, data={"csrf_token": csrf(page), "new_password": "password1", "confirm": "password1"}
    )
    assert resp.status_code == 400 and user_row(svc, "ann").password_hash == before
    resp = client.post(path, data={"csrf_token": csrf(page), "new_password": NEW, "confirm": NEW})
    assert resp.status_code == 302
    assert login(app.test_client(), "ann", NEW).status_code == 302
    assert login(app.test_client(), "ann", GOOD).status_code == 401
    # Existing sessions ended; the link is single-use.
    assert old_browser.get("/account/").status_code == 302
    assert client.get(path).status_code == 400
    assert "password.change" in audit_actions(svc)


def test_reset_for_unknown_address_looks_the_same_and_sends_nothing(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    before = counts(svc)
    a = post_form(app.test_client(), "/password/reset", {"email": "ghost@example.org"})
    b = post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    assert a.status_code == b.status_code == 200
    main_a = a.get_data(as_text=True).split("<main")[1].split("</main>")[0]
    assert main_a == b.get_data(as_text=True).split("<main")[1].split("</main>")[0]
    assert len(outbox(svc)) == 1
    assert counts(svc)["users"] == before["users"]


def test_reset_without_csrf_refused(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    resp = app.test_client().post("/password/reset", data={"email": "ann@example.org"})
    assert resp.status_code == 400 and outbox(svc) == []


def test_reset_link_expires(make_app):
    clock = FrozenClock()
    app = make_app(clock=clock)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    path = _path(link_in(outbox(svc)[0], "/password/reset/"))
    clock.advance(3601)
    assert app.test_client().get(path).status_code == 400


def test_reset_with_security_questions(make_app):
    app = make_app(recovery={"security_questions": True, "security_questions_count": 2})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    questions = svc.settings.recovery.questions
    resp = post_form(
        client,
        "/account/security-questions",
        {
            "question_0": questions[0],
            "answer_0": "Rex the Dog",
            "question_1": questions[1],
            "answer_1": "St. Louis",
        },
    )
    assert resp.status_code == 302
    post_form(app.test_client(), "/password/reset", {"email": "ann@example.org"})
    path = _path(link_in(outbox(svc)[-1], "/password/reset/"))
    other = app.test_client()
    page = other.get(path).get_data(as_text=True)
    assert questions[0] in page
    before = user_row(svc, "ann").password_hash
    resp = other.post(
        path,
        data={
            "csrf_token": csrf(page),
            "answer_0": "rex",
            "answer_1": "x",
            "new_password": NEW,
            "confirm": NEW,
        },
    )
    assert resp.status_code == 400 and user_row(svc, "ann").password_hash == before
    resp = other.post(
        path,
        data={
            "csrf_token": csrf(page),
            # Asked in alphabetical order of the question: the city question comes first.
            "answer_0": "st louis",
            "answer_1": "rex the dog",
            "new_password": NEW,
            "confirm": NEW,
        },
    )
    assert resp.status_code == 302
    assert login(app.test_client(), "ann", NEW).status_code == 302


def test_first_login_magic_link_with_control_word(make_app):
    app = make_app(issuer=ISSUER)
    svc = app.extensions["idp"]
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)
    # Wrong control word: same answer, no mail.
    resp = post_form(
        app.test_client(),
        "/login/first",
        {"email": "newbie@example.org", "control_word": "red harbour"},
    )
    assert resp.status_code == 200 and outbox(svc) == []
    post_form(
        app.test_client(),
        "/login/first",
        {"email": "newbie@example.org", "control_word": "blue  HARBOUR"},
    )
    (mail,) = outbox(svc)
    path = _path(link_in(mail, "/login/magic/"))
    client = app.test_client()
    resp = post_form(client, path, {})
    assert resp.headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    assert "Welcome" in page
    resp = client.post(
        "/login/step", data={"csrf_token": csrf(page), "new_password": NEW, "confirm": NEW}
    )
    assert resp.status_code == 302 and client.get_cookie(COOKIE)
    assert user_row(svc, "newbie").email_verified is True
    assert post_form(app.test_client(), path, {}, page="/login").status_code == 400  # single use
    assert login(app.test_client(), "newbie", NEW).status_code == 302


def test_registration_with_verification_and_approval(make_app):
    app = make_app(
        issuer=ISSUER,
        registration={
            "enabled": True,
            "require_approval": True,
            "admin_emails": ["boss@example.org"],
        },
    )
    svc = app.extensions["idp"]
    client = app.test_client()
    assert "Create an account" in client.get("/login").get_data(as_text=True)
    form = {
        "username": "reg1",
        "email": "reg1@example.org",
        "given_name": "Reg",
        "family_name": "One",
        "new_password": NEW,
        "confirm": NEW,
    }
    bad = dict(form, new_password="password", confirm="password")
    before = counts(svc)
    assert post_form(client, "/register", bad).status_code == 400
    assert counts(svc)["users"] == before["users"]
    assert post_form(client, "/register", form).status_code == 200
    assert user_row(svc, "reg1").status == "pending"
    assert login(app.test_client(), "reg1", NEW).status_code == 403
    (verify,) = outbox(svc)
    post_form(client, _path(link_in(verify, "/verify-email/")), {})
    assert user_row(svc, "reg1").email_verified is True
    assert user_row(svc, "reg1").status == "pending"
    approval = outbox(svc)[-1]
    assert approval["To"] == "boss@example.org"
    path = _path(link_in(approval, "/register/approve/"))
    page = app.test_client().get(path).get_data(as_text=True)
    resp = app.test_client().post(path, data={"csrf_token": csrf(page), "approve": "Approve"})
    # CSRF is bound to the browser session: another browser's token is refused.
    assert resp.status_code == 400 and user_row(svc, "reg1").status == "pending"
    admin = app.test_client()
    page = admin.get(path).get_data(as_text=True)
    resp = admin.post(path, data={"csrf_token": csrf(page), "approve": "Approve"})
    assert resp.status_code == 200 and user_row(svc, "reg1").status == "active"
    assert "approved" in outbox(svc)[-1]["Subject"]
    assert login(app.test_client(), "reg1", NEW).status_code == 302
    # Duplicate registration refused, nothing created.
    before = counts(svc)
    assert post_form(app.test_client(), "/register", form).status_code == 400
    assert counts(svc)["users"] == before["users"]


def test_registration_closed_by_default(make_app):
    assert make_app().test_client().get("/register").status_code == 404


def test_registration_domain_allowlist(make_app):
    app = make_app(registration={"enabled": True, "allowed_domains": ["corp.example"]})
    svc = app.extensions["idp"]
    form = {"username": "x1", "email": "x1@gmail.example", "new_password": NEW, "confirm": NEW}
    assert post_form(app.test_client(), "/register", form).status_code == 400
    with svc.sessions() as db:
        assert db.scalar(select(User).where(User.username == "x1")) is None
