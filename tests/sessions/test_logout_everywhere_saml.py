"""Log out everywhere reaches SAML SPs (issue 19), with pysaml2 as the SPs against a real IdP
server: an SP whose metadata offers a SOAP SingleLogoutService gets a signed LogoutRequest
POSTed to it at once (a real HTTP server on loopback; pysaml2 verifies it and answers); an SP
with only front-channel bindings gets its LogoutRequest the next time the browser whose session
was ended elsewhere loads a page at the IdP, which then continues to the page asked for."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, make_keypair, pysaml2_sp

pytestmark = pytest.mark.slow

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
LOCAL = {"allow_http": True, "allow_private_addresses": True}


@pytest.fixture
def idp(instance_dir):
    with live_idp(instance_dir, outbound=LOCAL) as live:
        yield live


class SoapSp:
    """A pysaml2 SP whose only SingleLogoutService is SOAP, served by a real HTTP server."""

    def __init__(self, folder: Path, idp_metadata: str, status: str | None = None) -> None:
        self.received: list[Any] = []
        self.status = status
        self.server = HTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slo/soap"
        key, cert = make_keypair(folder, "soap-sp")
        (folder / "idp.xml").write_text(idp_metadata)
        conf = {
            "entityid": "https://soap.example.org/sp",
            "key_file": str(key),
            "cert_file": str(cert),
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [
                            ("https://soap.example.org/acs", BINDING_HTTP_POST)
                        ],
                        "single_logout_service": [(self.url, BINDING_SOAP)],
                    },
                    "want_response_signed": True,
                    "allow_unsolicited": True,
                }
            },
            "metadata": {"local": [str(folder / "idp.xml")]},
            "accepted_time_diff": 60,
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
        }
        config = SPConfig()
        config.load(conf)
        self.client = Saml2Client(config=config)
        self.metadata = create_metadata_string(None, config=config, sign=False).decode()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        sp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # pysaml2 verifies the IdP's signature against the IdP's metadata. Its own
                # SOAP reader re-serializes the message with new prefixes (which breaks any
                # signature), so the element is taken out of the envelope as it came.
                envelope = etree.fromstring(body)
                assert envelope.tag == f"{{{SOAP_NS}}}Envelope"
                message = envelope.find(f"{{{SOAP_NS}}}Body")[0]
                req = sp.client.parse_logout_request(
                    base64.b64encode(etree.tostring(message)).decode(), BINDING_HTTP_POST
                )
                sp.received.append(req.message)
                kwargs = {"status": sp.status} if sp.status else {}
                resp = sp.client.create_logout_response(
                    req.message,
                    [BINDING_SOAP],
                    sign=True,
                    sign_alg=SIG_RSA_SHA256,
                    digest_alg=DIGEST_SHA256,
                    **kwargs,
                )
                answer = sp.client.apply_binding(BINDING_SOAP, str(resp), response=True)
                data = answer["data"].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                return

        return Handler

    def wait(self, count: int = 1) -> list[Any]:
        deadline = time.time() + 10
        while len(self.received) < count and time.time() < deadline:
            time.sleep(0.05)
        return self.received


@contextmanager
def soap_sp(folder: Path, idp_metadata: str) -> Iterator[SoapSp]:
    folder.mkdir()
    sp = SoapSp(folder, idp_metadata)
    try:
        yield sp
    finally:
        sp.server.shutdown()


def signed_in(idp, browser: requests.Session, uuid: str) -> str:
    """An SSO session for the user in ``browser``, in the user's index as a login makes it."""
    from idp.storage.models import User
    from idp.storage.session_index import index_session

    sid = idp.login(browser, uuid)
    with idp.svc.sessions.begin() as db:
        user_id = db.query(User.id).filter(User.uuid == uuid).scalar()
        index_session(
            db, user_id, sid, ["pwd"], at=idp.svc.clock.utcnow(), ip=None, user_agent=None
        )
    return sid


def sign_in_at(idp, client, browser) -> Any:
    """SP-initiated SSO through the real IdP; the SP validates the response."""
    reqid, info = client.prepare_for_authenticate(
        entityid=idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    _, fields = form_with(r.text, "SAMLResponse")
    resp = client.parse_authn_request_response(
        fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"}
    )
    assert resp is not None
    return resp


def end_all_by_api(idp, uuid: str) -> requests.Response:
    from api_kit import service_token

    token = service_token(idp.app)
    return requests.delete(
        f"{idp.url}/api/v1/users/{uuid}/sessions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_admin_end_all_reaches_a_soap_sp_and_a_front_channel_sp(idp, tmp_path):
    md = requests.get(idp.metadata_url, timeout=10).text
    front, front_md = pysaml2_sp(tmp_path, md)
    idp.register_sp(front_md)
    with soap_sp(tmp_path / "soap", md) as soap:
        idp.register_sp(soap.metadata, allow_http=True)
        uuid = idp.create_user("alice")
        browser = requests.Session()
        sid = signed_in(idp, browser, uuid)
        at_soap = sign_in_at(idp, soap.client, browser)
        at_front = sign_in_at(idp, front, browser)

        ended = end_all_by_api(idp, uuid)
        assert ended.status_code == 200 and ended.json()["ended"] == 1

        # SOAP: at once, without the browser.
        got = soap.wait()
        assert len(got) == 1
        assert got[0].name_id.text == at_soap.assertion.subject.name_id.text
        assert [s.text for s in got[0].session_index] == [
            at_soap.assertion.authn_statement[0].session_index
        ]

    # Front channel: the browser's next page at the IdP sends the LogoutRequest first.
    r = browser.get(f"{idp.url}/account/", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "/saml/logout/pending" in r.headers["Location"]
    r = browser.get(idp.url + r.headers["Location"], allow_redirects=False, timeout=10)
    location = r.headers["Location"]
    assert location.startswith("https://sp.example.org/slo?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    req = front.parse_logout_request(
        q["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=q["RelayState"],
        sigalg=q.get("SigAlg"),
        signature=q.get("Signature"),
    )
    assert req.message.name_id.text == at_front.assertion.subject.name_id.text
    resp = front.create_logout_response(req.message, [BINDING_HTTP_REDIRECT])
    back = front.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(resp),
        f"{idp.url}/saml/slo",
        q["RelayState"],
        response=True,
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    r = browser.get(dict(back["headers"])["Location"], allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303), r.text[-1500:]
    assert browser.cookies.get("idp_session") is None  # the dead cookie is gone
    # Sent once: the next page goes straight on (to the login, as the session ended).
    r = browser.get(f"{idp.url}/account/", allow_redirects=False, timeout=10)
    assert "/saml/logout/pending" not in r.headers.get("Location", "")
    assert idp.svc.sso_sessions.peek(sid) is None


def test_pending_logout_never_redirects_off_site(idp, tmp_path):
    md = requests.get(idp.metadata_url, timeout=10).text
    front, front_md = pysaml2_sp(tmp_path, md)
    idp.register_sp(front_md)
    uuid = idp.create_user("bob")
    browser = requests.Session()
    signed_in(idp, browser, uuid)
    sign_in_at(idp, front, browser)
    end_all_by_api(idp, uuid)
    r = browser.get(
        f"{idp.url}/saml/logout/pending",
        params={"then": "//evil.example/x"},
        allow_redirects=False,
        timeout=10,
    )
    location = r.headers["Location"]
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    req = front.parse_logout_request(
        q["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=q["RelayState"],
        sigalg=q.get("SigAlg"),
        signature=q.get("Signature"),
    )
    resp = front.create_logout_response(req.message, [BINDING_HTTP_REDIRECT])
    back = front.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(resp),
        f"{idp.url}/saml/slo",
        q["RelayState"],
        response=True,
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    r = browser.get(dict(back["headers"])["Location"], allow_redirects=False, timeout=10)
    assert urlsplit(r.headers["Location"]).netloc in ("", urlsplit(idp.url).netloc)
    assert "evil" not in r.headers["Location"]


def test_a_soap_sp_answering_failure_is_logged_and_the_session_still_ends(idp, tmp_path, caplog):
    from saml2.samlp import STATUS_RESPONDER

    md = requests.get(idp.metadata_url, timeout=10).text
    with soap_sp(tmp_path / "soap", md) as soap:
        soap.status = {"status_code": {"value": STATUS_RESPONDER}}
        idp.register_sp(soap.metadata, allow_http=True)
        uuid = idp.create_user("carol")
        browser = requests.Session()
        sid = signed_in(idp, browser, uuid)
        sign_in_at(idp, soap.client, browser)
        with caplog.at_level("WARNING", logger="idp.saml"):
            assert end_all_by_api(idp, uuid).json()["ended"] == 1
            assert soap.wait()
            deadline = time.time() + 5
            while "SOAP logout" not in caplog.text and time.time() < deadline:
                time.sleep(0.05)
        assert "SOAP logout to https://soap.example.org/sp failed" in caplog.text
    assert idp.svc.sso_sessions.peek(sid) is None
