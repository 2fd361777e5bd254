"""RequestedAuthnContext comparison semantics (saml-core 3.3.2.2.1) with pysaml2 as the SP,
for a password-only SSO session and a multi-factor one.

- exact: the stated class is one of those listed;
- minimum: at least as strong as one listed;
- maximum: as strong as possible without exceeding the listed ones;
- better: stronger than any listed.

The stated class is what the session achieved, never more; a session below every acceptable
class goes to the login to step up; a request no class of ours can answer gets a Response
with status Requester / NoAuthnContext (saml-core 3.2.2.2), never an assertion.
"""

from __future__ import annotations

import base64

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.response import StatusNoAuthnContext
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp

pytestmark = pytest.mark.slow

PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
MFA = "https://refeds.org/profile/mfa"
TIME_SYNC = "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
STEP_UP = "step-up"  # sent to the login for a second factor
REFUSED = "NoAuthnContext"

PWD, OTP = ("pwd",), ("pwd", "otp")

# (comparison, listed classes, outcome for a password-only session, outcome for an MFA one)
CASES = [
    ("exact", [PPT], PPT, PPT),
    ("exact", [MFA], STEP_UP, MFA),
    ("exact", [MFA, PASSWORD], PASSWORD, MFA),
    ("exact", [TIME_SYNC], STEP_UP, TIME_SYNC),
    ("minimum", [PPT], PPT, MFA),
    ("minimum", [PASSWORD], PASSWORD, MFA),
    ("minimum", [MFA], STEP_UP, MFA),
    ("maximum", [MFA], PPT, MFA),  # the bug: MFA was stated for a password-only session
    ("maximum", [TIME_SYNC], PPT, TIME_SYNC),
    ("maximum", [PPT], PPT, PPT),
    ("maximum", [PASSWORD, MFA], PASSWORD, MFA),
    ("better", [PPT], STEP_UP, MFA),
    ("better", [MFA], REFUSED, REFUSED),
    ("better", [PPT, MFA], REFUSED, REFUSED),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("authn-context")
    (base / "instance").mkdir()
    with live_idp(base / "instance") as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(base, md)
        idp.register_sp(sp_md)
        uuid = idp.create_user("ctx")
        yield idp, client, uuid


def _outcome(idp, client, browser, comparison, classes) -> str:
    rac = RequestedAuthnContext(
        authn_context_class_ref=[AuthnContextClassRef(text=c) for c in classes],
        comparison=comparison,
    )
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        relay_state="/after",
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        requested_authn_context=rac,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    if r.status_code == 302:
        assert r.headers["Location"].startswith("/login?r=")
        return STEP_UP
    assert r.status_code == 200, r.text[:300]
    _, fields = form_with(r.text, "SAMLResponse")
    raw = base64.b64decode(fields["SAMLResponse"])
    try:
        parsed = client.parse_authn_request_response(
            fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/after"}
        )
    except StatusNoAuthnContext:
        doc = etree.fromstring(raw)
        top = doc.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
        assert top.get("Value") == REQUESTER
        assert top.find(f"{{{SAMLP}}}StatusCode").get("Value") == NO_AUTHN_CONTEXT
        assert b"Assertion>" not in raw
        return REFUSED
    assert parsed.in_response_to == reqid
    return parsed.assertion.authn_statement[0].authn_context.authn_context_class_ref.text


@pytest.mark.parametrize(
    ("comparison", "classes", "with_password", "with_mfa"),
    CASES,
    ids=[
        f"{c[0]}-{'+'.join(x.rsplit('/', 1)[-1].rsplit(':', 1)[-1] for x in c[1])}" for c in CASES
    ],
)
def test_comparison_states_what_the_session_achieved(
    env, comparison, classes, with_password, with_mfa
):
    idp, client, uuid = env
    for amr, expected in ((PWD, with_password), (OTP, with_mfa)):
        browser = requests.Session()
        idp.login(browser, uuid, amr=amr)
        assert _outcome(idp, client, browser, comparison, classes) == expected, amr


def test_password_session_never_states_mfa(env):
    """Whatever the comparison, a password-only session is never stated as multi-factor."""
    idp, client, uuid = env
    browser = requests.Session()
    idp.login(browser, uuid, amr=PWD)
    for comparison in ("exact", "minimum", "maximum", "better"):
        for classes in ([MFA], [PPT, MFA], [TIME_SYNC, PASSWORD]):
            got = _outcome(idp, client, browser, comparison, classes)
            assert got not in (MFA, TIME_SYNC), (comparison, classes)


@pytest.mark.parametrize(("comparison", "classes"), [("better", [PPT]), ("minimum", [MFA])])
def test_step_up_through_the_login_states_mfa(instance_dir, tmp_path, comparison, classes):
    """A password-only sign-in asked for more goes through the real login's second factor,
    and only then is MFA stated."""
    from test_mfa_saml import _code_step, _password, _response, _start, _user

    with live_idp(instance_dir) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(tmp_path, md)
        idp.register_sp(sp_md)
        totp = _user(idp, "stella", totp=True)
        browser = requests.Session()
        rac = RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=c) for c in classes],
            comparison=comparison,
        )
        reqid, login = _start(idp, client, browser, rac)
        r = _password(idp, browser, login, "stella")
        assert r.headers["Location"] == "/login/step"
        r = _code_step(idp, browser, totp.now())
        assert _response(idp, client, browser, r, reqid) == MFA
