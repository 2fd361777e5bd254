"""Web SSO end to end with pysaml2 as a real SP (its own keys and metadata): the SP validates
our signed metadata, responses and assertions itself."""

from __future__ import annotations

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT, AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp

pytestmark = pytest.mark.slow


@pytest.fixture
def idp(instance_dir):
    with live_idp(instance_dir) as live:
        yield live


def _metadata(idp) -> str:
    r = requests.get(idp.metadata_url, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/samlmetadata+xml")
    return r.text


def _sso(idp, client, browser, binding, **kwargs):
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        relay_state="/after",
        binding=binding,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **kwargs,
    )
    if binding == BINDING_HTTP_REDIRECT:
        loc = dict(info["headers"])["Location"]
        r = browser.get(loc, allow_redirects=False, timeout=10)
    else:
        action, fields = form_with(info["data"], "SAMLRequest")
        r = browser.post(action, data=fields, allow_redirects=False, timeout=10)
    return reqid, r


@pytest.mark.parametrize("binding", [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST])
def test_sp_initiated_sso_both_bindings(idp, tmp_path, binding):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp), sign_requests=True)
    idp.register_sp(sp_md)
    uuid = idp.create_user("alice", groups=["staff"], member_of=["staff"])
    browser = requests.Session()
    idp.login(browser, uuid)

    reqid, r = _sso(idp, client, browser, binding)
    assert r.status_code == 200, r.text[:500]
    action, fields = form_with(r.text, "SAMLResponse")
    assert action == "https://sp.example.org/acs"
    assert fields["RelayState"] == "/after"
    assert ">Continue<" in r.text  # works without JavaScript

    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/after"}
    )
    assert resp is not None
    assert resp.in_response_to == reqid
    ava = resp.get_identity()
    assert ava["mail"] == ["alice@example.org"]
    assert ava["givenName"] == ["Alice"]
    assert ava["sn"] == ["Liddell"]
    assert ava["uid"] == ["alice"]
    assert ava["isMemberOf"] == ["staff"]
    assert resp.assertion.subject.name_id.format == NAMEID_FORMAT_PERSISTENT
    assert resp.assertion.authn_statement[0].session_index
    audience = resp.assertion.conditions.audience_restriction[0].audience[0].text
    assert audience == "https://sp.example.org/metadata"


def test_persistent_name_id_is_pairwise_and_stable(idp, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    md = _metadata(idp)
    sp_a, md_a = pysaml2_sp(tmp_path / "a", md, entity_id="https://a.example.org/sp")
    sp_b, md_b = pysaml2_sp(tmp_path / "b", md, entity_id="https://b.example.org/sp")
    idp.register_sp(md_a)
    idp.register_sp(md_b)
    uuid = idp.create_user("bob")
    browser = requests.Session()
    idp.login(browser, uuid)

    def name_id(client):
        reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT)
        _, fields = form_with(r.text, "SAMLResponse")
        resp = client.parse_authn_request_response(
            fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
        )
        return resp.assertion.subject.name_id.text

    first_a, second_a, at_b = name_id(sp_a), name_id(sp_a), name_id(sp_b)
    assert first_a == second_a
    assert first_a != at_b
    assert "bob" not in first_a


def test_email_and_transient_formats(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    idp.register_sp(sp_md)
    uuid = idp.create_user("carol")
    browser = requests.Session()
    idp.login(browser, uuid)
    reqid, r = _sso(
        idp, client, browser, BINDING_HTTP_REDIRECT, nameid_format=NAMEID_FORMAT_EMAILADDRESS
    )
    _, fields = form_with(r.text, "SAMLResponse")
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    assert resp.assertion.subject.name_id.text == "carol@example.org"

    from saml2.saml import NAMEID_FORMAT_TRANSIENT

    def transient(browser) -> str:
        reqid, r = _sso(
            idp, client, browser, BINDING_HTTP_REDIRECT, nameid_format=NAMEID_FORMAT_TRANSIENT
        )
        _, fields = form_with(r.text, "SAMLResponse")
        resp = client.parse_authn_request_response(
            fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
        )
        assert resp.assertion.subject.name_id.format == NAMEID_FORMAT_TRANSIENT
        return resp.assertion.subject.name_id.text

    # A transient identifier lives as long as the SSO session (as its SessionIndex does):
    # a repeat SSO to the same SP gets the same one, another session a new one.
    first = transient(browser)
    assert first != "carol@example.org" and transient(browser) == first
    other = requests.Session()
    idp.login(other, uuid)
    assert transient(other) not in (first, "carol@example.org")


def test_encrypted_assertion_aes_gcm_rsa_oaep(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp), encryption=True)
    idp.register_sp(sp_md)
    uuid = idp.create_user("dave")
    browser = requests.Session()
    idp.login(browser, uuid)
    reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT)
    _, fields = form_with(r.text, "SAMLResponse")
    import base64

    raw = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "EncryptedAssertion" in raw
    assert "http://www.w3.org/2009/xmlenc11#aes128-gcm" in raw
    assert "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p" in raw
    assert "dave@example.org" not in raw
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    assert resp.get_identity()["mail"] == ["dave@example.org"]


def test_without_session_goes_to_login_then_resumes(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    idp.register_sp(sp_md)
    uuid = idp.create_user("erin")
    browser = requests.Session()
    reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT)
    assert r.status_code == 302
    login = r.headers["Location"]
    assert login.startswith("/login?r=")
    rid = login.split("=", 1)[1]
    # What the hosted login does on success: create the session, go to resume_url.
    idp.login(browser, uuid)
    areq = _load_request(idp, rid)
    assert areq.resume_url == f"/saml/resume?r={rid}"
    r = browser.get(idp.url + areq.resume_url, timeout=10)
    _, fields = form_with(r.text, "SAMLResponse")
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/after"}
    )
    assert resp.get_identity()["uid"] == ["erin"]
    # The request is taken once: resuming again is refused.
    again = browser.get(idp.url + areq.resume_url, timeout=10)
    assert again.status_code == 400
    assert "SAMLResponse" not in again.text


def _load_request(idp, rid):
    from idp.web.sso import sessions

    with idp.app.test_request_context("/"):
        return sessions().load_request(rid)


def test_force_authn_and_is_passive(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    idp.register_sp(sp_md)
    uuid = idp.create_user("frank")
    browser = requests.Session()
    # IsPassive without a session: a NoPassive status, not a login page.
    reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT, is_passive="true")
    _, fields = form_with(r.text, "SAMLResponse")
    import base64

    raw = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "urn:oasis:names:tc:SAML:2.0:status:NoPassive" in raw
    assert "Assertion" not in raw.replace("AssertionConsumer", "")
    # ForceAuthn with a session: back to the login.
    idp.login(browser, uuid)
    reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT, force_authn="true")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?r=")


def test_requested_mfa_context_needs_mfa_session(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    idp.register_sp(sp_md)
    uuid = idp.create_user("grace")
    browser = requests.Session()
    idp.login(browser, uuid, amr=("pwd",))
    rac = RequestedAuthnContext(
        authn_context_class_ref=[AuthnContextClassRef(text="https://refeds.org/profile/mfa")],
        comparison="exact",
    )
    _, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT, requested_authn_context=rac)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?r=")

    browser = requests.Session()
    idp.login(browser, uuid, amr=("pwd", "otp"))
    reqid, r = _sso(idp, client, browser, BINDING_HTTP_REDIRECT, requested_authn_context=rac)
    _, fields = form_with(r.text, "SAMLResponse")
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    ref = resp.assertion.authn_statement[0].authn_context.authn_context_class_ref.text
    assert ref == "https://refeds.org/profile/mfa"


def test_idp_initiated_sso(idp, tmp_path):
    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    entity = idp.register_sp(sp_md, default_relay_state="/home")
    uuid = idp.create_user("heidi")
    browser = requests.Session()
    idp.login(browser, uuid)
    from idp.web.saml.sso import launcher_url

    r = browser.get(idp.url + launcher_url(entity), timeout=10)
    action, fields = form_with(r.text, "SAMLResponse")
    assert fields["RelayState"] == "/home"
    resp = client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST)
    assert resp.in_response_to is None
    assert resp.get_identity()["uid"] == ["heidi"]


def test_post_page_escapes_values_and_speaks_each_users_language(idp, tmp_path):
    """The auto-submitting form page is kept per language with the values put in: a hostile
    RelayState comes back escaped and intact, a request without one has no RelayState field,
    and a German-speaking user's page is German while the next English one is not."""
    from idp.storage.directory import Directory

    client, sp_md = pysaml2_sp(tmp_path, _metadata(idp))
    idp.register_sp(sp_md)
    anna, bob = idp.create_user("anna"), idp.create_user("bob")
    with idp.svc.sessions.begin() as db:
        Directory(db).user_by_username("anna").locale = "de"
    hostile = "\"'><script>alert(1)</script>&amp;"

    def sso(user_uuid: str, relay_state: str | None):
        browser = requests.Session()
        idp.login(browser, user_uuid)
        reqid, info = client.prepare_for_authenticate(
            entityid=idp.metadata_url, relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
        )
        r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
        assert r.status_code == 200, r.text[:300]
        action, fields = form_with(r.text, "SAMLResponse")
        parsed = client.parse_authn_request_response(
            fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
        )
        assert parsed.in_response_to == reqid and action == "https://sp.example.org/acs"
        return r.text, fields

    for _ in range(2):  # the second time from the kept page
        page, fields = sso(anna, hostile)
        assert fields["RelayState"] == hostile and "<script>alert" not in page
        assert '<html lang="de">' in page and ">Weiter<" in page
        page, fields = sso(bob, None)
        assert "RelayState" not in fields
        assert '<html lang="en">' in page and ">Continue<" in page
