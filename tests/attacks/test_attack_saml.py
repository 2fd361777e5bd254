"""SAML attack suite (issue 22): what an attacker sends to our IdP (AuthnRequest, LogoutRequest,
LogoutResponse at /saml/sso and /saml/slo, a live server, a pysaml2 SP signing its requests)
and to our broker's SP side (Responses from an upstream IdP at /broker/<alias>/saml/acs, a
pysaml2 IdP signing them).

Each attack asserts the safe outcome (an error page with a reference id, or the broker's refusal
page, never a 500 and never a SAMLResponse) AND that nothing changed: the short-lived store
(SSO sessions, replay caches, flights), stored NameIDs, users, upstream links, and no audit
row but a refusal.

Existing coverage this suite builds on rather than repeats: tests/flows/
test_saml_hostile_requests.py (malformed requests, replays, times), tests/flows/
test_saml_signed_messages.py (Destination, SHA-1, unsigned logout), tests/fuzz/
test_fuzz_saml_engine.py (generated wrapping of AuthnRequests), tests/broker/
test_saml_upstream_adapter.py (the Response checks one by one, in the adapter).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import time

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_attack_kit import (
    ACS,
    DS,
    SAML,
    SAMLP,
    SP,
    XSI,
    b64,
    billion_laughs,
    deflate,
    loopback_listener,
    nested,
    now_instant,
    quadratic_blowup,
    set_attribute,
    set_name_id,
    sign_root,
    xsw_assertion,
    xsw_message,
    xsw_request,
    xxe_prologs,
)
from sqlalchemy import func, select

pytestmark = pytest.mark.slow

CATALOGUE = ("xsw1", "xsw2", "xsw3", "xsw4", "xsw5", "xsw6", "xsw7", "xsw8")


# === our IdP: inbound requests ===================================================================


class IdpEnv:
    def __init__(self, idp, client, browser, sid, name_id, session_index) -> None:
        self.idp = idp
        self.client = client  # the pysaml2 SP (signs its requests)
        self.browser = browser  # holds the victim's SSO session
        self.sid = sid
        self.name_id = name_id  # what the SP knows the victim as
        self.session_index = session_index

    @property
    def url(self) -> str:
        return self.idp.url

    def state(self) -> tuple:
        from idp.storage.models import AuditEvent, KVEntry, User
        from idp.storage.models_saml import SamlPersistentId

        with self.idp.svc.sessions() as db:
            kv = tuple(sorted(db.scalars(select(KVEntry.key)).all()))
            pids = db.scalar(select(func.count()).select_from(SamlPersistentId))
            users = db.scalar(select(func.count()).select_from(User))
            audit = db.scalar(select(func.max(AuditEvent.id)))
        return kv, pids, users, audit

    def alive(self) -> bool:
        from idp.web.sso import sessions

        with self.idp.app.test_request_context("/"):
            return sessions()._record(self.sid) is not None

    def signed_authn_request(self, **kw) -> str:
        _, xml = self.client.create_authn_request(
            f"{self.url}/saml/sso",
            sign=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **kw,
        )
        return str(xml)

    def signed_logout_request(self, name_id: str, session_index: str | None = None) -> str:
        _, xml = self.client.create_logout_request(
            f"{self.url}/saml/slo",
            self.idp.metadata_url,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=name_id),
            session_indexes=[session_index] if session_index else None,
            sign=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        return str(xml)

    def send(self, path: str, xml: str | bytes, binding: str, field: str = "SAMLRequest", **extra):
        if binding == "redirect":
            return self.browser.get(
                f"{self.url}{path}",
                params={field: deflate(xml), **extra},
                allow_redirects=False,
                timeout=30,
            )
        return self.browser.post(
            f"{self.url}{path}", data={field: b64(xml), **extra}, allow_redirects=False, timeout=30
        )

    def assert_refused(self, r, before, why: str | None = None) -> None:
        """An error page with a reference id, no SAML answer, and nothing changed."""
        assert r.status_code in (400, 413), (r.status_code, r.text[:400])
        assert "Reference:" in r.text and re.search(r"<code>[\w-]{6,}</code>", r.text)
        assert "SAMLResponse" not in r.text and "Traceback" not in r.text
        assert "root:x:0:0" not in r.text
        if why:
            assert why in r.text, r.text[:800]
        assert self.state() == before
        assert self.alive()


@pytest.fixture(scope="module")
def idp_env(tmp_path_factory):
    from saml_support import form_with, live_idp, pysaml2_sp

    folder = tmp_path_factory.mktemp("atk-saml-idp")
    instance = folder / "instance"
    instance.mkdir()
    with live_idp(instance) as idp:
        md = requests.get(idp.metadata_url, timeout=10).text
        client, sp_md = pysaml2_sp(folder, md, sign_requests=True)
        idp.register_sp(sp_md, want_authn_requests_signed=True)
        uuid = idp.create_user("victim")
        browser = requests.Session()
        sid = idp.login(browser, uuid)
        # The victim signs in to the SP once: the session now knows it (NameID, SessionIndex).
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
        env = IdpEnv(
            idp,
            client,
            browser,
            sid,
            resp.assertion.subject.name_id.text,
            resp.assertion.authn_statement[0].session_index,
        )
        env.sp_key = str(folder / "sp-sign.key")
        yield env


def test_genuine_signed_requests_are_answered(idp_env):
    """The control for the wrapping tests below: the same requests, untouched, work."""
    from saml_support import form_with

    env = idp_env
    r = env.send("/saml/sso", env.signed_authn_request(), "post")
    assert r.status_code == 200, r.text[:400]
    form_with(r.text, "SAMLResponse")
    # A LogoutRequest signed by the SP for someone else ends nobody's session here.
    before = env.state()
    r = env.send("/saml/slo", env.signed_logout_request("someone-else"), "post")
    assert r.status_code == 200, r.text[:400]
    assert env.alive()
    assert env.state()[1:3] == before[1:3]


@pytest.mark.parametrize("binding", ["post", "redirect"])
@pytest.mark.parametrize("variant", CATALOGUE)
def test_signature_wrapping_of_an_authn_request_is_refused(idp_env, variant, binding):
    """XSW1-XSW8 (request analogues, saml_attack_kit.xsw_request) on a request the SP signed,
    whose evil part asks for a passive sign-in under another name: refused, no assertion."""
    env = idp_env
    before = env.state()
    evil = xsw_request(
        env.signed_authn_request(),
        variant,
        lambda el: (el.set("IsPassive", "true"), el.set("ProviderName", "evil")),
    )
    env.assert_refused(env.send("/saml/sso", evil, binding), before)


@pytest.mark.parametrize("binding", ["post", "redirect"])
@pytest.mark.parametrize("variant", CATALOGUE)
def test_signature_wrapping_of_a_logout_request_ends_no_session(idp_env, variant, binding):
    """The SP signed a LogoutRequest for someone else; wrapped so that the evil part names the
    victim's NameID and SessionIndex. Refused; the victim's session lives."""
    env = idp_env
    before = env.state()
    signed = env.signed_logout_request("someone-else", env.session_index)
    evil = xsw_request(signed, variant, set_name_id(env.name_id))
    env.assert_refused(env.send("/saml/slo", evil, binding), before)


def test_altered_or_unsigned_messages_are_refused_when_signing_is_required(idp_env):
    """A signed LogoutRequest with its NameID changed, the same with its signature removed,
    an AuthnRequest with an attribute changed under its signature, and a stripped one."""
    env = idp_env
    before = env.state()
    signed = env.signed_logout_request("someone-else", env.session_index)
    altered = signed.replace(">someone-else<", f">{env.name_id}<")
    assert altered != signed
    stripped = re.sub(r"<(\w+:)?Signature\b.*?</(\w+:)?Signature>", "", altered, flags=re.S)
    for binding in ("post", "redirect"):
        env.assert_refused(env.send("/saml/slo", altered, binding), before)
        env.assert_refused(
            env.send("/saml/slo", stripped, binding), before, "must sign its requests"
        )
    request = env.signed_authn_request()
    changed = request.replace("ID=", 'ForceAuthn="false" ID=', 1)
    unsigned = re.sub(r"<(\w+:)?Signature\b.*?</(\w+:)?Signature>", "", request, flags=re.S)
    for binding in ("post", "redirect"):
        env.assert_refused(env.send("/saml/sso", changed, binding), before)
        env.assert_refused(
            env.send("/saml/sso", unsigned, binding), before, "must sign its requests"
        )


def test_comment_in_a_signed_name_id_is_refused(idp_env):
    """The "duo" comment truncation: the SP signed a LogoutRequest for
    ``victim-name.evil``; a comment put in after signing keeps the signature valid (exclusive
    c14n drops comments) while a naive reader would take the text before it. Refused before
    the signature is looked at; the same for a comment in the Issuer."""
    env = idp_env
    before = env.state()
    signed = env.signed_logout_request(f"{env.name_id}.evil.example", env.session_index)
    duo = signed.replace(f">{env.name_id}.evil.example<", f">{env.name_id}<!---->.evil.example<")
    assert duo != signed
    issuer = signed.replace(f">{SP}<", f">{SP}<!-- -->/x<")
    assert issuer != signed
    for binding in ("post", "redirect"):
        env.assert_refused(env.send("/saml/slo", duo, binding), before, "comments or elements")
        env.assert_refused(env.send("/saml/slo", issuer, binding), before, "comments or elements")
    admin = env.signed_authn_request().replace(
        "</samlp:AuthnRequest>",
        f"<saml:Subject xmlns:saml='{SAML}'><saml:NameID>admin<!---->@evil.example"
        "</saml:NameID></saml:Subject></samlp:AuthnRequest>",
    )
    env.assert_refused(env.send("/saml/sso", admin, "post"), before, "comments or elements")


def test_signature_wrapping_of_a_logout_response_is_refused(idp_env):
    """A logout this IdP started (someone signs out here; the SP gets our LogoutRequest) waits
    for the SP's LogoutResponse. The SP's signed LogoutResponse wrapped (XSW1-XSW8, request
    analogues) so that the evil part reports another status for another request: refused,
    the logout still waiting (its state kept); then the genuine one completes it."""
    import zlib
    from urllib.parse import parse_qs, urlsplit

    from saml_support import form_with

    env = idp_env
    browser = requests.Session()
    env.idp.login(browser, env.idp.create_user(f"leaver{secrets.token_hex(3)}"))
    reqid, info = env.client.prepare_for_authenticate(
        entityid=env.idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    form_with(r.text, "SAMLResponse")
    page = browser.get(f"{env.url}/saml/logout", timeout=10)
    _, fields = form_with(page.text, "token")
    out = browser.post(f"{env.url}/saml/logout", data=fields, allow_redirects=False, timeout=10)
    assert out.status_code in (302, 303), out.text[:400]
    query = parse_qs(urlsplit(out.headers["Location"]).query)
    relay = query["RelayState"][0]
    sent = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15))
    genuine = sign_root(
        f"<samlp:LogoutResponse xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' "
        f"ID='_{secrets.token_hex(8)}' Version='2.0' IssueInstant='{now_instant()}' "
        f"Destination='{env.url}/saml/slo' InResponseTo='{sent.get('ID')}'>"
        f"<saml:Issuer>{SP}</saml:Issuer><samlp:Status><samlp:StatusCode "
        "Value='urn:oasis:names:tc:SAML:2.0:status:Success'/></samlp:Status>"
        "</samlp:LogoutResponse>",
        env.sp_key,
    )
    before = env.state()
    assert f"saml:slo:{relay}" in before[0]
    for variant in CATALOGUE:
        evil = xsw_request(genuine, variant, set_attribute("InResponseTo", "_another"))
        for binding in ("post", "redirect"):
            r = env.send("/saml/slo", evil, binding, "SAMLResponse", RelayState=relay)
            env.assert_refused(r, before)
    r = env.send("/saml/slo", genuine, "post", "SAMLResponse", RelayState=relay)
    assert r.status_code == 200, r.text[:400]
    assert f"saml:slo:{relay}" not in env.state()[0]


def _authn_xml(env, body: str = "", *, prolog: str = "", issuer: str = SP, attrs: str = "") -> str:
    return (
        f"{prolog}<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' "
        f"ID='_{secrets.token_hex(8)}' Version='2.0' IssueInstant='{now_instant()}' "
        f"Destination='{env.url}/saml/sso' AssertionConsumerServiceURL='{ACS}'{attrs}>"
        f"<saml:Issuer>{issuer}</saml:Issuer>{body}</samlp:AuthnRequest>"
    )


def _logout_xml(env, *, prolog: str = "", name_id: str | None = None) -> str:
    return (
        f"{prolog}<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' "
        f"ID='_{secrets.token_hex(8)}' Version='2.0' IssueInstant='{now_instant()}' "
        f"Destination='{env.url}/saml/slo'><saml:Issuer>{SP}</saml:Issuer>"
        f"<saml:NameID>{name_id or env.name_id}</saml:NameID></samlp:LogoutRequest>"
    )


def _logout_response_xml(env, *, prolog: str = "", status: str = "") -> str:
    return (
        f"{prolog}<samlp:LogoutResponse xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' "
        f"ID='_{secrets.token_hex(8)}' Version='2.0' IssueInstant='{now_instant()}' "
        f"InResponseTo='_x'><saml:Issuer>{SP}</saml:Issuer><samlp:Status>"
        f"<samlp:StatusCode Value='urn:oasis:names:tc:SAML:2.0:status:Success'/>{status}"
        "</samlp:Status></samlp:LogoutResponse>"
    )


def test_xxe_fetches_nothing_and_reads_no_file(idp_env):
    """External entities (file and http), a parameter entity, an external DTD (SYSTEM and
    PUBLIC), each in an AuthnRequest, a LogoutRequest and a LogoutResponse, both bindings, also
    sent as UTF-16 (where a byte search for "<!DOCTYPE" sees nothing): refused, and the
    loopback listener they point at is never called."""
    env = idp_env
    before = env.state()
    with loopback_listener() as listener:
        for name, (prolog, ref) in xxe_prologs(listener.url).items():
            messages = [
                ("/saml/sso", "SAMLRequest", _authn_xml(env, prolog=prolog, issuer=SP + ref)),
                ("/saml/slo", "SAMLRequest", _logout_xml(env, prolog=prolog, name_id="n" + ref)),
                (
                    "/saml/slo",
                    "SAMLResponse",
                    _logout_response_xml(
                        env,
                        prolog=prolog,
                        status=f"<samlp:StatusMessage>{ref}</samlp:StatusMessage>",
                    ),
                ),
            ]
            for path, field, xml in messages:
                utf16 = ("<?xml version='1.0' encoding='UTF-16'?>" + xml).encode("utf-16")
                for doc in (xml, utf16):
                    for binding in ("post", "redirect"):
                        extra = {"RelayState": "x"} if field == "SAMLResponse" else {}
                        r = env.send(path, doc, binding, field, **extra)
                        env.assert_refused(r, before)
                        assert "DTD" in r.text or "not well-formed" in r.text, (name, r.text)
        time.sleep(0.2)
        assert listener.hits == []


def test_entity_expansion_is_refused_quickly(idp_env):
    """Billion laughs (10^10 "lol"s) and a quadratic blowup (one 20 000-character entity used
    2 000 times): refused as a DTD, in well under a second each, nothing expanded."""
    env = idp_env
    before = env.state()
    for prolog, ref in (billion_laughs(), quadratic_blowup()):
        for xml in (
            _authn_xml(env, prolog=prolog, issuer=SP + ref),
            _logout_xml(env, prolog=prolog, name_id=ref),
        ):
            for binding in ("post", "redirect"):
                started = time.monotonic()
                r = env.send("/saml/slo" if "Logout" in xml else "/saml/sso", xml, binding)
                assert time.monotonic() - started < 2.0
                env.assert_refused(r, before, "DTD")


def test_huge_inputs_are_cut_at_a_limit(idp_env):
    """A 6 MB SAMLRequest form field; a Redirect-binding SAMLRequest that inflates to 100 MB
    (refused by its encoded size before any inflating); one just under the encoded limit
    (64 KiB) that inflates to ~45 MB, cut at 256 KiB; a 300 KiB document of plain XML."""
    from idp.saml.inbound import MAX_ENCODED, MAX_XML, BadMessage, decode_redirect

    env = idp_env
    before = env.state()
    r = env.browser.post(
        f"{env.url}/saml/sso", data={"SAMLRequest": "A" * (6 * 1024 * 1024)}, timeout=60
    )
    env.assert_refused(r, before)
    hundred_mb = deflate(b"<a>" + b" " * (100 * 1024 * 1024) + b"</a>")
    started = time.monotonic()
    with pytest.raises(BadMessage, match="too large"):
        decode_redirect(hundred_mb)
    assert time.monotonic() - started < 0.1  # refused by its length, nothing inflated
    # Through the app itself (the development server refuses URLs over 64 KiB on its own).
    page = env.idp.app.test_client().get("/saml/sso", query_string={"SAMLRequest": hundred_mb})
    assert page.status_code == 400 and "too large" in page.get_data(as_text=True)
    assert "Reference:" in page.get_data(as_text=True)
    assert env.state() == before
    # About the largest bomb the encoded limit lets through: inflation stops at MAX_XML.
    bomb = deflate(b"<a>" + b" " * (45 * 1024 * 1024) + b"</a>")
    assert len(bomb) < MAX_ENCODED
    started = time.monotonic()
    with pytest.raises(BadMessage, match="too large"):
        decode_redirect(bomb)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    page = env.idp.app.test_client().get("/saml/slo", query_string={"SAMLRequest": bomb})
    assert page.status_code == 400 and "too large" in page.get_data(as_text=True)
    assert "Reference:" in page.get_data(as_text=True)
    assert time.monotonic() - started < 5.0
    r = env.browser.post(f"{env.url}/saml/sso", data={"SAMLRequest": bomb}, timeout=60)
    env.assert_refused(r, before)  # the POST binding does not inflate: not XML
    padding = "<samlp:Extensions>" + "<x/>" * (MAX_XML // 4) + "</samlp:Extensions>"
    env.assert_refused(
        env.send("/saml/sso", _authn_xml(env, padding), "redirect"), before, "too large"
    )


def test_deeply_nested_elements_are_refused(idp_env):
    """Elements nested 5 000 deep (POST) and 30 000 deep (Redirect, compressed): beyond the
    parser's depth limit, refused without a recursion error."""
    env = idp_env
    before = env.state()
    shallow = _authn_xml(env, f"<samlp:Extensions>{nested(5_000)}</samlp:Extensions>")
    deep = _authn_xml(env, f"<samlp:Extensions>{nested(30_000)}</samlp:Extensions>")
    env.assert_refused(env.send("/saml/sso", shallow, "post"), before)
    env.assert_refused(env.send("/saml/sso", deep, "redirect"), before)
    env.assert_refused(
        env.send("/saml/slo", _logout_xml(env, name_id=nested(5_000)), "post"), before
    )


def _with_extension(signed: str, child: str) -> str:
    """The SP's signed request with an Extensions element holding ``child`` put in after
    its Signature (where the schema allows Extensions)."""
    root = etree.fromstring(signed.encode())
    ext = etree.fromstring(f"<samlp:Extensions xmlns:samlp='{SAMLP}'>{child}</samlp:Extensions>")
    root.find(f"{{{DS}}}Signature").addnext(ext)
    return etree.tostring(root).decode()


def test_namespace_tricks_are_refused(idp_env):
    """A samlp prefix bound to another namespace; an Issuer in a foreign namespace; a fake
    ds:Signature (the ds prefix on another namespace) to pass as signed; the SP's real
    ds:Signature hidden under a foreign element of an unsigned request; a second Issuer under
    another prefix; and in a request the SP signed: an Extensions child typed
    xsi:type='samlp:AuthnRequestType', one carrying the request's own ID (a duplicate ID).
    Each refused for its own reason."""
    env = idp_env
    before = env.state()
    signed = env.signed_authn_request()
    signed_id = etree.fromstring(signed.encode()).get("ID")
    must_sign = "must sign its requests"
    cases = {
        "redefined-samlp": (
            _authn_xml(env).replace(f"xmlns:samlp='{SAMLP}'", "xmlns:samlp='urn:evil'"),
            "not a SAML protocol message",
        ),
        "foreign-issuer": (
            _authn_xml(env).replace("<saml:Issuer>", "<saml:Issuer xmlns:saml='urn:evil'>"),
            "unknown service provider",
        ),
        "fake-ds-signature": (
            _authn_xml(
                env,
                "<ds:Signature xmlns:ds='urn:not-dsig'><ds:SignedInfo/><ds:SignatureValue>AAAA"
                "</ds:SignatureValue></ds:Signature>",
            ),
            must_sign,
        ),
        "ds-under-foreign": (
            _authn_xml(
                env,
                f"<samlp:Extensions><e:x xmlns:e='urn:e'>{_own_signature_xml(signed)}</e:x>"
                "</samlp:Extensions>",
            ),
            must_sign,
        ),
        "prefix-swap-issuer": (
            _authn_xml(env).replace(
                "</saml:Issuer>",
                f"</saml:Issuer><p:Issuer xmlns:p='{SAML}'>https://evil.example/sp</p:Issuer>",
            ),
            "repeated element",
        ),
        "xsi-type": (
            _with_extension(
                signed,
                f"<e:x xmlns:e='urn:e' xmlns:xsi='{XSI}' xsi:type='samlp:AuthnRequestType' "
                f"ID='_x' Version='2.0' IssueInstant='{now_instant()}'/>",
            ),
            "not valid",
        ),
        "duplicate-id": (
            _with_extension(signed, f"<e:x xmlns:e='urn:e' ID='{signed_id}'/>"),
            "not valid",
        ),
    }
    for name, (xml, why) in cases.items():
        for binding in ("post", "redirect"):
            r = env.send("/saml/sso", xml, binding)
            env.assert_refused(r, before, why)
            assert "https://evil.example" not in r.text, name


def _own_signature_xml(signed: str) -> str:
    root = etree.fromstring(signed.encode())
    return etree.tostring(root.find(f"{{{DS}}}Signature")).decode()


# === our broker: Responses from an upstream IdP ==================================================

ALIAS = "campus"
BROKER = "http://localhost"


class BrokerEnv:
    def __init__(self, app, upstream, ends) -> None:
        self.app = app
        self.svc = app.extensions["idp"]
        self.upstream = upstream
        self.ends = ends

    def configure(self, **settings) -> None:
        from idp.manage import Actor, transaction, upstreams

        config = {"metadata_xml": self.upstream.metadata, "trust_email": True, **settings}
        with transaction(self.svc, Actor.operator("test")) as ctx:
            upstreams.update(ctx, ALIAS, {"config": config})

    def flight(self):
        """A test client whose browser started a sign-in at the upstream: (client, RelayState)."""
        from idp.sso import broker as hub
        from idp.web.broker_start import BROWSER_KEY

        client = self.app.test_client()
        secret = secrets.token_urlsafe(24)
        with client.session_transaction() as s:
            s[BROWSER_KEY] = secret
        flight = hub.new_flight(
            self.svc, ALIAS, rid=None, next_url="/account", browser_secret=secret
        )
        hub.save_flight(self.svc, flight)
        return client, flight.state

    def response(self, relay: str, **kw) -> str:
        from idp.broker.saml import request_id_for

        kw.setdefault("in_response_to", request_id_for(relay))
        kw.setdefault("destination", self.ends.acs)
        kw.setdefault("audience", self.ends.entity_id)
        # Each person new (an address seen before would be a linking question instead).
        kw.setdefault(
            "identity",
            {"mail": [f"p{secrets.token_hex(4)}@upstream.example.org"], "sn": ["Lovelace"]},
        )
        return self.upstream.response(**kw)

    def post(self, client, relay: str, xml: str | bytes):
        return client.post(
            f"/broker/{ALIAS}/saml/acs",
            data={"SAMLResponse": b64(xml), "RelayState": relay},
        )

    def state(self) -> tuple:
        from idp.storage.models import AuditEvent, KVEntry, User
        from idp.storage.models_broker import UpstreamLink

        with self.svc.sessions() as db:
            kv = tuple(sorted(db.scalars(select(KVEntry.key)).all()))
            users = db.scalar(select(func.count()).select_from(User))
            links = db.scalar(select(func.count()).select_from(UpstreamLink))
            last = db.scalar(select(func.max(AuditEvent.id))) or 0
        return kv, users, links, last

    def new_audit(self, since: int) -> list[tuple[str, dict]]:
        from idp.storage.models import AuditEvent

        with self.svc.sessions() as db:
            rows = db.scalars(select(AuditEvent).where(AuditEvent.id > since)).all()
            return [(r.action, dict(r.details or {})) for r in rows]

    def refused(self, client, relay: str, xml: str | bytes, reason: str | None = None):
        """Post ``xml`` to the ACS and assert it refused with nothing changed."""
        before = self.state()
        resp = self.post(client, relay, xml)
        self.assert_refused(resp, before, reason)
        return resp

    def assert_refused(self, resp, before, reason: str | None = None) -> None:
        """The refusal page (with a reference id), nothing written but one refusal row: no
        SSO session, no flight taken, no replay marker, no user, no link."""
        text = resp.get_data(as_text=True)
        assert resp.status_code == 403, (resp.status_code, text[:400])
        assert "not possible" in text and "Traceback" not in text
        assert re.search(r"Reference:\s*<code>[\w-]{6,}</code>", text), text[:800]
        after = self.state()
        assert after[:3] == before[:3]
        rows = self.new_audit(before[3])
        assert [a for a, _ in rows] == ["broker.refused"], rows
        if reason:
            assert rows[0][1].get("reason") == reason, rows


@pytest.fixture(scope="module")
def broker_env(tmp_path_factory):
    from saml_upstream_kit import build_upstream
    from support import base_overrides, init_database

    from idp.app import create_app
    from idp.broker.saml_metadata import sp_endpoints, sp_metadata
    from idp.manage import Actor, transaction, upstreams

    folder = tmp_path_factory.mktemp("atk-saml-broker")
    instance = folder / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, issuer=BROKER)
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    sp_md = sp_metadata(
        svc, ALIAS, name_id_format=None, authn_requests_signed=False, want_assertions_signed=True
    )
    up = build_upstream(folder / "up", [sp_md])
    with transaction(svc, Actor.operator("test")) as ctx:
        upstreams.create(
            ctx,
            ALIAS,
            "saml",
            {
                "display_name": "Campus",
                "create_users": True,
                "config": {"metadata_xml": up.metadata, "trust_email": True},
            },
        )
    yield BrokerEnv(app, up, sp_endpoints(svc, ALIAS))
    svc.engine.dispose()


@pytest.fixture
def broker(broker_env):
    broker_env.configure()
    return broker_env


def test_a_genuine_upstream_response_signs_in(broker):
    """The control: the same Responses, untouched, sign in (a user and a link made)."""
    for settings, signs in (
        ({}, {}),
        ({"want_assertions_signed": False}, {"sign_assertion": False}),
    ):
        broker.configure(**settings)
        client, relay = broker.flight()
        before = broker.state()
        xml = broker.response(relay, name_id=f"control-{secrets.token_hex(4)}", **signs)
        resp = broker.post(client, relay, xml)
        assert resp.status_code in (302, 303), broker.new_audit(before[3])
        after = broker.state()
        assert after[1] == before[1] + 1 and after[2] == before[2] + 1


@pytest.mark.parametrize("variant", ["xsw1", "xsw2"])
def test_wrapping_the_signed_response_is_refused(broker, variant):
    """XSW1 / XSW2 against an upstream that signs only the Response (assertions unsigned
    allowed): an evil Response root around the signed one, the signature moved onto it."""
    broker.configure(want_assertions_signed=False)
    client, relay = broker.flight()
    before = broker.state()
    signed = broker.response(relay, sign_assertion=False)
    evil = xsw_message(signed, variant, set_name_id("victim-subject"))
    broker.assert_refused(broker.post(client, relay, evil), before)


@pytest.mark.parametrize("variant", CATALOGUE[2:])
def test_wrapping_the_signed_assertion_is_refused(broker, variant):
    """XSW3-XSW8 against an upstream that signs the Assertion only: every placement of an
    evil Assertion (beside, around, inside the Signature, in Extensions)."""
    client, relay = broker.flight()
    before = broker.state()
    signed = broker.response(relay, sign_response=False)
    evil = xsw_assertion(signed, variant, set_name_id("victim-subject"))
    broker.assert_refused(broker.post(client, relay, evil), before)


@pytest.mark.parametrize("variant", CATALOGUE[2:])
def test_wrapping_the_assertion_of_a_doubly_signed_response_is_refused(broker, variant):
    """The same catalogue where the upstream signs both (its default): the Response's
    signature covers the evil part now, so it must fail to verify or the wrapping be seen."""
    client, relay = broker.flight()
    before = broker.state()
    evil = xsw_assertion(broker.response(relay), variant, set_name_id("victim-subject"))
    broker.assert_refused(broker.post(client, relay, evil), before)


def test_comment_in_the_upstream_name_id_is_refused_and_attributes_are_never_cut(broker):
    """The duo attack on the broker: ``admin<!---->.evil`` put into a signed NameID keeps the
    signature valid; refused (bad_xml). In an attribute value (the e-mail that links
    accounts) the comment is read through: the value is the whole signed string, never the
    part before the comment."""
    from idp.broker import saml as bs

    client, relay = broker.flight()
    before = broker.state()
    signed = broker.response(relay, name_id="admin.evil.example")
    duo = signed.replace(">admin.evil.example<", ">admin<!---->.evil.example<")
    assert duo != signed
    broker.assert_refused(broker.post(client, relay, duo), before, "bad_xml")
    assert broker.state()[:3] == before[:3]

    up = bs.upstream(ALIAS, broker.upstream.metadata, {}, broker.svc.clock.utcnow())
    relay = "duo-relay-" + secrets.token_hex(4)
    mail = broker.response(
        relay,
        name_id=f"p-{secrets.token_hex(4)}",
        identity={"mail": ["admin@localhost.evil.example"]},
    )
    cut = mail.replace("admin@localhost.evil.example", "admin@localhost<!---->.evil.example")
    assert cut != mail
    asserted = bs.consume(
        broker.svc, up, saml_response=b64(cut), request_id=bs.request_id_for(relay)
    )
    assert asserted.email == "admin@localhost.evil.example"


def test_unsigned_and_altered_upstream_responses_are_refused(broker):
    """No signature at all; the NameID changed after signing; an attribute changed."""
    client, relay = broker.flight()
    unsigned = broker.response(relay, sign_response=False, sign_assertion=False)
    broker.refused(client, relay, unsigned, "not_signed")
    signed = broker.response(relay)
    altered = re.sub(r"(<(\w+:)?NameID\b[^>]*>)[^<]*", r"\g<1>victim-subject", signed, count=1)
    assert altered != signed
    broker.refused(client, relay, altered, "bad_signature")
    attr = signed.replace("Lovelace", "Byron")
    assert attr != signed
    broker.refused(client, relay, attr, "bad_signature")


def test_xxe_and_entity_expansion_in_an_upstream_response_fetch_nothing(broker):
    """Every XXE form and both expansion bombs in the Response (also as UTF-16), at the ACS:
    refused as bad XML, the loopback listener never called, no file content shown."""
    client, relay = broker.flight()
    before = broker.state()
    signed = broker.response(relay)
    body = signed.split("?>", 1)[-1] if signed.startswith("<?xml") else signed
    with loopback_listener() as listener:
        prologs = dict(xxe_prologs(listener.url))
        prologs["billion-laughs"] = billion_laughs()
        prologs["quadratic"] = quadratic_blowup(size=5_000, refs=1_000)
        for name, (prolog, ref) in prologs.items():
            doc = prolog + body.replace("Lovelace", "Lovelace" + ref, 1)
            utf16 = ("<?xml version='1.0' encoding='UTF-16'?>" + doc).encode("utf-16")
            for data in (doc, utf16):
                resp = broker.post(client, relay, data)
                broker.assert_refused(resp, before, "bad_xml")
                assert "root:x:0:0" not in resp.get_data(as_text=True), name
                before = broker.state()
        time.sleep(0.2)
        assert listener.hits == []


def test_huge_and_deep_upstream_responses_are_refused(broker):
    """A 6 MB form post, a Response over the encoded limit, one nested 5 000 deep."""
    client, relay = broker.flight()
    before = broker.state()
    resp = client.post(
        f"/broker/{ALIAS}/saml/acs",
        data={"SAMLResponse": "A" * (6 * 1024 * 1024), "RelayState": relay},
    )
    assert resp.status_code in (403, 413), resp.status_code
    assert "Traceback" not in resp.get_data(as_text=True)
    assert broker.state()[:3] == before[:3]
    before = broker.state()
    signed = broker.response(relay)
    big = signed.replace("Lovelace", "L" * (300 * 1024), 1)
    broker.assert_refused(broker.post(client, relay, big), before, "bad_xml")
    before = broker.state()
    deep = signed.replace("Lovelace", nested(5_000), 1)
    broker.assert_refused(broker.post(client, relay, deep), before, "bad_xml")


def test_namespace_tricks_in_an_upstream_response_are_refused(broker):
    """Two elements sharing an ID (the Issuer given the Assertion's); a fake ds:Signature (the
    ds prefix on another namespace) on an unsigned assertion; an evil assertion in a foreign
    element under xsi:type='saml:AssertionType' beside the signed one; the signed Assertion's
    namespace rebound so that it is no Assertion at all."""
    client, relay = broker.flight()
    signed = broker.response(relay)

    root = etree.fromstring(signed.encode())
    assertion = root.find(f"{{{SAML}}}Assertion")
    root.find(f"{{{SAML}}}Issuer").set("ID", assertion.get("ID"))
    broker.refused(client, relay, etree.tostring(root), "signature_wrapping")

    root = etree.fromstring(
        broker.response(relay, sign_response=False, sign_assertion=False).encode()
    )
    assertion = root.find(f"{{{SAML}}}Assertion")
    fake = etree.SubElement(assertion, "{urn:not-dsig}Signature", nsmap={"ds": "urn:not-dsig"})
    etree.SubElement(fake, "{urn:not-dsig}SignatureValue").text = "AAAA"
    assertion.find(f"{{{SAML}}}Issuer").addnext(fake)
    broker.refused(client, relay, etree.tostring(root), "not_signed")

    root = etree.fromstring(signed.encode())
    evil = copy.deepcopy(root.find(f"{{{SAML}}}Assertion"))
    evil.remove(evil.find(f"{{{DS}}}Signature"))
    for name_id in evil.iter(f"{{{SAML}}}NameID"):
        name_id.text = "victim-subject"
    wrapper = etree.SubElement(root, "{urn:e}Wrapper", nsmap={"xsi": XSI})
    wrapper.set(f"{{{XSI}}}type", "saml:AssertionType")
    wrapper.append(evil)
    broker.refused(client, relay, etree.tostring(root), "signature_wrapping")

    rebound = signed.replace(SAML, "urn:evil:assertion")
    assert rebound != signed
    broker.refused(client, relay, rebound)


def _upstream_session(broker, subject: str) -> str:
    """A session here that came through the upstream for ``subject`` (SessionIndex idx-1)."""
    from idp.broker.saml import UpstreamNameId
    from idp.broker.saml_logout import session_ref
    from idp.sso import broker as hub
    from idp.sso.sessions import session_manager

    sid = session_manager(broker.svc).create(f"{subject}-uuid", ["fed"], "1").sid
    ref = session_ref(UpstreamNameId(subject, NAMEID_FORMAT_PERSISTENT), "idx-1")
    hub.remember_session(broker.svc, sid, {"provider": ALIAS, "ref": ref, "subject": subject})
    return sid


def _upstream_logout_request(broker, name_id: str) -> str:
    from saml2.saml import NameID as Saml2NameID

    _, signed = broker.upstream.server.create_logout_request(
        broker.ends.sls,
        broker.ends.entity_id,
        name_id=Saml2NameID(format=NAMEID_FORMAT_PERSISTENT, text=name_id),
        session_indexes=["idx-1"],
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    return str(signed)


def test_a_genuine_upstream_logout_request_ends_the_session(broker):
    """The control for the wrapping below: the upstream's own signed LogoutRequest for the
    person ends their session here."""
    from idp.sso.sessions import session_manager

    sid = _upstream_session(broker, "leaver-subject")
    signed = _upstream_logout_request(broker, "leaver-subject")
    resp = broker.app.test_client().post(
        f"/broker/{ALIAS}/saml/sls", data={"SAMLRequest": b64(signed), "RelayState": "lo"}
    )
    # The answer: a LogoutResponse to the upstream's SingleLogoutService (HTTP-Redirect).
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:400]
    assert resp.headers["Location"].startswith("https://upstream.example.org/idp/slo?")
    assert session_manager(broker.svc).peek(sid) is None


@pytest.mark.parametrize("variant", CATALOGUE)
def test_wrapping_an_upstream_logout_request_ends_no_session(broker, variant):
    """The upstream signed a LogoutRequest for someone else; wrapped (XSW1-XSW8, request
    analogues) so that the evil part names a person signed in here through it. Posted to
    /broker/<alias>/saml/sls: the error page with a reference, that person's session alive,
    the store unchanged."""
    from idp.sso.sessions import session_manager

    mgr = session_manager(broker.svc)
    victim = _upstream_session(broker, "victim-subject")
    signed = _upstream_logout_request(broker, "someone-else")
    evil = xsw_request(str(signed), variant, set_name_id("victim-subject"))
    before = broker.state()
    resp = broker.app.test_client().post(
        f"/broker/{ALIAS}/saml/sls", data={"SAMLRequest": b64(evil), "RelayState": "lo"}
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 400, (resp.status_code, text[:400])
    assert re.search(r"Reference:\s*<code>[\w-]{6,}</code>", text)
    assert "SAMLResponse" not in text and "Traceback" not in text
    assert broker.state() == before
    assert mgr.peek(victim) is not None
    mgr.end(victim)


def test_relay_state_is_escaped_in_the_post_form(idp_env):
    """A script as the RelayState of a genuine signed request (SP-initiated, the signature
    covering it) and of an IdP-initiated sign-in: carried back to the SP's registered ACS
    only, escaped in the auto-posting form, which runs no script of its own but the nonced one."""
    from saml_support import form_with

    env = idp_env
    payload = '"><script>alert(1)</script>'
    _, info = env.client.prepare_for_authenticate(
        entityid=env.idp.metadata_url,
        binding=BINDING_HTTP_REDIRECT,
        relay_state=payload,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    pages = [
        env.browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10),
        env.browser.get(
            f"{env.url}/saml/init",
            params={"sp": SP, "RelayState": payload[:40]},
            allow_redirects=False,
            timeout=10,
        ),
    ]
    for page in pages:
        assert page.status_code == 200, page.text[:400]
        assert "<script>alert(1)" not in page.text
        action, fields = form_with(page.text, "SAMLResponse")
        assert action == ACS
        assert fields["RelayState"] in (payload, payload[:40])
        for script in re.findall(r"<script\b[^>]*>", page.text):
            assert "nonce=" in script, script


def test_the_acs_bounce_page_escapes_what_it_posts_back(broker):
    """A cross-site POST to the ACS without our cookie is bounced through a same-origin form
    that posts the fields back: a script as RelayState and as SAMLResponse comes back escaped,
    and the page writes nothing."""
    payload = '"><script>alert(1)</script>'
    before = broker.state()
    resp = broker.app.test_client(use_cookies=False).post(
        f"/broker/{ALIAS}/saml/acs", data={"SAMLResponse": payload, "RelayState": payload}
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200, text[:400]
    assert "<script>alert(1)" not in text
    assert 'name="bounced"' in text and "no-store" in resp.headers["Cache-Control"]
    for script in re.findall(r"<script\b[^>]*>", text):
        assert "nonce=" in script, script
    assert broker.state() == before
