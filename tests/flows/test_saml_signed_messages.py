"""Signatures on inbound SAML messages, with pysaml2 as the SP:

- a signed AuthnRequest must carry a Destination naming our endpoint (saml-bindings 3.4.5.2,
  3.5.5.2), on the Redirect (query signature) and POST (XML signature) bindings;
- LogoutRequests must be signed (saml-profiles 4.4.4.1) unless the SP is let off per SP;
- SHA-1 signatures are refused unless the SP is allowed them (`allow_sha1`).

Every refusal names its reason on an error page with a reference id and changes nothing:
no replay-cache entry, no NameID, and the SSO session is still alive.
"""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp
from sqlalchemy import func, select
from support import store_keys

pytestmark = pytest.mark.slow

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SP = "https://sp.example.org/metadata"
ACS = "https://sp.example.org/acs"


def state(idp) -> tuple:
    """What a refused message must leave unchanged: the short-lived store (replay cache,
    SSO sessions, pending logouts) and the stored NameIDs."""
    from idp.storage.models_saml import SamlPersistentId

    kv = tuple(store_keys(idp.svc))
    with idp.svc.sessions() as db:
        pids = db.scalar(select(func.count()).select_from(SamlPersistentId))
    return kv, pids


def assert_refused(r, before, idp, why: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert why in r.text
    assert "Reference:" in r.text
    assert "SAMLResponse" not in r.text and "Traceback" not in r.text
    assert state(idp) == before


def alive(idp, sid: str) -> bool:
    from idp.web.sso import sessions

    with idp.app.test_request_context("/"):
        return sessions()._record(sid) is not None


def set_sp(idp, **settings) -> None:
    from idp.saml.engine import saml_idp
    from idp.saml.registry import SpRegistry

    with idp.svc.sessions.begin() as db:
        SpRegistry(db).update_settings(SP, settings)
    # Workers look for changed SPs every keys.cache_seconds; this one looks now.
    saml_idp(idp.svc).engine().checked = 0.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sp_key(folder: Path):
    return serialization.load_pem_private_key((folder / "sp-sign.key").read_bytes(), None)


@pytest.fixture
def env(instance_dir, tmp_path):
    with live_idp(instance_dir) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(tmp_path, md, sign_requests=True)
        idp.register_sp(sp_md)
        uuid = idp.create_user("sally")
        browser = requests.Session()
        sid = idp.login(browser, uuid)
        yield idp, client, browser, sid, tmp_path


def _sign_in(idp, client, browser):
    """SSO to the SP so the session knows it; returns pysaml2's parsed response."""
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    _, fields = form_with(r.text, "SAMLResponse")
    return client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )


# --- Destination on signed AuthnRequests ---------------------------------------------------------


def test_signed_redirect_request_without_destination_is_refused(env):
    """The query-string signature is valid, but the request names no Destination."""
    from idp.saml.bindings import redirect_url

    idp, _, browser, _, folder = env
    before = state(idp)
    xml = (
        f"<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_nodest' "
        f"Version='2.0' IssueInstant='{_now()}' AssertionConsumerServiceURL='{ACS}'>"
        f"<saml:Issuer>{SP}</saml:Issuer></samlp:AuthnRequest>"
    )
    url = redirect_url(f"{idp.url}/saml/sso", "SAMLRequest", xml, "rs", _sp_key(folder))
    r = browser.get(url, allow_redirects=False, timeout=10)
    assert_refused(r, before, idp, "signed but has no Destination")
    # The same request with our Destination and the same key passes (the key is trusted).
    ok = xml.replace("ID='_nodest'", f"ID='_dest' Destination='{idp.url}/saml/sso'")
    url = redirect_url(f"{idp.url}/saml/sso", "SAMLRequest", ok, "rs", _sp_key(folder))
    r = browser.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 200
    form_with(r.text, "SAMLResponse")


def test_xml_signed_post_request_without_destination_is_refused(env):
    idp, client, browser, _, _ = env
    before = state(idp)
    _, req = client.create_authn_request(
        f"{idp.url}/saml/sso",
        binding=BINDING_HTTP_POST,
        sign=True,
        sign_prepare=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    req.destination = None
    signed = client.sign(req, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
    assert "Destination" not in signed and "SignatureValue" in signed
    r = browser.post(
        f"{idp.url}/saml/sso",
        data={"SAMLRequest": base64.b64encode(signed.encode()).decode()},
        allow_redirects=False,
        timeout=10,
    )
    assert_refused(r, before, idp, "signed but has no Destination")


def test_signed_request_to_another_destination_is_refused(env):
    from idp.saml.bindings import redirect_url

    idp, _, browser, _, folder = env
    before = state(idp)
    xml = (
        f"<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_elsewhere' "
        f"Version='2.0' IssueInstant='{_now()}' Destination='https://other-idp.example/sso' "
        f"AssertionConsumerServiceURL='{ACS}'><saml:Issuer>{SP}</saml:Issuer>"
        "</samlp:AuthnRequest>"
    )
    url = redirect_url(f"{idp.url}/saml/sso", "SAMLRequest", xml, None, _sp_key(folder))
    r = browser.get(url, allow_redirects=False, timeout=10)
    assert_refused(r, before, idp, "addressed to another destination")


# --- signed logout -------------------------------------------------------------------------------


def _logout_xml(idp, name_id: str, session_index: str, rid: str = "_lo1") -> str:
    return (
        f"<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='{rid}' "
        f"Version='2.0' IssueInstant='{_now()}' Destination='{idp.url}/saml/slo'>"
        f"<saml:Issuer>{SP}</saml:Issuer>"
        f"<saml:NameID Format='urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'>"
        f"{name_id}</saml:NameID><samlp:SessionIndex>{session_index}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )


def _deflate(xml: str) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml.encode()) + c.flush()).decode()


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unsigned_logout_request_is_refused_by_default(env, binding):
    """saml-profiles 4.4.4.1: the LogoutRequest MUST be signed. An unsigned one naming the
    right NameID and SessionIndex would otherwise end anyone's session."""
    idp, client, browser, sid, _ = env
    resp = _sign_in(idp, client, browser)
    xml = _logout_xml(
        idp, resp.assertion.subject.name_id.text, resp.assertion.authn_statement[0].session_index
    )
    before = state(idp)
    if binding == "redirect":
        r = browser.get(
            f"{idp.url}/saml/slo",
            params={"SAMLRequest": _deflate(xml)},
            allow_redirects=False,
            timeout=10,
        )
    else:
        r = browser.post(
            f"{idp.url}/saml/slo",
            data={"SAMLRequest": base64.b64encode(xml.encode()).decode()},
            allow_redirects=False,
            timeout=10,
        )
    assert_refused(r, before, idp, "must sign its requests")
    assert alive(idp, sid)
    # The session still answers the SP.
    assert _sign_in(idp, client, browser).assertion is not None


def _pysaml2_logout(idp, client, resp, sign_alg, digest_alg, binding):
    """pysaml2's own SP-initiated logout: (method, url, data) to send from the browser."""
    out = client.do_logout(
        resp.assertion.subject.name_id,
        [idp.metadata_url],
        reason="",
        expire=in_a_while(minutes=5),
        sign=True,
        sign_alg=sign_alg,
        digest_alg=digest_alg,
        expected_binding=binding,
    )
    used, info = out[idp.metadata_url]
    assert used == binding
    if binding == BINDING_HTTP_REDIRECT:
        return "GET", dict(info["headers"])["Location"], None
    action, fields = form_with(info["data"], "SAMLRequest")
    return "POST", action, fields


@pytest.mark.parametrize("binding", [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST])
def test_signed_logout_request_from_pysaml2_ends_the_session(env, binding):
    idp, client, browser, sid, _ = env
    resp = _sign_in(idp, client, browser)
    method, url, data = _pysaml2_logout(idp, client, resp, SIG_RSA_SHA256, DIGEST_SHA256, binding)
    r = browser.request(method, url, data=data, allow_redirects=False, timeout=10)
    assert r.status_code in (200, 302), r.text[-1500:]
    assert not alive(idp, sid)


@pytest.mark.parametrize("binding", [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST])
def test_sha1_signed_logout_is_refused_unless_the_sp_allows_it(env, binding):
    """RSA-SHA1 (what pysaml2 uses unless told otherwise, and mod_auth_mellon can be set to)
    is refused with a clear message; the per-SP ``allow_sha1`` lets a legacy SP in."""
    idp, client, browser, sid, _ = env
    resp = _sign_in(idp, client, browser)
    before = state(idp)
    method, url, data = _pysaml2_logout(idp, client, resp, SIG_RSA_SHA1, DIGEST_SHA1, binding)
    r = browser.request(method, url, data=data, allow_redirects=False, timeout=10)
    assert_refused(r, before, idp, "http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted")
    assert alive(idp, sid)

    set_sp(idp, allow_sha1=True)
    method, url, data = _pysaml2_logout(idp, client, resp, SIG_RSA_SHA1, DIGEST_SHA1, binding)
    r = browser.request(method, url, data=data, allow_redirects=False, timeout=10)
    assert r.status_code in (200, 302), r.text[-1500:]
    assert not alive(idp, sid)


def test_unsigned_logout_allowed_for_an_sp_let_off(env):
    """The per-SP opt-out (``want_logout_signed = false``) for SPs that cannot sign."""
    idp, client, browser, sid, _ = env
    resp = _sign_in(idp, client, browser)
    set_sp(idp, want_logout_signed=False)
    xml = _logout_xml(
        idp, resp.assertion.subject.name_id.text, resp.assertion.authn_statement[0].session_index
    )
    r = browser.get(
        f"{idp.url}/saml/slo",
        params={"SAMLRequest": _deflate(xml)},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code in (200, 302), r.text[-1500:]
    assert not alive(idp, sid)


@pytest.mark.parametrize("binding", [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST])
def test_sha1_signed_authn_request_is_refused_unless_the_sp_allows_it(env, binding):
    idp, client, browser, _, _ = env
    before = state(idp)

    def send():
        _, info = client.prepare_for_authenticate(
            entityid=idp.metadata_url, binding=binding, sigalg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1
        )
        if binding == BINDING_HTTP_REDIRECT:
            return browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
        action, fields = form_with(info["data"], "SAMLRequest")
        return browser.post(action, data=fields, allow_redirects=False, timeout=10)

    r = send()
    assert_refused(r, before, idp, "http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted")
    set_sp(idp, allow_sha1=True)
    r = send()
    assert r.status_code == 200, r.text[-1500:]
    form_with(r.text, "SAMLResponse")
