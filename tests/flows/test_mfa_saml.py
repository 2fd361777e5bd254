"""MFA for SAML service providers through the real /login and MFA step of a live IdP, with
pysaml2 as the SP validating the signed response: an SP policy demands the second factor, a
RequestedAuthnContext asks for it (step-up), and AuthnContextClassRef states what was done."""

from __future__ import annotations

import re

import pyotp
import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp

pytestmark = pytest.mark.slow

SP = "https://sp.example.org/metadata"
PASSWORD = "Tr0ub4dor-Horse-Battery"
PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
REFEDS_MFA = "https://refeds.org/profile/mfa"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def _user(idp, username: str, totp: bool) -> pyotp.TOTP | None:
    from idp.backends import totp as totp_backend
    from idp.backends.chain import password_hasher
    from idp.storage.directory import Directory, NewUser

    svc = idp.svc
    with svc.sessions.begin() as db:
        user = Directory(db).create_user(
            NewUser(
                username=username,
                email=f"{username}@example.org",
                password_hash=password_hasher(svc).hash(PASSWORD),
            )
        )
        uid = user.id
    if not totp:
        return None
    secret = totp_backend.new_secret()
    with svc.sessions.begin() as db:
        totp_backend.save(svc, db, uid, secret)
    return pyotp.TOTP(secret)


def _start(idp, client, browser, rac=None):
    kwargs = {"requested_authn_context": rac} if rac else {}
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        relay_state="/after",
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **kwargs,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?r=")
    return reqid, r.headers["Location"]


def _password(idp, browser, login_url, username):
    page = browser.get(idp.url + login_url, timeout=10).text
    rid = login_url.split("r=", 1)[1]
    return browser.post(
        idp.url + "/login",
        data={"csrf_token": _csrf(page), "username": username, "password": PASSWORD, "r": rid},
        allow_redirects=False,
        timeout=10,
    )


def _response(idp, client, browser, resp, reqid):
    while resp.status_code in (302, 303):
        resp = browser.get(
            idp.url + resp.headers["Location"]
            if resp.headers["Location"].startswith("/")
            else resp.headers["Location"],
            allow_redirects=False,
            timeout=10,
        )
    _, fields = form_with(resp.text, "SAMLResponse")
    parsed = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/after"}
    )
    return parsed.assertion.authn_statement[0].authn_context.authn_context_class_ref.text


def _code_step(idp, browser, code):
    page = browser.get(idp.url + "/login/step", timeout=10).text
    return browser.post(
        idp.url + "/login/step",
        data={"csrf_token": _csrf(page), "code": code, "factor": "totp"},
        allow_redirects=False,
        timeout=10,
    )


@pytest.fixture
def idp(instance_dir):
    with live_idp(instance_dir, mfa={"policies": [f"sp:{SP}"]}) as live:
        yield live


def test_sp_policy_demands_the_second_factor(idp, tmp_path):
    client, md = pysaml2_sp(tmp_path, requests.get(idp.metadata_url, timeout=10).text, entity_id=SP)
    idp.register_sp(md)
    t = _user(idp, "ann", totp=True)
    _user(idp, "bob", totp=False)
    browser = requests.Session()
    reqid, login = _start(idp, client, browser)
    r = _password(idp, browser, login, "ann")
    assert r.headers["Location"] == "/login/step"
    # Between the factors there is no SSO session: a new request goes to the login again.
    _start(idp, client, browser)
    r = _code_step(idp, browser, t.now())
    assert _response(idp, client, browser, r, reqid) == REFEDS_MFA
    # bob has no factor: the SP's policy sends him to set one up first (mfa.enroll_at_login),
    # with no SAMLResponse and no session before he has.
    browser = requests.Session()
    reqid, login = _start(idp, client, browser)
    r = _password(idp, browser, login, "bob")
    assert r.headers["Location"] == "/login/step"
    page = browser.get(idp.url + "/login/step", timeout=10).text
    assert "Set up two-factor authentication" in page and "SAMLResponse" not in page


def test_requested_authn_context_steps_up(instance_dir, tmp_path):
    with live_idp(instance_dir) as idp:
        client, md = pysaml2_sp(
            tmp_path, requests.get(idp.metadata_url, timeout=10).text, entity_id=SP
        )
        idp.register_sp(md)
        _user(idp, "carl", totp=False)
        t = _user(idp, "dora", totp=True)
        # Single factor where nothing more is asked: PasswordProtectedTransport.
        browser = requests.Session()
        reqid, login = _start(idp, client, browser)
        r = _password(idp, browser, login, "carl")
        assert _response(idp, client, browser, r, reqid) == PPT
        # The SP asks for MFA: carl's session does not answer it, and carl has no factor.
        rac = RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=REFEDS_MFA)], comparison="exact"
        )
        reqid, login = _start(idp, client, browser, rac)
        r = _password(idp, browser, login, "carl")
        assert r.headers["Location"] == "/login/step"
        # dora passes her second factor and the assertion says so.
        browser = requests.Session()
        reqid, login = _start(idp, client, browser, rac)
        _password(idp, browser, login, "dora")
        r = _code_step(idp, browser, t.now())
        assert _response(idp, client, browser, r, reqid) == REFEDS_MFA


def test_sp_policy_binds_an_existing_single_factor_session(idp, tmp_path):
    """A password-only session made at an SP without a policy must not answer the SP whose
    policy demands MFA: the request goes to the login (which steps up) instead of getting a
    PasswordProtectedTransport assertion."""
    metadata = requests.get(idp.metadata_url, timeout=10).text
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    strict, md = pysaml2_sp(tmp_path / "a", metadata, entity_id=SP)
    idp.register_sp(md)
    relaxed, md = pysaml2_sp(tmp_path / "b", metadata, entity_id="https://wiki.example.org/md")
    idp.register_sp(md)
    _user(idp, "erin", totp=False)
    browser = requests.Session()
    reqid, login = _start(idp, relaxed, browser)
    r = _password(idp, browser, login, "erin")
    assert _response(idp, relaxed, browser, r, reqid) == PPT  # signed in, one factor
    # The same browser at the strict SP: sent to the login, not answered from the session.
    _start(idp, strict, browser)
