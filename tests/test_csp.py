"""Content Security Policy: scripts run only when this response allowed them.

Every response carries ``script-src 'self' 'nonce-<fresh>'; object-src 'none'; base-uri 'none';
frame-ancestors 'none'`` with a nonce new for each response (CSP Level 3, the nonce-source
expression and the security consideration "Nonce Reuse": unguessable, at least 128 bits, a
unique value each time a policy is sent). Every ``<script>`` a page
renders carries that response's nonce, also on the kept (pre-rendered) pages; no template has an
inline event handler or a ``javascript:`` URL (neither could carry a nonce). ``form-action`` is
deliberately absent (see idp.app.content_security_policy). The browser tier
(tests/browser/test_csp_browser.py) shows the auto-submitting pages still post.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from login_kit import GOOD, csrf, login, make_user

from idp.resources import resource_dir

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]{22,})'")
SCRIPT = re.compile(r"<script\b([^>]*)>", re.I)
RP = "https://rp.example.org/cb"
SP_METADATA = """<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
 entityID="https://sp.example.org/metadata">
 <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
  <md:AssertionConsumerService index="0" Location="https://sp.example.org/acs"
   Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"/>
 </md:SPSSODescriptor>
</md:EntityDescriptor>"""


def policy_of(resp) -> dict[str, list[str]]:
    header = resp.headers["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        assert name not in directives, f"{name} twice"
        directives[name] = values
    return directives


def nonce_of(resp) -> str:
    (source,) = [s for s in policy_of(resp)["script-src"] if s.startswith("'nonce-")]
    return NONCE.fullmatch(source).group(1)


def scripts(html: str) -> list[str]:
    """The attributes of every <script> that runs: a data block (``type="application/json"``)
    is never executed (HTML Living Standard, "data block"), so CSP does not govern it."""
    return [a for a in SCRIPT.findall(html) if 'type="application/json"' not in a]


# Every page built on base.html also loads the design system's idp.js.
DESIGN_SCRIPTS = 1


def assert_scripts_carry(html: str, nonce: str) -> int:
    """Every <script> in ``html`` has exactly this nonce; returns how many there are."""
    tags = scripts(html)
    for attrs in tags:
        assert f'nonce="{nonce}"' in attrs, attrs
    return len(tags)


def test_policy_on_html_and_json_responses(make_app):
    client = make_app().test_client()
    for path, kind in [
        ("/login", "text/html"),
        ("/password/reset", "text/html"),
        ("/no-such-page", "text/html"),
        ("/healthz", "application/json"),
    ]:
        resp = client.get(path, headers={"Accept": "text/html"} if kind == "text/html" else {})
        assert resp.mimetype == kind, path
        policy = policy_of(resp)
        assert policy["script-src"][0] == "'self'" and len(policy["script-src"]) == 2
        nonce_of(resp)
        assert policy["object-src"] == ["'none'"]
        assert policy["base-uri"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "form-action" not in policy and "default-src" not in policy
        assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
        assert "unsafe-eval" not in resp.headers["Content-Security-Policy"]


def test_nonce_is_fresh_for_every_response_also_on_the_kept_login_page(make_app):
    client = make_app().test_client()
    nonces = [nonce_of(client.get("/login")) for _ in range(5)]
    nonces += [nonce_of(make_app().test_client().get("/login"))]
    assert len(set(nonces)) == len(nonces)


def test_saml_post_page_script_has_this_responses_nonce(make_app):
    """The SAML POST page is kept pre-rendered (idp.web.kept): its nonce must still be this
    response's, never the one of the request that first rendered the page."""
    from idp.saml.registry import SpRegistry
    from idp.web.saml.sso import launcher_url

    app = make_app()
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        entity = SpRegistry(db).add(SP_METADATA).entity_id
    make_user(svc, "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    seen = set()
    for _ in range(3):
        resp = client.get(launcher_url(entity))
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200 and 'name="SAMLResponse"' in html
        nonce = nonce_of(resp)
        assert assert_scripts_carry(html, nonce) == 1 + DESIGN_SCRIPTS
        assert 'action="https://sp.example.org/acs"' in html
        seen.add(nonce)
    assert len(seen) == 3


def test_form_post_page_script_has_this_responses_nonce(make_app):
    from idp.storage.clients import ClientRegistry

    app = make_app()
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        ClientRegistry(db, svc.hasher, svc.sealer).create(
            "web", name="Web", redirect_uris=[RP], scope="openid"
        )
    make_user(svc, "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": RP,
        "scope": "openid",
        "state": "s1",
        "response_mode": "form_post",
    }
    resp = client.get("/oauth2/authorize", query_string=params)
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/oauth2/consent")
    consent = client.get(resp.headers["Location"])
    assert_scripts_carry(consent.get_data(as_text=True), nonce_of(consent))
    resp = client.post(
        resp.headers["Location"],
        data={"csrf_token": csrf(consent.get_data(as_text=True)), "approve": "Allow"},
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and f'action="{RP}"' in html and 'name="code"' in html
    assert assert_scripts_carry(html, nonce_of(resp)) == 1 + DESIGN_SCRIPTS
    assert nonce_of(resp) != nonce_of(consent)


def test_kept_login_page_with_the_passkey_script_has_this_responses_nonce(make_app):
    """With passkey sign-in on, the kept login page loads webauthn.js: each response's script
    tag carries that response's own nonce."""
    # localhost: passkeys are offered only where WebAuthn can work (not on an IP address).
    client = make_app(webauthn={"passwordless": True}, issuer="http://localhost:5000").test_client()
    seen = set()
    for _ in range(3):
        resp = client.get("/login")
        assert 'id="passkey-login"' in resp.get_data(as_text=True)
        assert (
            assert_scripts_carry(resp.get_data(as_text=True), nonce_of(resp)) == 1 + DESIGN_SCRIPTS
        )
        seen.add(nonce_of(resp))
    assert len(seen) == 3


def test_signed_out_and_passkey_pages_carry_the_nonce(make_app):
    """The signed-out page with its redirect script, and the passkey management page."""
    from flask import g, render_template

    app = make_app()
    with app.test_request_context("/"):
        g.csp_nonce = "n0nce-for-this-test-0123456789"
        html = render_template(
            "logged_out.html", frames=["https://rp.example/fc"], target="https://rp.example/"
        )
    assert assert_scripts_carry(html, "n0nce-for-this-test-0123456789") == 1 + DESIGN_SCRIPTS
    make_user(app.extensions["idp"], "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    resp = client.get("/account/webauthn")
    assert resp.status_code == 200
    assert assert_scripts_carry(resp.get_data(as_text=True), nonce_of(resp)) == 1 + DESIGN_SCRIPTS


# Mails are read in mail clients, not under this policy (and none has a script).
TEMPLATES = sorted(
    p for p in Path(resource_dir("templates")).rglob("*.html") if p.parent.name != "mail"
)
HANDLER = re.compile(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", re.S)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.name))
def test_no_template_has_an_inline_handler_or_a_script_without_the_nonce(path):
    text = path.read_text()
    assert not HANDLER.search(text), "inline event handler"
    assert "javascript:" not in text.lower()
    for attrs in scripts(text):
        # csp_nonce in page templates, script_nonce() in macros imported without context.
        assert 'nonce="{{ csp_nonce }}"' in attrs or 'nonce="{{ script_nonce() }}"' in attrs, attrs


def test_the_template_scan_finds_what_it_should():
    assert HANDLER.search('<button type="button" onclick="go()">')
    assert HANDLER.search('<body\n  onload="x()">')
    assert not HANDLER.search('<form method="post" action="/login">')
    assert not HANDLER.search("<p>Press on=the button</p>")
    assert len(TEMPLATES) > 20
