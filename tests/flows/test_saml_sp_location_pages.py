"""An SP row that did not come through the registry's import checks (written into the
database by hand or by an older version) still cannot get a ``javascript:`` endpoint into a
page: the POST-binding page and the logout pages check the Location again before rendering
it, and refuse with an error page carrying a reference id."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import UTC, datetime

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp
from sqlalchemy import func, select
from support import store_keys

pytestmark = pytest.mark.slow

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SP = "https://sp.example.org/metadata"
HOSTILE = "javascript:alert(document.cookie)"


def state(idp) -> tuple:
    from idp.storage.models_saml import SamlPersistentId

    kv = tuple(store_keys(idp.svc))
    with idp.svc.sessions() as db:
        pids = db.scalar(select(func.count()).select_from(SamlPersistentId))
    return kv, pids


def store_directly(idp, metadata: str) -> None:
    """Bypass SpRegistry (and its checks): the row as a hand-edited database would hold it."""
    from idp.saml.engine import saml_idp
    from idp.storage.models import SamlServiceProvider

    with idp.svc.sessions.begin() as db:
        db.add(SamlServiceProvider(entity_id=SP, metadata_xml=metadata, settings={}))
    saml_idp(idp.svc).engine().checked = 0.0


def assert_refused_page(r) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "The address of this application is not acceptable" in r.text or (
        "AssertionConsumerService address is not acceptable" in r.text
    )
    assert "Reference:" in r.text
    # No form but the language switcher's (no POST binding to the refused address).
    assert re.findall(r"<form[^>]*action=\"([^\"]*)\"", r.text) == ["/language"]
    assert r.text.count("<form") == 1 and "SAMLResponse" not in r.text


@pytest.fixture
def env(instance_dir, tmp_path):
    with live_idp(instance_dir) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(tmp_path, md)
        uuid = idp.create_user("victor")
        browser = requests.Session()
        sid = idp.login(browser, uuid)
        yield idp, client, sp_md, browser, sid


def _deflate(xml: str) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml.encode()) + c.flush()).decode()


def test_javascript_acs_in_the_database_is_never_rendered(env):
    idp, _, sp_md, browser, _ = env
    store_directly(idp, sp_md.replace("https://sp.example.org/acs", HOSTILE))
    before = state(idp)
    # IdP-initiated (the app launcher's link).
    r = browser.get(f"{idp.url}/saml/init", params={"sp": SP}, timeout=10)
    assert_refused_page(r)
    # SP-initiated, the ACS named in the request as the metadata has it.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (
        f"<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_js' Version='2.0' "
        f"IssueInstant='{now}' Destination='{idp.url}/saml/sso' "
        f"AssertionConsumerServiceURL='{HOSTILE}'><saml:Issuer>{SP}</saml:Issuer>"
        "</samlp:AuthnRequest>"
    )
    r = browser.get(f"{idp.url}/saml/sso", params={"SAMLRequest": _deflate(xml)}, timeout=10)
    assert_refused_page(r)
    assert state(idp) == before  # no replay entry, no NameID, no session change


def test_javascript_logout_endpoint_in_the_database_is_never_rendered(env):
    idp, client, sp_md, browser, sid = env
    hostile = sp_md.replace("https://sp.example.org/slo/post", HOSTILE).replace(
        "https://sp.example.org/slo", HOSTILE
    )
    assert "https://sp.example.org/slo" not in hostile
    store_directly(idp, hostile)
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    _, fields = form_with(r.text, "SAMLResponse")  # its ACS is fine
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    # The SP's own (signed) LogoutRequest: the answer would go to the javascript: endpoint.
    out = client.do_logout(
        resp.assertion.subject.name_id,
        [idp.metadata_url],
        reason="",
        expire=in_a_while(minutes=5),
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        expected_binding=BINDING_HTTP_REDIRECT,
    )
    _, http = out[idp.metadata_url]
    r = browser.get(dict(http["headers"])["Location"], allow_redirects=False, timeout=10)
    assert_refused_page(r)
    assert "Location" not in r.headers


def test_idp_initiated_logout_skips_a_javascript_endpoint(env):
    """Signing out at the IdP: the SP with the unusable address is not sent anything (and the
    page says not every application confirmed); the sign-out itself completes."""
    from idp.web.sso import sessions

    idp, client, sp_md, browser, sid = env
    store_directly(idp, sp_md.replace("https://sp.example.org/slo", HOSTILE))
    r = browser.get(f"{idp.url}/saml/init", params={"sp": SP}, timeout=10)
    form_with(r.text, "SAMLResponse")
    page = browser.get(f"{idp.url}/saml/logout", timeout=10)
    action, fields = form_with(page.text, "token")
    r = browser.post(idp.url + action, data=fields, allow_redirects=False, timeout=10)
    assert r.status_code == 200, r.headers.get("Location")
    assert "did not confirm the sign-out" in r.text and "javascript:" not in r.text
    with idp.app.test_request_context("/"):
        assert sessions()._record(sid) is None
