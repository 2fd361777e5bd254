"""The admin API's session list (issue 19): device, browser and OS from the user agent, IP,
location from [geoip] ("Unknown location" without a database), created and last activity."""

from __future__ import annotations

from api_kit import service_token
from geo_kit import write_city_db
from login_kit import GOOD, login, make_user

from idp.storage.models import User

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def _sessions(app, uid: int) -> list[dict]:
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        uuid = db.get(User, uid).uuid
    headers = {"Authorization": "Bearer " + service_token(app)}
    resp = app.test_client().get(f"/api/v1/users/{uuid}/sessions", headers=headers)
    assert resp.status_code == 200
    return resp.json["items"]


def _sign_in(app, ip: str):
    browser = app.test_client()
    browser.environ_base.update(REMOTE_ADDR=ip, HTTP_USER_AGENT=CHROME)
    assert login(browser, "ann", GOOD).status_code == 302
    return browser


def test_sessions_show_device_ip_location_and_activity(make_app, clock, tmp_path):
    app = make_app(clock=clock, geoip={"database": str(write_city_db(tmp_path / "city.mmdb"))})
    uid = make_user(app.extensions["idp"], "ann")
    browser = _sign_in(app, "81.2.69.160")
    clock.advance(600)
    assert browser.get("/account/").status_code == 200  # moves the idle timer
    (item,) = _sessions(app, uid)
    assert item["device"] == "Chrome 120 on Linux"
    assert item["browser"] == "Chrome 120" and item["os"] == "Linux"
    assert item["ip"] == "81.2.69.160" and item["location"] == "London, United Kingdom"
    assert item["last_activity"] > item["created_at"]


def test_without_a_database_the_location_is_unknown(make_app, clock):
    app = make_app(clock=clock)
    uid = make_user(app.extensions["idp"], "ann")
    _sign_in(app, "81.2.69.160")
    (item,) = _sessions(app, uid)
    assert item["location"] == "Unknown location"
