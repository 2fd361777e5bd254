"""Real headless Chromium under the IdP's Content Security Policy (nonce-based script-src, no
'unsafe-inline'): the pages that only work with their inline script still do (the SAML POST
binding page and the OAuth form_post page auto-submit to the relying party; the signed-out page
loads the front-channel logout iframes and returns to the application), and no page reports a
violation. Chromium reports each blocked script on the console ("Refused to ..." in older
versions, "Executing inline script violates the following Content Security Policy directive"
in Debian's current one); a probe page with a script without the nonce shows the listener hears
it. The relying party's origin
(https://rp.example.org, https://sp.example.org) is answered by Playwright's request routing.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode

import requests
from browser_kit import shot, sign_in
from login_kit import make_user

SP_METADATA = """<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
 entityID="https://sp.example.org/metadata">
 <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
  <md:AssertionConsumerService index="0" Location="https://sp.example.org/acs"
   Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"/>
 </md:SPSSODescriptor>
</md:EntityDescriptor>"""
RP = "https://rp.example.org"


class Watch:
    """The console's CSP reports and the requests that reached the relying party's origin."""

    def __init__(self, page) -> None:
        self.refused: list[str] = []
        self.arrived: list[tuple[str, str, str | None]] = []
        page.on("console", self._console)
        page.context.route("https://rp.example.org/**", self._answer)
        page.context.route("https://sp.example.org/**", self._answer)

    def _console(self, msg) -> None:
        if "Refused to" in msg.text or "Content Security Policy" in msg.text:
            self.refused.append(msg.text)

    def _answer(self, route) -> None:
        req = route.request
        self.arrived.append((req.method, req.url, req.post_data))
        route.fulfill(
            status=200,
            content_type="text/html",
            body="<!doctype html><title>Application</title><p>Back at the application.</p>",
        )


def test_the_listener_hears_a_script_without_the_nonce(server, page):
    """The control: the IdP's own policy on a page with one script lacking the nonce and one
    carrying it; Chromium refuses the first (and says so), runs the second."""
    app, base = server
    watch = Watch(page)
    policy = requests.get(base + "/login", timeout=5).headers["Content-Security-Policy"]
    nonce = policy.split("'nonce-")[1].split("'")[0]
    page.route(
        base + "/csp-probe",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": policy},
            body=(
                "<!doctype html><title>probe</title>"
                '<script>document.title = "injected ran";</script>'
                f'<script nonce="{nonce}">document.documentElement.dataset.ok = "1";</script>'
                "<button onclick=\"document.title = 'handler ran'\">x</button>"
            ),
        ),
    )
    page.goto(base + "/csp-probe")
    page.click("button")
    assert page.title() == "probe"
    assert page.evaluate("document.documentElement.dataset.ok") == "1"
    assert any("inline script violates" in m for m in watch.refused)
    assert any("inline event handler violates" in m for m in watch.refused)


def test_saml_post_page_auto_submits_to_the_sp(server, page):
    from idp.saml.registry import SpRegistry
    from idp.web.saml.sso import launcher_url

    app, base = server
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        entity = SpRegistry(db).add(SP_METADATA).entity_id
    make_user(svc, "ann")
    watch = Watch(page)
    sign_in(page, base, "ann")
    with page.expect_request("https://sp.example.org/acs"):
        page.goto(base + launcher_url(entity))
    page.wait_for_url("https://sp.example.org/acs")
    ((method, url, body),) = watch.arrived
    assert method == "POST" and url == "https://sp.example.org/acs"
    response = base64.b64decode(parse_qs(body)["SAMLResponse"][0])
    assert b"Assertion" in response and b"https://sp.example.org/acs" in response
    assert watch.refused == []
    shot(page, "60-saml-post-submitted")


def test_form_post_then_front_channel_logout(server, page):
    from idp.storage.clients import ClientRegistry

    app, base = server
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        _, secret = ClientRegistry(db, svc.hasher, svc.sealer).create(
            "notes",
            name="Team Notes",
            redirect_uris=[f"{RP}/cb"],
            scope="openid profile",
            post_logout_redirect_uris=[f"{RP}/bye"],
            extra={"frontchannel_logout_uri": f"{RP}/fc"},
        )
    make_user(svc, "ann")
    watch = Watch(page)
    sign_in(page, base, "ann")
    query = {
        "response_type": "code",
        "client_id": "notes",
        "redirect_uri": f"{RP}/cb",
        "scope": "openid profile",
        "state": "s1",
        "response_mode": "form_post",
    }
    page.goto(base + "/oauth2/authorize?" + urlencode(query))
    page.wait_for_url(base + "/oauth2/consent*")
    with page.expect_request(f"{RP}/cb"):
        page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{RP}/cb")
    method, url, body = watch.arrived[-1]
    posted = {k: v[0] for k, v in parse_qs(body).items()}
    assert method == "POST" and url == f"{RP}/cb"
    assert posted["state"] == "s1" and posted["code"] and posted["iss"] == base
    tokens = requests.post(
        base + "/oauth2/token",
        data={"grant_type": "authorization_code", "code": posted["code"]}
        | {"redirect_uri": f"{RP}/cb"},
        auth=("notes", secret),
        timeout=5,
    ).json()
    logout = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": f"{RP}/bye",
        "state": "z9",
    }
    page.goto(base + "/oauth2/logout?" + urlencode(logout))
    # The signed-out page's inline script returns to the application after its pause.
    page.wait_for_url(f"{RP}/bye?state=z9", timeout=10_000)
    urls = [u for _, u, _ in watch.arrived]
    assert any(u.startswith(f"{RP}/fc?") and "sid=" in u for u in urls)  # the iframe loaded
    assert watch.refused == []


def test_main_pages_report_no_violation(server, page):
    app, base = server
    make_user(app.extensions["idp"], "ann")
    watch = Watch(page)
    for path in ("/password/reset", "/login/first", "/no-such-page", "/login"):
        page.goto(base + path)
    # idp.js (same origin) ran: it adds the show/hide button to the password field. (The
    # passkey script is not on this page: the issuer is an IP address, where WebAuthn cannot
    # work; test_webauthn_browser runs it on localhost.)
    page.wait_for_selector("button.reveal", state="visible")
    sign_in(page, base, "ann")
    for path in (
        "/account/",
        "/account/password",
        "/account/sessions",
        "/account/mfa",
        "/account/webauthn",
    ):
        page.goto(base + path)
    page.goto(base + "/logout")
    page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in page.content()
    assert watch.refused == []
