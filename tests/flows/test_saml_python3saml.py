"""A second, independent SP library (python3-saml) signs in and out against the real server,
and Single Logout propagates to a pysaml2 SP of the same session."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, make_keypair, pysaml2_sp

pytestmark = pytest.mark.slow

SP2 = "https://sp2.example.org"


@pytest.fixture
def idp(instance_dir):
    with live_idp(instance_dir) as live:
        yield live


def onelogin_settings(tmp_path, idp_metadata: str, encrypted: bool = False) -> dict:
    key, cert = make_keypair(tmp_path, "onelogin")
    idp_data = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata)
    sha256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    settings = {
        "strict": True,
        "sp": {
            "entityId": f"{SP2}/metadata",
            "assertionConsumerService": {
                "url": f"{SP2}/acs",
                "binding": BINDING_HTTP_POST,
            },
            "singleLogoutService": {"url": f"{SP2}/slo", "binding": BINDING_HTTP_REDIRECT},
            "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "x509cert": "".join(cert.read_text().strip().splitlines()[1:-1]),
            "privateKey": "".join(key.read_text().strip().splitlines()[1:-1]),
        },
        "idp": idp_data["idp"],
        "security": {
            "authnRequestsSigned": True,
            "logoutRequestSigned": True,
            "logoutResponseSigned": True,
            "wantMessagesSigned": True,
            "wantAssertionsSigned": True,
            "wantAssertionsEncrypted": encrypted,
            "signatureAlgorithm": sha256,
            "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            "rejectDeprecatedAlgorithm": True,
        },
    }
    return settings


def _request_data(url: str, post: dict | None = None) -> dict:
    parts = urlsplit(url)
    return {
        "https": "on",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": {k: v[0] for k, v in parse_qs(parts.query).items()},
        "post_data": post or {},
    }


def _sp_metadata(settings: dict) -> str:
    meta = OneLogin_Saml2_Settings(settings, sp_validation_only=True).get_sp_metadata()
    return meta.decode() if isinstance(meta, bytes) else meta


def _sso_onelogin(idp, settings, browser):
    auth = OneLogin_Saml2_Auth(_request_data(f"{SP2}/login"), settings)
    url = auth.login(return_to=f"{SP2}/home")
    request_id = auth.get_last_request_id()
    r = browser.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 200, r.text[:300]
    action, fields = form_with(r.text, "SAMLResponse")
    assert action == f"{SP2}/acs"
    acs = OneLogin_Saml2_Auth(_request_data(action, fields), settings)
    acs.process_response(request_id=request_id)
    assert acs.get_errors() == [], acs.get_last_error_reason()
    assert acs.is_authenticated()
    return acs


@pytest.mark.parametrize("encrypted", [False, True])
def test_python3_saml_sso(idp, tmp_path, encrypted):
    md = requests.get(idp.metadata_url, timeout=10).text
    settings = onelogin_settings(tmp_path, md, encrypted)
    idp.register_sp(_sp_metadata(settings))
    uuid = idp.create_user("ivan")
    browser = requests.Session()
    idp.login(browser, uuid)
    acs = _sso_onelogin(idp, settings, browser)
    attrs = acs.get_attributes()
    assert attrs["urn:oid:0.9.2342.19200300.100.1.3"] == ["ivan@example.org"]
    assert acs.get_nameid_format() == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert acs.get_session_index()


def test_single_logout_from_python3_saml_reaches_pysaml2_sp(idp, tmp_path):
    from idp.web.sso import sessions

    md = requests.get(idp.metadata_url, timeout=10).text
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    settings = onelogin_settings(tmp_path / "one", md)
    idp.register_sp(_sp_metadata(settings))
    client, sp_md = pysaml2_sp(tmp_path / "two", md)
    idp.register_sp(sp_md)
    uuid = idp.create_user("judy")
    browser = requests.Session()
    sid = idp.login(browser, uuid)

    # Sign in to both SPs in the same SSO session.
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    r = browser.get(dict(info["headers"])["Location"], timeout=10)
    _, fields = form_with(r.text, "SAMLResponse")
    pysaml2_resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    acs = _sso_onelogin(idp, settings, browser)

    # python3-saml starts the logout (HTTP-Redirect, signed).
    auth = OneLogin_Saml2_Auth(_request_data(f"{SP2}/logout"), settings)
    url = auth.logout(
        name_id=acs.get_nameid(),
        session_index=acs.get_session_index(),
        name_id_format=acs.get_nameid_format(),
        return_to=f"{SP2}/bye",
    )
    logout_request_id = auth.get_last_request_id()
    r = browser.get(url, allow_redirects=False, timeout=10)
    # The IdP first sends a signed LogoutRequest to the other SP of the session.
    assert r.status_code == 302
    to_sp = r.headers["Location"]
    assert to_sp.startswith("https://sp.example.org/slo?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(to_sp).query).items()}
    req = client.parse_logout_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
    assert req.message.name_id.text == pysaml2_resp.assertion.subject.name_id.text
    answer = client.handle_logout_request(
        query["SAMLRequest"],
        req.message.name_id,
        BINDING_HTTP_REDIRECT,
        relay_state=query["RelayState"],
        sign=True,
        sign_alg=SIG_RSA_SHA256,
    )
    back = dict(answer["headers"])["Location"]
    assert back.startswith(idp.url + "/saml/slo?")
    r = browser.get(back, allow_redirects=False, timeout=10)
    # Then it answers python3-saml, which checks the LogoutResponse itself.
    assert r.status_code == 302
    final = r.headers["Location"]
    assert final.startswith(f"{SP2}/slo?")
    done = OneLogin_Saml2_Auth(_request_data(final), settings)
    done.process_slo(request_id=logout_request_id, keep_local_session=True)
    assert done.get_errors() == [], done.get_last_error_reason()
    # The SSO session is gone: a new AuthnRequest goes to the login page.
    with idp.app.test_request_context("/"):
        assert sessions().relying_parties(sid) == {}
    url = OneLogin_Saml2_Auth(_request_data(f"{SP2}/login"), settings).login()
    r = browser.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?r=")


def test_idp_initiated_logout_reaches_python3_saml(idp, tmp_path):
    md = requests.get(idp.metadata_url, timeout=10).text
    settings = onelogin_settings(tmp_path, md)
    idp.register_sp(_sp_metadata(settings))
    uuid = idp.create_user("kim")
    browser = requests.Session()
    idp.login(browser, uuid)
    _sso_onelogin(idp, settings, browser)

    page = browser.get(f"{idp.url}/saml/logout", timeout=10)
    action, fields = form_with(page.text, "token")
    r = browser.post(idp.url + action, data=fields, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    to_sp = r.headers["Location"]
    assert to_sp.startswith(f"{SP2}/slo?")
    sp_side = OneLogin_Saml2_Auth(_request_data(to_sp), settings)
    back = sp_side.process_slo(keep_local_session=True)
    assert sp_side.get_errors() == [], sp_side.get_last_error_reason()
    r = browser.get(back, allow_redirects=False, timeout=10)
    assert r.status_code == 200
    assert "You are signed out" in r.text
