"""Real headless Chromium as the person of an RFC 8628 device sign-in: the device (requests)
starts it and polls; the browser opens verification_uri_complete, finds the code filled in,
signs in through the hosted login, sees the confirmation (client, code, phishing warning) and
approves; the device then gets its tokens. axe-core checks both pages. Screenshots go to
artifacts/browser/."""

from __future__ import annotations

import time

import requests
from browser_kit import axe_violations, shot
from login_kit import GOOD, make_user

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def _poll(base: str, device_code: str) -> dict:
    return requests.post(f"{base}/oauth2/token", timeout=10, data={
        "grant_type": DEVICE, "device_code": device_code, "client_id": "tv"}).json()


def test_a_person_approves_a_device_in_the_browser(serve, page):
    from idp.storage.clients import ClientRegistry

    app, base = serve(device={"interval": 1})
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    with svc.sessions.begin() as db:
        ClientRegistry(db, svc.hasher, svc.sealer).create(
            "tv", name="Living Room TV", grant_types=[DEVICE], auth_method="none",
            scope="openid profile")
    started = requests.post(f"{base}/oauth2/device_authorization", timeout=10,
                            data={"client_id": "tv", "scope": "openid profile"}).json()
    assert _poll(base, started["device_code"])["error"] == "authorization_pending"

    page.goto(started["verification_uri_complete"])
    assert page.get_by_label("Code").input_value() == started["user_code"]
    assert axe_violations(page) == []
    shot(page, "70-device-code")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Username or e-mail").fill("ann")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/device/confirm*")
    assert page.get_by_role("heading").first.inner_text() == (
        "Living Room TV wants to access your account")
    assert page.locator("#user-code").inner_text() == started["user_code"]
    assert "Only continue if you started this on your device." in page.content()
    assert axe_violations(page) == []
    shot(page, "71-device-confirm")
    page.get_by_role("button", name="Approve").click()
    assert page.get_by_role("heading").first.inner_text() == "Device connected"
    shot(page, "72-device-connected")

    time.sleep(1.1)  # the interval
    token = _poll(base, started["device_code"])
    assert token["token_type"] == "Bearer" and token["id_token"]
