"""Hostile AuthnRequests and LogoutRequests: each gets an error page (or a SAML error status),
never an assertion, never a 500, and changes nothing (no replay entry, no NameID, no session
change)."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp
from sqlalchemy import func, select
from support import store_keys

pytestmark = pytest.mark.slow

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SP = "https://sp.example.org/metadata"
ACS = "https://sp.example.org/acs"


@pytest.fixture
def env(instance_dir, tmp_path):
    with live_idp(instance_dir) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(tmp_path, md, sign_requests=True)
        idp.register_sp(sp_md, want_authn_requests_signed=True)
        uuid = idp.create_user("mallory")
        browser = requests.Session()
        sid = idp.login(browser, uuid)
        yield idp, client, browser, sid


def _now(delta: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def authn_request_xml(
    idp, *, issuer=SP, acs=ACS, rid="_r1", instant=None, prolog="", name_id=""
) -> str:
    subject = f"<saml:Subject>{name_id}</saml:Subject>" if name_id else ""
    return (
        f"{prolog}<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='{rid}' "
        f"Version='2.0' IssueInstant='{instant or _now()}' Destination='{idp.url}/saml/sso' "
        f"AssertionConsumerServiceURL='{acs}'>"
        f"<saml:Issuer>{issuer}</saml:Issuer>{subject}</samlp:AuthnRequest>"
    )


def deflate(xml: str | bytes) -> str:
    data = xml.encode() if isinstance(xml, str) else xml
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(data) + c.flush()).decode()


def state(idp) -> tuple:
    """Everything a refused request must leave unchanged."""
    from idp.storage.models_saml import SamlPersistentId

    kv = tuple(store_keys(idp.svc))
    with idp.svc.sessions() as db:
        pids = db.scalar(select(func.count()).select_from(SamlPersistentId))
    return kv, pids


def assert_refused(r, before, idp):
    assert r.status_code in (400, 404, 413), r.status_code
    assert "SAMLResponse" not in r.text
    assert "Reference:" in r.text
    assert "Traceback" not in r.text
    assert state(idp) == before


def signed_redirect(client, idp, **kwargs):
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **kwargs,
    )
    return reqid, dict(info["headers"])["Location"]


XXE = "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
BOMB = (
    "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY a 'aaaaaaaaaa'>"
    "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda idp: authn_request_xml(idp, prolog=XXE), "a DTD", id="xxe"),
        pytest.param(
            lambda idp: authn_request_xml(idp, prolog=BOMB), "a DTD", id="entity-expansion"
        ),
        pytest.param(
            lambda idp: authn_request_xml(
                idp, name_id="<saml:NameID>admin<!-- x -->@evil.example</saml:NameID>"
            ),
            "comments or elements",
            id="comment-in-nameid",
        ),
        pytest.param(
            lambda idp: authn_request_xml(idp, issuer="https://unknown.example/sp"),
            "unknown service provider",
            id="unknown-issuer",
        ),
        pytest.param(
            lambda idp: authn_request_xml(idp, issuer="https://sp.example.org<!-- -->/metadata"),
            "comments or elements",
            id="comment-in-issuer",
        ),
        pytest.param(
            lambda idp: authn_request_xml(
                idp, issuer=f"{SP}</saml:Issuer><saml:Issuer>https://evil.example/sp"
            ),
            "repeated element",
            id="two-issuers",
        ),
        pytest.param(
            lambda idp: authn_request_xml(idp).replace("Version='2.0'", "Version='1.1'"),
            "not SAML 2.0",
            id="not-saml-2.0",
        ),
        pytest.param(
            lambda idp: authn_request_xml(idp).replace(" ID=", " ForceAuthn='maybe' ID="),
            "ForceAuthn is not a boolean",
            id="bad-boolean",
        ),
        pytest.param(lambda idp: "<samlp:AuthnRequest", "not well-formed", id="not-xml"),
    ],
)
def test_malformed_or_untrusted_requests_are_refused(env, make, why):
    """Each refused for its own reason (named on the page), before the signature check that
    this SP's unsigned requests would fail anyway."""
    idp, _, browser, _ = env
    before = state(idp)
    xml = make(idp)
    r = browser.get(f"{idp.url}/saml/sso", params={"SAMLRequest": deflate(xml)}, timeout=10)
    assert_refused(r, before, idp)
    assert why in r.text
    r = browser.post(
        f"{idp.url}/saml/sso",
        data={"SAMLRequest": base64.b64encode(xml.encode()).decode()},
        timeout=10,
    )
    assert_refused(r, before, idp)
    assert why in r.text


def test_unsigned_request_refused_when_signing_is_required(env):
    idp, _, browser, _ = env
    before = state(idp)
    r = browser.get(
        f"{idp.url}/saml/sso", params={"SAMLRequest": deflate(authn_request_xml(idp))}, timeout=10
    )
    assert_refused(r, before, idp)


def test_stripped_and_tampered_redirect_signatures_are_refused(env):
    idp, client, browser, _ = env
    before = state(idp)
    _, url = signed_redirect(client, idp)
    stripped = url.split("&SigAlg=")[0].split("&Signature=")[0]
    assert_refused(browser.get(stripped, timeout=10), before, idp)
    tampered = url.replace("Signature=", "Signature=AAAA", 1)
    assert_refused(browser.get(tampered, timeout=10), before, idp)
    # A valid signature over another RelayState does not cover this one.
    moved = url.replace("SAMLRequest=", "RelayState=evil&SAMLRequest=", 1)
    assert_refused(browser.get(moved, timeout=10), before, idp)


def test_bad_xml_signature_on_post_is_refused(env):
    idp, client, browser, _ = env
    before = state(idp)
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_POST,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    action, fields = form_with(info["data"], "SAMLRequest")
    xml = base64.b64decode(fields["SAMLRequest"]).decode()
    # Wrap: change the ACS inside the signed element.
    forged = xml.replace(ACS, "https://evil.example/acs")
    r = browser.post(
        action, data={"SAMLRequest": base64.b64encode(forged.encode()).decode()}, timeout=10
    )
    assert_refused(r, before, idp)


def test_acs_url_not_in_metadata_is_refused(env, tmp_path):
    idp, client, browser, _ = env
    before = state(idp)
    _, url = signed_redirect(client, idp, assertion_consumer_service_url="https://evil.example/acs")
    r = browser.get(url, timeout=10)
    assert_refused(r, before, idp)
    assert "evil.example" not in r.text


def test_replayed_request_is_refused(env):
    idp, client, browser, _ = env
    _, url = signed_redirect(client, idp)
    first = browser.get(url, timeout=10)
    assert first.status_code == 200
    form_with(first.text, "SAMLResponse")
    before = state(idp)
    assert_refused(browser.get(url, timeout=10), before, idp)


def test_expired_and_future_requests_are_refused(env):
    idp, _, browser, _ = env
    idp_sp = idp.svc.sessions
    with idp_sp.begin() as db:
        from idp.storage.models import SamlServiceProvider

        db.get(SamlServiceProvider, SP).settings = {"want_authn_requests_signed": False}
    before = state(idp)
    cases = [
        (_now(-3600), "expired"),
        (_now(3600), "in the future"),
        # SAML times are UTC without an offset (saml-core 1.3.3); no parser error leaks out.
        (_now().replace("Z", "+01:00"), "not a valid time"),
        ("2026-13-01T00:00:00Z", "not a valid time"),
        ("yesterday", "not a valid time"),
    ]
    for i, (instant, why) in enumerate(cases):
        xml = authn_request_xml(idp, instant=instant, rid=f"_t{i}")
        r = browser.get(f"{idp.url}/saml/sso", params={"SAMLRequest": deflate(xml)}, timeout=10)
        assert_refused(r, before, idp)
        assert why in r.text


def test_oversized_and_non_deflated_payloads_are_refused(env):
    idp, _, browser, _ = env
    before = state(idp)
    xml = authn_request_xml(idp)
    # Plain base64 on the Redirect binding (not DEFLATE).
    r = browser.get(
        f"{idp.url}/saml/sso",
        params={"SAMLRequest": base64.b64encode(xml.encode()).decode()},
        timeout=10,
    )
    assert_refused(r, before, idp)
    # A deflate bomb: small on the wire, huge when inflated.
    bomb = deflate(b"<a>" + b" " * (20 * 1024 * 1024) + b"</a>")
    assert len(bomb) < 64 * 1024
    r = browser.post(f"{idp.url}/saml/sso", data={"SAMLRequest": bomb}, timeout=30)
    r2 = browser.get(f"{idp.url}/saml/sso", params={"SAMLRequest": bomb}, timeout=30)
    assert_refused(r, before, idp)
    assert_refused(r2, before, idp)
    # Too large before decoding.
    r = browser.post(f"{idp.url}/saml/sso", data={"SAMLRequest": "A" * 200_000}, timeout=10)
    assert_refused(r, before, idp)
    # Not base64 at all.
    r = browser.get(f"{idp.url}/saml/sso", params={"SAMLRequest": "%%%not base64%%%"}, timeout=10)
    assert_refused(r, before, idp)


def test_hostile_logout_requests_change_nothing(env):
    idp, _, browser, sid = env
    from idp.web.sso import sessions

    before = state(idp)
    for issuer, extra in (
        ("https://unknown.example/sp", ""),
        (SP, XXE),
    ):
        xml = (
            f"{extra}<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_l1' "
            f"Version='2.0' IssueInstant='{_now()}'><saml:Issuer>{issuer}</saml:Issuer>"
            f"<saml:NameID>x</saml:NameID></samlp:LogoutRequest>"
        )
        r = browser.get(f"{idp.url}/saml/slo", params={"SAMLRequest": deflate(xml)}, timeout=10)
        assert_refused(r, before, idp)
    # A LogoutResponse that belongs to no logout in progress.
    xml = (
        f"<samlp:LogoutResponse xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_x' Version='2.0' "
        f"IssueInstant='{_now()}' InResponseTo='_nope'><saml:Issuer>{SP}</saml:Issuer>"
        f"<samlp:Status><samlp:StatusCode Value='urn:oasis:names:tc:SAML:2.0:status:Success'/>"
        f"</samlp:Status></samlp:LogoutResponse>"
    )
    r = browser.get(
        f"{idp.url}/saml/slo", params={"SAMLResponse": deflate(xml), "RelayState": "x"}, timeout=10
    )
    assert_refused(r, before, idp)
    with idp.app.test_request_context("/"):
        assert sessions()._record(sid) is not None
