"""The account area (issue 23): the overview's security status, e-mail change through a link to
the new address (and every way that link must fail while changing nothing), session cards with
device names, apps and named buttons, filtered and paginated activity with translated names,
plain-word app permissions, the grouped "Signing in" page and the named TOTP device."""

import re
from datetime import timedelta

import pyotp
import pytest
from login_kit import GOOD, audit_actions, csrf, login, make_user, outbox, text_of, user_row
from sqlalchemy import func, select

from idp.sso.sessions import COOKIE, session_id_of
from idp.storage.audit import audit
from idp.storage.models import AuditEvent, Client, User
from idp.storage.models_mfa import MfaTotp

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def app(make_app, clock):
    app = make_app(clock=clock)
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann", family_name="Lee", timezone="Europe/Berlin")
    make_user(svc, "bob", email="bob@example.org")
    return app


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


def _client(app, user="ann", ua=CHROME):
    c = app.test_client()
    c.environ_base["HTTP_USER_AGENT"] = ua
    assert login(c, user, GOOD).status_code == 302
    return c


@pytest.fixture
def client(app):
    return _client(app)


def _email_rows(svc) -> dict[str, str | None]:
    with svc.sessions() as db:
        return dict(db.execute(select(User.username, User.email)).all())


def _links(svc, to: str) -> list[str]:
    found = []
    for msg in outbox(svc):
        if msg["To"] == to:
            found += re.findall(r"https?://\S+/account/email/confirm/\S+", text_of(msg))
    return found


def _request_change(client, new: str, password: str = GOOD):
    page = client.get("/account/profile").get_data(as_text=True)
    return client.post(
        "/account/email",
        data={"csrf_token": csrf(page), "new_email": new, "password": password},
    )


def _path(link: str) -> str:
    return link[link.index("/account/") :]


def _confirm(client, link: str):
    page = client.get(_path(link))
    if page.status_code != 200:
        return page
    return client.post(_path(link), data={"csrf_token": csrf(page.get_data(as_text=True))})


# --- overview ---------------------------------------------------------------------------------


def test_overview_shows_the_security_status(app, svc, client):
    with svc.sessions.begin() as db:
        row = db.scalar(select(User).where(User.username == "ann"))
        row.password_changed_at = svc.clock.utcnow() - timedelta(days=95)
    page = client.get("/account/").get_data(as_text=True)
    assert "Ann Lee" in page and "ann@example.org" in page
    assert ">AL<" in page  # initials stand in for a missing picture
    assert "Set up two-factor authentication" in page and 'href="/account/mfa"' in page
    assert "Changed 3 months ago" in page
    assert re.search(r'<p class="stat">1</p>', page)  # one active session
    assert "This is your first sign-in." in page
    second = _client(app)
    page = second.get("/account/").get_data(as_text=True)
    assert "Previous sign-in" in page and "from 127.0.0.1" in page
    assert 'href="/account/profile"' in page


# --- e-mail change ------------------------------------------------------------------------------


def test_email_change_through_the_link_sent_to_the_new_address(app, svc, client):
    resp = _request_change(client, "ann.new@example.org")
    assert resp.status_code == 302
    assert user_row(svc, "ann").email == "ann@example.org"  # not before the link is opened
    links = _links(svc, "ann.new@example.org")
    assert len(links) == 1 and _links(svc, "ann@example.org") == []
    page = client.get(_path(links[0]))
    assert page.status_code == 200 and "ann.new@example.org" in page.get_data(as_text=True)
    assert user_row(svc, "ann").email == "ann@example.org"  # a GET (mail scanners) changes nothing
    assert _confirm(client, links[0]).status_code == 302
    row = user_row(svc, "ann")
    assert row.email == "ann.new@example.org" and row.email_verified
    notices = [m for m in outbox(svc) if m["To"] == "ann@example.org"]
    assert len(notices) == 1 and "ann.new@example.org" in text_of(notices[0])
    actions = audit_actions(svc)
    assert "email.change_requested" in actions and "email.changed" in actions


def test_reused_link_changes_nothing(app, svc, client):
    _request_change(client, "ann.new@example.org")
    link = _links(svc, "ann.new@example.org")[0]
    assert _confirm(client, link).status_code == 302
    _request_change(client, "ann.third@example.org", GOOD)  # a later request, a new link
    before = audit_actions(svc).count("email.changed")
    resp = _confirm(client, link)
    assert resp.status_code == 400 and "not valid" in resp.get_data(as_text=True)
    assert user_row(svc, "ann").email == "ann.new@example.org"
    assert audit_actions(svc).count("email.changed") == before


def test_expired_link_changes_nothing(app, svc, client, clock):
    _request_change(client, "ann.new@example.org")
    link = _links(svc, "ann.new@example.org")[0]
    clock.advance(svc.settings.recovery.token_minutes * 60 + 5)
    client = _client(app)  # the first session has idled out meanwhile
    resp = _confirm(client, link)
    assert resp.status_code == 400
    assert user_row(svc, "ann").email == "ann@example.org"
    assert "email.changed" not in audit_actions(svc)


def test_link_opened_by_another_user_changes_nothing(app, svc, client):
    _request_change(client, "ann.new@example.org")
    link = _links(svc, "ann.new@example.org")[0]
    bob = _client(app, "bob")
    assert bob.get(_path(link)).status_code == 400
    token = csrf(bob.get("/account/profile").get_data(as_text=True))
    assert bob.post(_path(link), data={"csrf_token": token}).status_code == 400
    assert _email_rows(svc) == {"ann": "ann@example.org", "bob": "bob@example.org"}
    # Bob's attempt did not spend Ann's link.
    assert _confirm(client, link).status_code == 302
    assert user_row(svc, "ann").email == "ann.new@example.org"


def test_link_needs_a_signed_in_session(app, svc, client):
    _request_change(client, "ann.new@example.org")
    link = _links(svc, "ann.new@example.org")[0]
    resp = app.test_client().get(_path(link))
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    assert user_row(svc, "ann").email == "ann@example.org"


def test_taken_address_gets_the_same_answer_and_no_link(app, svc, client):
    before = _email_rows(svc)
    taken = _request_change(client, "BOB@example.org")
    taken_page = client.get(taken.headers["Location"]).get_data(as_text=True)
    free = _request_change(client, "ann.free@example.org")
    free_page = client.get(free.headers["Location"]).get_data(as_text=True)
    assert taken.status_code == free.status_code == 302
    assert taken.headers["Location"] == free.headers["Location"]
    assert "We sent a confirmation link to BOB@example.org." in taken_page
    assert "We sent a confirmation link to ann.free@example.org." in free_page
    assert _links(svc, "BOB@example.org") == []
    notices = [m for m in outbox(svc) if m["To"] == "BOB@example.org"]
    assert len(notices) == 1 and "already belongs to an account" in text_of(notices[0])
    assert _email_rows(svc) == before


def test_taken_meanwhile_refused_at_confirmation(app, svc, client):
    _request_change(client, "shared@example.org")
    link = _links(svc, "shared@example.org")[0]
    with svc.sessions.begin() as db:
        db.scalar(select(User).where(User.username == "bob")).email = "shared@example.org"
    resp = _confirm(client, link)
    assert resp.status_code == 409
    assert _email_rows(svc) == {"ann": "ann@example.org", "bob": "shared@example.org"}


@pytest.mark.parametrize(
    "data, status",
    [
        ({"new_email": "ann.new@example.org", "password": "wrong"}, 400),
        ({"new_email": "not-an-address", "password": GOOD}, 400),
        ({"new_email": "ann@example.org", "password": GOOD}, 400),  # the current one
        ({"new_email": "x@example.org\r\nBcc: evil@example.org", "password": GOOD}, 400),
    ],
)
def test_bad_email_change_requests_change_nothing(app, svc, client, data, status):
    page = client.get("/account/profile").get_data(as_text=True)
    before = _email_rows(svc)
    resp = client.post("/account/email", data={"csrf_token": csrf(page), **data})
    assert resp.status_code == status
    assert _email_rows(svc) == before
    assert outbox(svc) == []
    assert "email.change_requested" not in audit_actions(svc)


def test_email_change_without_csrf_refused(app, svc, client):
    resp = client.post("/account/email", data={"new_email": "x@example.org", "password": GOOD})
    assert resp.status_code == 400
    assert outbox(svc) == [] and user_row(svc, "ann").email == "ann@example.org"


# --- sessions -----------------------------------------------------------------------------------


def test_session_cards_name_devices_apps_and_buttons(app, svc, client):
    phone = _client(app, ua=IPHONE)
    with svc.sessions.begin() as db:
        db.add(Client(client_id="wiki", name="Team Wiki", meta={}))
    sid = session_id_of(phone.get_cookie(COOKIE).value)
    with app.test_request_context():
        svc.sso_sessions.add_relying_party(sid, "oidc:wiki", {"client_id": "wiki"})
        svc.sso_sessions.add_relying_party(sid, "saml:https://sp.example.org", {})
    page = client.get("/account/sessions").get_data(as_text=True)
    assert "Chrome 120 on Linux" in page and "iPhone" in page
    assert page.count("This device") == 1
    assert "Team Wiki" in page and "https://sp.example.org" in page
    assert CHROME not in page and IPHONE not in page  # never the raw user agent
    assert re.search(r'Sign out<span class="visually-hidden"> Mobile Safari 17 on iPhone', page)
    assert "Sign out everywhere" in page
    assert "Europe/Berlin" in page  # times in the person's zone, and the page says so
    assert sid not in page


def test_signing_out_one_session_keeps_the_others(app, svc, client):
    phone = _client(app, ua=IPHONE)
    third = _client(app)
    page = client.get("/account/sessions").get_data(as_text=True)
    handles = re.findall(r'name="session" value="([^"]+)"', page)
    assert len(handles) == 3  # two sessions + "others"
    phone_handle = re.search(
        r'name="session" value="([^"]+)">\s*<button[^>]*>Sign out<span class="visually-hidden"> '
        r"Mobile Safari",
        page,
    ).group(1)
    resp = client.post(
        "/account/sessions", data={"csrf_token": csrf(page), "session": phone_handle}
    )
    assert resp.status_code == 302
    assert phone.get("/account/").status_code == 302
    assert third.get("/account/").status_code == 200 and client.get("/account/").status_code == 200
    # An unknown handle ends nothing.
    before = svc.sessions().scalar(select(func.count()).select_from(AuditEvent))
    client.post("/account/sessions", data={"csrf_token": csrf(page), "session": "nope"})
    assert third.get("/account/").status_code == 200
    assert svc.sessions().scalar(select(func.count()).select_from(AuditEvent)) == before + 1


# --- activity -----------------------------------------------------------------------------------


def _add_events(svc, user_uuid: str, action: str, n: int, clock, days_ago: int = 0) -> None:
    with svc.sessions.begin() as db:
        for _ in range(n):
            audit(
                db,
                action,
                actor=user_uuid,
                target=user_uuid,
                at=svc.clock.utcnow() - timedelta(days=days_ago),
            )


def test_activity_filters_and_pages_in_sql(app, svc, client, clock):
    uuid = user_row(svc, "ann").uuid
    _add_events(svc, uuid, "mfa.totp_enrolled", 30, clock)
    _add_events(svc, uuid, "password.change", 1, clock, days_ago=200)
    page = client.get("/account/activity?kind=security").get_data(as_text=True)
    assert "Authenticator app set up" in page and 'data-action="login.success"' not in page
    assert "Page 1 of 2" in page and "30 events" in page
    assert page.count('data-action="mfa.totp_enrolled"') == 25
    page2 = client.get("/account/activity?kind=security&page=2").get_data(as_text=True)
    assert page2.count('data-action="mfa.totp_enrolled"') == 5
    signins = client.get("/account/activity?kind=signins").get_data(as_text=True)
    assert 'data-action="login.success"' in signins
    assert "Authenticator app set up" not in signins
    old = client.get("/account/activity?kind=security&range=365&page=2").get_data(as_text=True)
    assert "Password changed" in old and "31 events" in old
    assert "Password changed" not in page  # older than the default 90 days


@pytest.mark.parametrize(
    "query", ["kind=evil", "range=-1", "page=abc", "page=999999999", "page=0&range=all"]
)
def test_activity_bad_filters_fall_back(app, client, query):
    resp = client.get(f"/account/activity?{query}")
    assert resp.status_code == 200 and "Signed in" in resp.get_data(as_text=True)


def test_activity_in_german(app, svc, client):
    login(app.test_client(), "ann", "wrong-password")
    page = client.get("/account/activity", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert 'lang="de"' in page
    assert 'data-action="login.failure"' in page
    assert "Sign-in failed" not in page  # the German name once the catalog has it


def test_activity_shows_only_my_events(app, svc, client):
    bob = user_row(svc, "bob").uuid
    _add_events(svc, bob, "mfa.totp_enrolled", 3, None)
    page = client.get("/account/activity?kind=all").get_data(as_text=True)
    assert 'data-action="mfa.totp_enrolled"' not in page


# --- applications -------------------------------------------------------------------------------


def test_apps_in_plain_words_with_open_and_named_revoke(app, svc, client):
    revoked = []
    entry = (
        lambda s, user: [
            {
                "key": "rp1",
                "name": "Wiki",
                "scopes": ["openid", "email", "custom:thing"],
                "client_uri": "https://wiki.example.org/",
            }
        ],
        lambda s, user, key: revoked.append(key),
    )
    svc.consent_sources.append(entry)
    try:
        page = client.get("/account/apps").get_data(as_text=True)
        assert "Sign you in with your account" in page and "Your e-mail address" in page
        assert "custom:thing" in page
        assert 'href="https://wiki.example.org/"' in page
        assert 'Revoke access<span class="visually-hidden"> Wiki</span>' in page
        client.post("/account/apps", data={"csrf_token": csrf(page), "app": "rp1"})
        assert revoked == ["rp1"]
    finally:
        svc.consent_sources.remove(entry)


# --- signing in (MFA) ---------------------------------------------------------------------------


def _reauth(client):
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    resp = client.post(
        "/account/mfa/reauth",
        data={"csrf_token": csrf(page), "password": GOOD, "next": "/account/mfa/totp"},
    )
    assert resp.status_code == 302


def test_signing_in_page_groups_methods(app, client):
    page = client.get("/account/mfa").get_data(as_text=True)
    assert "Signing in" in page
    for heading in ("Password", "Authenticator app", "Backup codes"):
        assert heading in page
    assert "Set up an authenticator app" in page


def test_totp_setup_offers_the_link_apps_and_stores_the_name(app, svc, client, clock):
    _reauth(client)
    page = client.get("/account/mfa/totp").get_data(as_text=True)
    uri = re.search(r'id="totp-open" href="(otpauth://totp/[^"]+)"', page).group(1)
    for name in ("FreeOTP", "Aegis", "Google Authenticator", "Microsoft Authenticator"):
        assert name in page
    secret = re.search(r"secret=([A-Z2-7]+)", uri).group(1)
    code = pyotp.TOTP(secret).at(clock.now())
    resp = client.post(
        "/account/mfa/totp",
        data={"csrf_token": csrf(page), "code": code, "name": "Work phone"},
    )
    assert resp.status_code in (200, 302)
    with svc.sessions() as db:
        uid = db.scalar(select(User.id).where(User.username == "ann"))
        assert db.get(MfaTotp, uid).name == "Work phone"
    overview = client.get("/account/mfa").get_data(as_text=True)
    assert "Work phone" in overview


def test_email_change_requests_are_limited_before_the_password_is_checked(app, svc, client):
    page = client.get("/account/profile").get_data(as_text=True)
    token = csrf(page)
    for _ in range(5):
        data = {"csrf_token": token, "new_email": "x@example.org", "password": "wrong"}
        assert client.post("/account/email", data=data).status_code == 400
    data = {"csrf_token": token, "new_email": "x@example.org", "password": GOOD}
    resp = client.post("/account/email", data=data)
    assert resp.status_code == 429 and "Too many requests" in resp.get_data(as_text=True)
    assert outbox(svc) == [] and user_row(svc, "ann").email == "ann@example.org"


def test_real_consents_show_open_only_for_a_safe_client_uri(app, svc, client):
    from idp.storage.models_oauth import Consent

    ann = user_row(svc, "ann").id
    with svc.sessions.begin() as db:
        db.add(
            Client(client_id="wiki", name="Wiki", meta={"client_uri": "https://wiki.example.org/"})
        )
        db.add(Client(client_id="evil", name="Evil", meta={"client_uri": "javascript:alert(1)"}))
        db.flush()
        db.add(Consent(user_id=ann, client_id="wiki", scopes=["openid", "email"]))
        db.add(Consent(user_id=ann, client_id="evil", scopes=["openid"]))
    page = client.get("/account/apps").get_data(as_text=True)
    assert 'href="https://wiki.example.org/"' in page
    assert 'Open<span class="visually-hidden"> Wiki</span>' in page
    assert "javascript:" not in page and 'Open<span class="visually-hidden"> Evil' not in page
    assert "Your e-mail address" in page


def test_password_change_reports_every_broken_rule_beside_its_field(app, client, svc):
    """Issue 23: every failed rule at once, beside the new-password field; the mismatch beside
    the repeat field; the stored hash unchanged."""
    before = user_row(svc, "ann").password_hash
    page = client.get("/account/password").get_data(as_text=True)
    resp = client.post(
        "/account/password",
        data={
            "csrf_token": csrf(page),
            "current_password": GOOD,
            "new_password": "ann",
            "confirm": "something else",
        },
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    beside = re.search(r'<ul class="field-error" id="new_password-error">(.*?)</ul>', html, re.S)
    assert beside, "the rules are not listed beside the new-password field"
    assert beside.group(1).count("<li>") >= 2
    assert 'id="confirm-error"' in html and "do not match" in html
    assert 'aria-describedby="password-rules new_password-error"' in html
    assert user_row(svc, "ann").password_hash == before
