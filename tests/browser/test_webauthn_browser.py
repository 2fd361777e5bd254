"""Real headless Chromium (Debian's, through Playwright) with Chromium's virtual authenticator
(DevTools protocol, WebAuthn domain: CTAP2, internal transport, resident keys, user
verification) enrols a passkey on the account page, signs out, and signs in with the passkey
alone: through conditional UI, then with the "Sign in with a passkey" button. The server's
issuer is http://localhost:<port>: browsers refuse IP addresses as RP IDs.
Screenshots go to artifacts/browser/."""

from __future__ import annotations

import pytest
from browser_kit import running_server, shot
from login_kit import GOOD, make_user
from sqlalchemy import select


@pytest.fixture
def localhost_server(instance_dir):
    with running_server(instance_dir, host="localhost") as served:
        yield served


def test_enrol_a_passkey_then_sign_in_with_it_alone(localhost_server, page):
    from idp.sso.sessions import session_id_of
    from idp.storage.models_auth import SsoSessionIndex
    from idp.storage.models_webauthn import WebAuthnCredential

    app, base = localhost_server
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")

    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]

    page.goto(base + "/login")
    page.get_by_role("button", name="Sign in with a passkey").wait_for()
    shot(page, "webauthn-02-login-with-passkey-button")
    assert page.get_by_label("Username or e-mail").get_attribute("autocomplete") == (
        "username webauthn"
    )
    page.get_by_label("Username or e-mail").fill("ann")
    page.get_by_label("Password", exact=True).fill(GOOD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + "/account/")

    page.goto(base + "/account/webauthn")
    page.get_by_label("Name (for example").fill("Laptop")
    page.get_by_role("button", name="Add security key or passkey").click()
    page.wait_for_selector("text=was added")
    shot(page, "webauthn-01-passkey-added")
    keys = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(keys) == 1 and keys[0]["isResidentCredential"]
    with svc.sessions() as db:
        (cred,) = db.scalars(select(WebAuthnCredential)).all()
        assert cred.name == "Laptop" and cred.discoverable is True and cred.amr == "swk"

    page.goto(base + "/logout")
    page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in page.content()

    # The login page starts a conditional-mediation get() (passkeys offered in the username
    # field's autofill); the virtual authenticator, simulating the person's choice and touch,
    # answers it at once, so the page signs in without a click and without the password.
    page.goto(base + "/login")
    page.wait_for_url(base + "/account/")
    shot(page, "webauthn-03-signed-in-with-passkey")
    assert "Ann" in page.content()
    with svc.sessions() as db:
        cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "idp_session")
        assert db.get(SsoSessionIndex, session_id_of(cookie)).amr.split() == ["swk", "mfa"]
        assert db.scalars(select(WebAuthnCredential)).one().last_used_at is not None

    # The button, as in a browser without conditional UI (the check answers false there).
    page.goto(base + "/logout")
    page.get_by_role("button", name="Sign out").click()
    page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = async () => false;")
    page.goto(base + "/login")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(base + "/account/")
    shot(page, "webauthn-04-signed-in-with-passkey-button")
