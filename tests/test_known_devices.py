"""Known devices and the new-device mail: the device cookie's lifecycle (first sign-in quiet,
a second browser mailed with the right content, the same browser quiet, a forgotten device new
again), forged and other people's cookies treated as new without showing anything of the other
person, "forget and sign out", the console and REST API views, and erasure removing devices."""

from __future__ import annotations

import re

import pytest
from admin_kit import make_admin, signed_in
from api_kit import service_token
from login_kit import GOOD, csrf, make_user, outbox, text_of
from sqlalchemy import func, select

from idp.sso.devices import COOKIE
from idp.sso.sessions import COOKIE as SESSION_COOKIE
from idp.storage.models import User
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_devices import KnownDevice, KnownDeviceSession
from tests.geo_kit import write_city_db

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
LONDON = "81.2.69.160"


@pytest.fixture
def app(make_app, clock, tmp_path):
    city = write_city_db(tmp_path / "city.mmdb")
    app = make_app(clock=clock, geoip={"database": str(city)})
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann", timezone="Europe/Berlin")
    make_user(svc, "bob")
    return app


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


def browser(app, ua=CHROME, ip="127.0.0.1"):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = ua
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def sign_in(client, username="ann"):
    page = client.get("/login?prompt=login").get_data(as_text=True)
    resp = client.post(
        "/login", data={"csrf_token": csrf(page), "username": username, "password": GOOD}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return resp


def new_device_mails(svc, to="ann@example.org"):
    return [m for m in outbox(svc) if m["To"] == to and "New sign-in" in m["Subject"]]


def device_rows(svc, username="ann"):
    with svc.sessions() as db:
        uid = db.scalar(select(User.id).where(User.username == username))
        rows = db.scalars(select(KnownDevice).where(KnownDevice.user_id == uid)).all()
        for r in rows:
            db.expunge(r)
        return rows


def test_cookie_lifecycle_first_quiet_second_mailed_same_quiet_forgotten_mailed(app, svc):
    first = browser(app)
    resp = sign_in(first)
    header = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert f"Max-Age={365 * 86400}" in header
    raw = first.get_cookie(COOKIE).value
    (row,) = device_rows(svc)
    assert raw not in row.cookie_hash and row.cookie_hash != raw  # only a keyed hash is kept
    assert row.name == "Chrome 120 on Linux"
    assert new_device_mails(svc) == []  # the account's very first device

    phone = browser(app, IPHONE, LONDON)
    sign_in(phone)
    (mail,) = new_device_mails(svc)
    body = text_of(mail)
    assert "iPhone" in body
    # 1_800_000_000 is 2027-01-15 08:00 UTC: 09:00 in Berlin, the user's zone.
    assert "January 15, 2027" in body and "9:00:00" in body and "Europe/Berlin" in body
    assert LONDON in body and "London, United Kingdom" in body
    assert "/account/sessions" in body and "/account/password" in body
    assert len(device_rows(svc)) == 2

    sign_in(phone)  # the same browser again
    sign_in(first)
    assert len(new_device_mails(svc)) == 1
    assert len(device_rows(svc)) == 2

    # Forget the phone from the first browser: the phone's next sign-in is new again.
    page = first.get("/account/devices").get_data(as_text=True)
    assert "iPhone" in page and "This device" in page
    phone_row = next(r for r in device_rows(svc) if "iPhone" in r.name)
    resp = first.post(
        "/account/devices", data={"csrf_token": csrf(page), "device": str(phone_row.id)}
    )
    assert resp.status_code == 302
    assert len(device_rows(svc)) == 1
    # Forgetting alone ends no session: the phone is still signed in.
    assert phone.get("/account/").status_code == 200
    sign_in(phone)
    assert len(new_device_mails(svc)) == 2


def test_unknown_location_and_address_said_plainly(app, svc):
    sign_in(browser(app))
    sign_in(browser(app, IPHONE, "10.1.2.3"))  # a private address: never looked up
    body = text_of(new_device_mails(svc)[0])
    assert "Location: unknown" in body and "10.1.2.3" in body


def test_forged_cookie_is_a_new_device_and_is_replaced(app, svc):
    sign_in(browser(app))
    forged = browser(app, IPHONE)
    forged.set_cookie(COOKIE, "A" * 43)
    sign_in(forged)
    assert len(new_device_mails(svc)) == 1
    kept = forged.get_cookie(COOKIE).value
    assert kept != "A" * 43  # a made-up value is never adopted
    # Garbage (wrong shape, too long) is treated the same, and nothing breaks.
    junk = browser(app, IPHONE)
    junk.set_cookie(COOKIE, "<script>" * 40)
    sign_in(junk)
    assert len(new_device_mails(svc)) == 2


def test_another_users_cookie_is_a_new_device_for_them_and_shows_nothing_of_theirs(app, svc):
    sign_in(browser(app), "bob")  # bob's first device elsewhere
    shared = browser(app)
    sign_in(shared, "ann")
    ann_cookie = shared.get_cookie(COOKIE).value
    sign_in(shared, "bob")  # the same browser, another person
    assert len(new_device_mails(svc, "bob@example.org")) == 1
    assert shared.get_cookie(COOKIE).value == ann_cookie  # a shared browser keeps its id
    sign_in(shared, "ann")
    assert new_device_mails(svc) == []  # ann still knows it

    # bob's device page lists his devices only; ann's device id is not his to forget.
    sign_in(shared, "bob")
    page = shared.get("/account/devices").get_data(as_text=True)
    (ann_row,) = device_rows(svc, "ann")
    assert f'value="{ann_row.id}"' not in page and "ann@" not in page
    resp = shared.post(
        "/account/devices", data={"csrf_token": csrf(page), "device": str(ann_row.id)}
    )
    assert resp.status_code == 302
    assert [r.id for r in device_rows(svc, "ann")] == [ann_row.id]
    # The cookie of a browser only ann uses, copied into bob's browser: new for bob.
    anns_own = browser(app, IPHONE)
    sign_in(anns_own, "ann")
    copied = browser(app, IPHONE)
    copied.set_cookie(COOKIE, anns_own.get_cookie(COOKIE).value)
    sign_in(copied, "bob")
    assert len(new_device_mails(svc, "bob@example.org")) == 2


def test_forget_and_sign_out_ends_that_devices_sessions_only(app, svc):
    mine = browser(app)
    sign_in(mine)
    phone = browser(app, IPHONE)
    sign_in(phone)
    tablet = browser(app, IPHONE.replace("iPhone", "iPad"))
    sign_in(tablet)
    phone_row = next(r for r in device_rows(svc) if r.name.endswith("iPhone"))
    page = mine.get("/account/devices").get_data(as_text=True)
    mine.post(
        "/account/devices",
        data={"csrf_token": csrf(page), "device": str(phone_row.id), "end_sessions": "1"},
    )
    assert phone.get("/account/").status_code == 302  # signed out
    assert tablet.get("/account/").status_code == 200
    assert mine.get("/account/").status_code == 200
    with svc.sessions() as db:
        assert (
            db.scalar(
                select(func.count())
                .select_from(KnownDeviceSession)
                .where(KnownDeviceSession.device_id == phone_row.id)
            )
            == 0
        )


def test_stale_form_changes_nothing(app, svc):
    client = browser(app)
    sign_in(client)
    (row,) = device_rows(svc)
    resp = client.post("/account/devices", data={"device": str(row.id)})
    assert resp.status_code == 400 and "Traceback" not in resp.get_data(as_text=True)
    assert len(device_rows(svc)) == 1


def test_admin_sees_and_forgets_devices_in_console_and_api(app, svc):
    make_admin(svc, "root")
    sign_in(browser(app))
    sign_in(browser(app, IPHONE, LONDON))
    with svc.sessions() as db:
        ann = db.scalar(select(User).where(User.username == "ann"))
    console = signed_in(app, "root")
    page = console.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert "Devices" in page and "iPhone" in page and "London, United Kingdom" in page

    token = service_token(app)
    api = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    listed = api.get(f"/api/v1/users/{ann.uuid}/devices", headers=auth)
    assert listed.status_code == 200
    items = listed.json["items"]
    assert {i["name"] for i in items} == {"Chrome 120 on Linux", "Mobile Safari 17 on iPhone"}
    assert all("cookie" not in k for i in items for k in i)
    phone = next(i for i in items if "iPhone" in i["name"])
    assert phone["last_location"] == "London, United Kingdom" and phone["last_ip"] == LONDON
    gone = api.delete(f"/api/v1/users/{ann.uuid}/devices/{phone['id']}", headers=auth)
    assert gone.status_code == 204
    again = api.delete(f"/api/v1/users/{ann.uuid}/devices/{phone['id']}", headers=auth)
    assert again.status_code == 404
    assert again.headers["Content-Type"].startswith("application/problem+json")
    assert len(device_rows(svc)) == 1
    # Another user's device id under ann's URL is not found, and stays.
    sign_in(browser(app), "bob")
    (bobs,) = device_rows(svc, "bob")
    wrong = api.delete(f"/api/v1/users/{ann.uuid}/devices/{bobs.id}", headers=auth)
    assert wrong.status_code == 404 and len(device_rows(svc, "bob")) == 1
    # Digits of other scripts (str.isdigit() says yes, int() says no) are no id.
    for odd in ("¹", "٣"):
        odd_one = api.delete(f"/api/v1/users/{ann.uuid}/devices/{odd}", headers=auth)
        assert odd_one.status_code == 404 and len(device_rows(svc)) == 1


def test_deleting_a_user_removes_their_devices(app, svc):
    from idp.manage import Actor, transaction
    from idp.manage import users as manage_users

    sign_in(browser(app))
    with transaction(svc, Actor.operator("test")) as ctx:
        ann = ctx.db.scalar(select(User).where(User.username == "ann"))
        manage_users.delete(ctx, ann, sessions=svc.sso_sessions)
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(KnownDevice)) == 0
        assert db.scalar(select(func.count()).select_from(KnownDeviceSession)) == 0
        assert db.scalar(select(func.count()).select_from(SsoSessionIndex)) == 0


def test_session_cookie_untouched_by_device_cookie(app):
    client = browser(app)
    sign_in(client)
    assert client.get_cookie(SESSION_COOKIE).value != client.get_cookie(COOKIE).value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", client.get_cookie(COOKIE).value)


def test_a_user_keeps_at_most_max_per_user_devices_the_least_recently_seen_forgotten(
    make_app, clock
):
    """Browsers that never keep cookies (or a script) add a device at every sign-in: the rows
    stay bounded by ``[devices] max_per_user``; the one dropped is the one seen least recently,
    and its sessions go on."""
    app = make_app(clock=clock, devices={"max_per_user": 3})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    kept = browser(app)
    sign_in(kept)
    others = []
    for _ in range(3):
        clock.advance(60)
        others.append(browser(app, IPHONE))
        sign_in(others[-1])
    # Four browsers, three kept: the first browser (seen least recently) was forgotten.
    rows = device_rows(svc)
    assert len(rows) == 3 and all("iPhone" in r.name for r in rows)
    assert kept.get("/account/").status_code == 200  # its session goes on
    clock.advance(60)
    sign_in(others[0])  # seen again: now the most recent of the three
    clock.advance(60)
    sign_in(kept)  # new again: forgets others[1], seen least recently
    rows = device_rows(svc)
    assert len(rows) == 3 and sum("Chrome" in r.name for r in rows) == 1
    with svc.sessions() as db:
        links = db.scalar(select(func.count()).select_from(KnownDeviceSession))
    assert links == 6 - 2  # the links of the two forgotten devices went with them
    assert len(new_device_mails(svc)) == 4  # three phones, then the forgotten first browser
