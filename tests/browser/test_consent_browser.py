"""Real headless Chromium walks an OpenID Connect sign-in with the consent page: the relying
party (a real loopback HTTP server) sends the browser to the authorization endpoint, the hosted
login, the consent page (client name and the scopes in plain words), Allow, and the code arriving
at the redirect URI; then the remembered consent (no page the second time) and Deny.
Screenshots go to artifacts/browser/."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from browser_kit import shot
from login_kit import GOOD, make_user


class RelyingParty:
    """The application: a real HTTP server on loopback that records every callback."""

    def __init__(self) -> None:
        arrived = self.arrived = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path.startswith("/callback"):  # not the browser's /favicon.ico
                    arrived.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<!doctype html><title>Team Notes</title><p>Signed in.</p>")

            def log_message(self, *args):
                return

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.callback = f"http://127.0.0.1:{self.httpd.server_address[1]}/callback"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def last(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.arrived[-1]).query)


def _client(svc, callback: str) -> None:
    from idp.storage.clients import ClientRegistry

    with svc.sessions.begin() as db:
        ClientRegistry(db, svc.hasher, svc.sealer).create(
            "notes",
            name="Team Notes",
            redirect_uris=[callback],
            scope="openid profile email offline_access",
            extra={"policy_uri": "https://rp.example.org/privacy"},
        )


def _authorize_url(base: str, callback: str, state: str, scope: str = "openid profile email"):
    return (
        base
        + "/oauth2/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": "notes",
                "redirect_uri": callback,
                "scope": scope,
                "state": state,
            }
        )
    )


def test_consent_allow_remembered_then_deny(server, page):
    app, base = server
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    rp = RelyingParty()
    _client(svc, rp.callback)
    try:
        page.goto(_authorize_url(base, rp.callback, "s1"))
        page.get_by_label("Username or e-mail").fill("ann")
        page.get_by_label("Password", exact=True).fill(GOOD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(base + "/oauth2/consent*")
        assert page.get_by_role("heading").first.inner_text() == (
            "Team Notes wants to access your account"
        )
        scopes = page.locator("#scopes li").all_inner_texts()
        assert "Your e-mail address" in scopes and len(scopes) == 3
        assert page.get_by_role("link", name="Privacy policy").get_attribute("href") == (
            "https://rp.example.org/privacy"
        )
        shot(page, "40-consent")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(rp.callback + "*")
        got = rp.last()
        assert got["state"] == ["s1"] and got["code"] and got["iss"] == [base]
        shot(page, "41-consent-allowed")

        # Remembered: the same scopes again go straight back to the application.
        page.goto(_authorize_url(base, rp.callback, "s2"))
        page.wait_for_url(rp.callback + "*state=s2*")
        assert rp.last()["state"] == ["s2"] and rp.last()["code"]

        # More scope than consented (offline_access) asks again; Deny answers access_denied.
        page.goto(
            _authorize_url(base, rp.callback, "s3", scope="openid profile email offline_access")
        )
        page.wait_for_url(base + "/oauth2/consent*")
        assert "Keep access while you are away" in page.content()
        page.get_by_role("button", name="Deny").click()
        page.wait_for_url(rp.callback + "*state=s3*")
        denied = rp.last()
        assert denied["error"] == ["access_denied"] and denied["state"] == ["s3"]
        assert "code" not in denied
        shot(page, "42-consent-denied")
    finally:
        rp.httpd.shutdown()
