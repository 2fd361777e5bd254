"""Account self-service: profile, avatar (validated with Pillow), password change ending the
other sessions, sessions list and revoke, activity, consent hook, data export, bad input."""

import io
import json

import pytest
from login_kit import GOOD, counts, csrf, login, make_user, user_row
from PIL import Image

from idp.sso.sessions import COOKIE

NEW = "Fresh-Cactus-Lamp-42"


@pytest.fixture
def app(make_app):
    app = make_app()
    make_user(app.extensions["idp"], "ann", given_name="Ann")
    return app


@pytest.fixture
def client(app):
    c = app.test_client()
    assert login(c, "ann", GOOD).status_code == 302
    return c


def _png(w, h, fmt="PNG"):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _upload(client, data, name="me.png"):
    token = csrf(client.get("/account/profile").get_data(as_text=True))
    return client.post(
        "/account/avatar",
        data={"csrf_token": token, "avatar": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_account_needs_a_session(app):
    resp = app.test_client().get("/account/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")


def test_profile_edit_and_read_only_fields(app, client):
    svc = app.extensions["idp"]
    page = client.get("/account/profile").get_data(as_text=True)  # the form moved off /account/
    assert "Company" in page and "managed by your administrator" in page
    resp = client.post(
        "/account/profile",
        data={
            "csrf_token": csrf(page),
            "given_name": "Anna",
            "family_name": "Smith",
            "phone": "+49 30 1234567",
            "locale": "de",
            "timezone": "Europe/Berlin",
            "company_id": "99",
            "username": "hijack",
        },
    )
    assert resp.status_code == 302
    user = user_row(svc, "ann")
    assert (user.given_name, user.family_name, user.locale, user.timezone) == (
        "Anna",
        "Smith",
        "de",
        "Europe/Berlin",
    )
    assert user.company_id is None and user.username == "ann"


def test_profile_bad_input_changes_nothing(app, client):
    svc = app.extensions["idp"]
    before = user_row(svc, "ann")
    page = client.get("/account/profile").get_data(as_text=True)
    bad = {"csrf_token": csrf(page), "phone": "<script>", "timezone": "Mars/Base"}
    assert client.post("/account/profile", data=bad).status_code == 400
    assert client.post("/account/profile", data={"given_name": "X"}).status_code == 400  # no CSRF
    after = user_row(svc, "ann")
    assert (after.phone, after.timezone, after.given_name) == (
        before.phone,
        before.timezone,
        before.given_name,
    )


def test_avatar_upload_resized(app, client):
    svc = app.extensions["idp"]
    assert _upload(client, _png(640, 480, "JPEG"), "me.jpg").status_code == 302
    name = user_row(svc, "ann").avatar
    resp = client.get(f"/avatars/{name}")
    assert resp.status_code == 200
    assert Image.open(io.BytesIO(resp.data)).size == (256, 256)


@pytest.mark.parametrize(
    "data, message",
    [
        (_png(100, 100), "at least 200"),
        (b"GIF89a not an image at all", "not a JPEG or PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a JPEG or PNG"),
        (b"x" * (2 * 1024 * 1024 + 10), "larger than 2 MB"),
    ],
)
def test_avatar_bad_uploads_refused_and_nothing_changed(app, client, data, message):
    svc = app.extensions["idp"]
    resp = _upload(client, data)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert user_row(svc, "ann").avatar is None


def test_avatar_gif_refused(app, client):
    buf = io.BytesIO()
    Image.new("RGB", (300, 300)).save(buf, format="GIF")
    resp = _upload(client, buf.getvalue(), "a.gif")
    assert resp.status_code == 400 and "Only JPEG and PNG" in resp.get_data(as_text=True)
    assert user_row(app.extensions["idp"], "ann").avatar is None


def test_password_change_ends_other_sessions(app, client):
    svc = app.extensions["idp"]
    other = app.test_client()
    login(other, "ann", GOOD)
    page = client.get("/account/password").get_data(as_text=True)
    before = counts(svc)
    resp = client.post(
        "/account/password",
        data={
            "csrf_token": csrf(page),
            "current_password": "wrong",
            "new_password": NEW,
            "confirm": NEW,
        },
    )
    assert resp.status_code == 400 and counts(svc)["history"] == before["history"]
    resp = client.post(
        "/account/password",
        data={
            "csrf_token": csrf(page),
            "current_password": GOOD,
            "new_password": GOOD,
            "confirm": GOOD,
        },
    )
    assert resp.status_code == 400  # the current password again: history
    resp = client.post(
        "/account/password",
        data={
            "csrf_token": csrf(page),
            "current_password": GOOD,
            "new_password": NEW,
            "confirm": NEW,
        },
    )
    assert resp.status_code == 302
    assert client.get("/account/").status_code == 200
    assert other.get("/account/").status_code == 302
    assert counts(svc)["history"] == before["history"] + 1


def test_sessions_list_and_revoke(app, client):
    other = app.test_client()
    login(other, "ann", GOOD)
    page = client.get("/account/sessions").get_data(as_text=True)
    assert page.count("This device") == 1
    assert client.get_cookie(COOKIE).value not in page  # session ids never reach HTML
    assert client.post("/account/sessions", data={"session": "others"}).status_code == 400
    assert other.get("/account/").status_code == 200
    resp = client.post("/account/sessions", data={"csrf_token": csrf(page), "session": "others"})
    assert resp.status_code == 302
    assert other.get("/account/").status_code == 302
    assert client.get("/account/").status_code == 200


def test_activity_lists_logins_and_failures(app, client):
    login(app.test_client(), "ann", "wrong-password")
    page = client.get("/account/activity").get_data(as_text=True)
    assert "login.success" in page and "login.failure" in page


def test_apps_hook(app, client):
    revoked = []
    entry = (
        lambda svc, user: [{"key": "rp1", "name": "Wiki", "scopes": ["openid", "email"]}],
        lambda svc, user, key: revoked.append(key),
    )
    app.extensions["idp"].consent_sources.append(entry)
    try:
        page = client.get("/account/apps").get_data(as_text=True)
        assert "Wiki" in page and "openid, email" in page
        assert client.post("/account/apps", data={"app": "rp1"}).status_code == 400
        assert revoked == []
        client.post("/account/apps", data={"csrf_token": csrf(page), "app": "rp1"})
        assert revoked == ["rp1"]
    finally:
        app.extensions["idp"].consent_sources.remove(entry)
    assert "not given any application" in client.get("/account/apps").get_data(as_text=True)


def test_export_my_data(app, client):
    resp = client.get("/account/export")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    data = json.loads(resp.data)
    assert data["profile"]["username"] == "ann" and data["profile"]["given_name"] == "Ann"
    assert len(data["sessions"]) == 1
    assert any(e["action"] == "login.success" for e in data["activity"])
    assert "password_hash" not in json.dumps(data)
