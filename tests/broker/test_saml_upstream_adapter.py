"""Upstream SAML IdPs, the adapter (idp.broker.saml): pysaml2 as the upstream SAML IdP's peer.

A pysaml2 ``Server`` (IdP) with its own key signs the Responses; our adapter, as its service
provider, must accept the genuine one and refuse every hostile one with its reason, having
written nothing but (for a Response that passed every check) the replay marker. The AuthnRequest
and our SP metadata are read back with pysaml2 and verified with libxmlsec1."""

from __future__ import annotations

import base64
import re
import time
import zlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import xmlsec
from lxml import etree
from saml2.saml import NAMEID_FORMAT_TRANSIENT
from saml_upstream_kit import (
    UPSTREAM,
    UPSTREAM_SLO,
    b64,
    build_upstream,
    encrypt_assertion,
    first_assertion,
    wrap_evil_assertion,
)
from sqlalchemy import func, select
from support import base_overrides, init_database

from idp.broker import saml as bs
from idp.broker.saml_logout import (
    logout_request,
    logout_response,
    session_ref,
    upstream_logout_request,
)
from idp.broker.saml_metadata import parse_idp_metadata, sp_endpoints, sp_metadata
from idp.errors import ValidationError
from idp.saml.results import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, PostForm, Received, Redirect

ALIAS = "campus"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
SKEW = 120
SHA256 = (
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmlenc#sha256",
)


class Env:
    def __init__(self, app, clock, folder: Path) -> None:
        self.app = app
        self.svc = app.extensions["idp"]
        self.clock = clock
        self.ends = sp_endpoints(self.svc, ALIAS)
        self.sp_md = sp_metadata(
            self.svc,
            ALIAS,
            name_id_format=None,
            authn_requests_signed=False,
            want_assertions_signed=True,
        )
        # Another SP of ours (another upstream's), for an assertion meant for someone else.
        self.other_sp_md = sp_metadata(
            self.svc,
            "other",
            name_id_format=None,
            authn_requests_signed=False,
            want_assertions_signed=True,
        )
        self.idp = build_upstream(folder / "up", [self.sp_md, self.other_sp_md])
        # Same entityID, another key: what an impostor signs with.
        self.impostor = build_upstream(folder / "impostor", [self.sp_md], name="impostor")

    def upstream(self, **settings) -> bs.SamlUpstream:
        return bs.upstream(ALIAS, self.idp.metadata, settings, self.clock.utcnow())

    def response(self, relay: str = "rs-1", **kw) -> str:
        kw.setdefault("in_response_to", bs.request_id_for(relay))
        kw.setdefault("destination", self.ends.acs)
        kw.setdefault("audience", self.ends.entity_id)
        return self.idp.response(**kw)

    def state(self) -> tuple:
        from idp.storage.models import KVEntry, User

        with self.svc.sessions() as db:
            keys = tuple(sorted(db.scalars(select(KVEntry.key)).all()))
            users = db.scalar(select(func.count()).select_from(User))
        return keys, users

    def consume(self, xml: str, relay: str | None = "rs-1", up=None, **settings):
        return bs.consume(
            self.svc,
            up or self.upstream(**settings),
            saml_response=b64(xml),
            request_id=bs.request_id_for(relay) if relay else None,
        )

    def refused(
        self, xml: str, why: str, relay: str | None = "rs-1", reason: str | None = None, **settings
    ) -> None:
        """Refused with the message ``why`` (and the audit ``reason``), the store unchanged."""
        before = self.state()
        with pytest.raises(bs.Refused, match=why) as caught:
            self.consume(xml, relay, **settings)
        assert caught.value.reason
        if reason:
            assert caught.value.reason == reason
        assert self.state() == before


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from idp.app import create_app
    from idp.clock import FrozenClock

    folder = tmp_path_factory.mktemp("broker-saml")
    instance = folder / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, issuer="https://idp.example.org")
    init_database(overrides)
    clock = FrozenClock(time.time())
    app = create_app(overrides, clock=clock)
    yield Env(app, clock, folder)
    app.extensions["idp"].engine.dispose()


@pytest.fixture(autouse=True)
def _now(env):
    env.clock._t = time.time()


def seen_markers(env) -> int:
    return sum(1 for k in env.state()[0] if k.startswith("broker:saml:seen:"))


# --- the genuine Response ---------------------------------------------------------------------


def test_a_signed_response_gives_the_neutral_identity_and_a_replay_marker(env):
    before = seen_markers(env)
    got = env.consume(env.response())
    assert got.subject == "ada-persistent-1"
    assert got.email == "ada@upstream.example.org" and got.email_verified is False
    assert (got.given_name, got.family_name) == ("Ada", "Lovelace")
    assert got.attributes["eduPersonAffiliation"] == ["member", "staff"]
    assert got.attributes["urn:oid:1.3.6.1.4.1.5923.1.1.1.1"] == ["member", "staff"]
    assert got.session_ref and got.name_id.format_uri.endswith(":persistent")
    assert seen_markers(env) == before + 1


def test_trust_email_marks_the_address_verified(env):
    assert env.consume(env.response(), trust_email=True).email_verified is True


def test_a_configured_attribute_is_the_subject(env):
    got = env.consume(env.response(), subject_attribute="mail")
    assert got.subject == "ada@upstream.example.org"


def test_a_transient_name_id_is_no_subject(env):
    env.refused(env.response(name_id_format=NAMEID_FORMAT_TRANSIENT), "transient NameID")


def test_a_transient_name_id_with_a_subject_attribute_is_fine(env):
    xml = env.response(name_id_format=NAMEID_FORMAT_TRANSIENT)
    assert env.consume(xml, subject_attribute="mail").subject == "ada@upstream.example.org"


def test_a_signed_response_around_an_unsigned_assertion_needs_the_setting(env):
    xml = env.response(sign_assertion=False)
    env.refused(xml, "the Assertion is not signed")
    assert env.consume(xml, want_assertions_signed=False).subject == "ada-persistent-1"


def test_an_encrypted_assertion_is_decrypted_with_our_key(env):
    cert = env.svc.keys.ring().signing_key("RS256").certificate_pem
    for block in (AES256_CBC, AES128_GCM):
        xml = encrypt_assertion(env.response(sign_response=False), cert, block)
        assert "EncryptedAssertion" in xml and "ada-persistent-1" not in xml
        assert env.consume(xml).subject == "ada-persistent-1"


def test_an_encrypted_assertion_for_another_key_is_refused(env):
    xml = encrypt_assertion(env.response(sign_response=False), env.idp.cert.read_text(), AES256_CBC)
    env.refused(xml, "cannot be decrypted")


def test_unsolicited_responses_only_where_allowed(env):
    xml = env.response(in_response_to=None)
    env.refused(xml, "unsolicited", relay=None)
    assert env.consume(xml, relay=None, allow_unsolicited=True).subject == "ada-persistent-1"


# --- hostile Responses: refused, and nothing written ---------------------------------------------


def test_unsigned_response_is_refused(env):
    xml = env.response(sign_response=False, sign_assertion=False)
    env.refused(
        xml, "neither the Response nor the Assertion is signed", want_assertions_signed=False
    )
    env.refused(xml, "the Assertion is not signed")


def test_signed_with_another_key_is_refused(env):
    xml = env.response(issuer_server=env.impostor.server)
    env.refused(xml, "does not verify", reason="bad_signature")


def test_altered_after_signing_is_refused(env):
    xml = env.response()
    altered = re.sub(r"ada-persistent-1", "mallory", xml)
    assert altered != xml
    env.refused(altered, "does not verify")


def test_altered_attribute_in_an_assertion_signed_alone_is_refused(env):
    xml = env.response(sign_response=False)
    env.refused(xml.replace("Lovelace", "Byron"), "does not verify")


def test_signature_wrapping_is_refused(env):
    """A second, unsigned assertion beside the signed one: refused whether the Response or
    only the Assertion is signed, and whether or not the copy reuses the signed one's ID."""
    signed_response = env.response()
    env.refused(wrap_evil_assertion(signed_response, "mallory"), "does not verify")
    signed_assertion = env.response(sign_response=False)
    env.refused(wrap_evil_assertion(signed_assertion, "mallory"), "signature wrapping")
    env.refused(wrap_evil_assertion(signed_assertion, "mallory", same_id=True), "the same ID")


def test_an_assertion_moved_out_of_its_response_is_refused(env):
    """The signed assertion of a Response to another request, put into a Response to ours."""
    signed = first_assertion(env.response(relay="rs-other", sign_response=False))
    outer = env.response(sign_response=False)
    env.refused(outer.replace(first_assertion(outer), signed), "another request")


def test_wrong_audience_is_refused(env):
    other = sp_endpoints(env.svc, "other").entity_id
    env.refused(env.response(audience=other), "another audience", reason="wrong_audience")


def test_wrong_destination_is_refused(env):
    env.refused(
        env.response(destination="https://evil.example.org/acs"),
        "another destination",
        reason="wrong_destination",
    )


def test_wrong_issuer_is_refused(env):
    xml = env.response().replace(UPSTREAM, "https://other-idp.example.org/md")
    env.refused(xml, "issued by another identity provider")


def _not_on_or_after(xml: str) -> float:
    from idp.saml.inbound import utc_instant

    values = re.findall(r'NotOnOrAfter="([^"]+)"', first_assertion(xml))
    return min(utc_instant(v) for v in values)


def test_expiry_one_second_either_side(env):
    """Each Response one second inside and one second past its NotOnOrAfter (plus the skew)."""
    early, late = env.response(), env.response()
    env.clock._t = _not_on_or_after(early) + SKEW - 1
    assert env.consume(early).subject == "ada-persistent-1"
    env.clock._t = _not_on_or_after(late) + SKEW + 1
    env.refused(late, "expired", reason="expired")


def test_replayed_assertion_is_refused(env):
    xml = env.response()
    env.consume(xml)
    env.refused(xml, "already used", reason="replay")


def test_in_response_to_an_unknown_request_is_refused(env):
    env.refused(env.response(relay="rs-1"), "another request", relay="rs-2")
    env.refused(env.response(relay="rs-1"), "no sign-in started in this browser", relay=None)


def test_a_dtd_is_refused(env):
    xml = env.response()
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    xxe = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body.replace(
        "ada-persistent-1", "&x;"
    )
    env.refused(xxe, "DTD", reason="bad_xml")


def test_an_error_status_is_shown(env):
    from saml2.samlp import STATUS_AUTHN_FAILED

    resp = env.idp.server.create_error_response(
        bs.request_id_for("rs-1"),
        env.ends.acs,
        (STATUS_AUTHN_FAILED, "wrong password"),
        sign=True,
        sign_alg=SHA256[0],
        digest_alg=SHA256[1],
    )
    env.refused(str(resp), "did not sign you in .*wrong password")


def test_weak_encryption_is_refused(env):
    cert = env.svc.keys.ring().signing_key("RS256").certificate_pem
    env.refused(env.response(encrypt_cert=cert), "tripledes-cbc.*not accepted")


def test_sha1_signatures_are_refused(env):
    from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

    resp = env.idp.server.create_authn_response(
        {"mail": ["a@b.example"]},
        in_response_to=bs.request_id_for("rs-1"),
        destination=env.ends.acs,
        sp_entity_id=env.ends.entity_id,
        name_id=__import__("saml2.saml", fromlist=["NameID"]).NameID(
            format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent", text="x"
        ),
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
        sign_response=True,
        sign_assertion=True,
        sign_alg=SIG_RSA_SHA1,
        digest_alg=DIGEST_SHA1,
    )
    env.refused(str(resp), "not accepted")


# --- what we send ---------------------------------------------------------------------------


def _verify_xml_signature(xml: bytes, cert_pem: str) -> None:
    root = etree.fromstring(xml)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(root.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))


def test_our_sp_metadata_is_signed_and_names_our_endpoints(env):
    from saml2.attribute_converter import ac_factory
    from saml2.mdstore import InMemoryMetaData

    cert = env.svc.keys.ring().signing_key("RS256").certificate_pem
    _verify_xml_signature(env.sp_md.encode(), cert)
    md = InMemoryMetaData(ac_factory(), env.sp_md)
    md.load()
    sp = md[env.ends.entity_id]["spsso_descriptor"][0]
    assert env.ends.entity_id == "https://idp.example.org/broker/campus/saml/metadata"
    assert [a["location"] for a in sp["assertion_consumer_service"]] == [env.ends.acs]
    assert {s["binding"] for s in sp["single_logout_service"]} == {
        BINDING_HTTP_POST,
        BINDING_HTTP_REDIRECT,
    }
    assert sp["want_assertions_signed"] == "true"


def test_the_authn_request_goes_by_redirect_and_pysaml2_reads_it(env):
    out = bs.start(env.svc, env.upstream(), relay_state="rs-9")
    assert isinstance(out, Redirect)
    query = parse_qs(urlsplit(out.location).query)
    assert query["RelayState"] == ["rs-9"] and "Signature" not in query
    req = env.idp.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
    assert req.message.id == bs.request_id_for("rs-9")
    assert req.message.assertion_consumer_service_url == env.ends.acs
    assert req.message.issuer.text == env.ends.entity_id
    assert req.message.name_id_policy.format.endswith(":persistent")


def test_the_authn_request_is_signed_when_asked(env):
    out = bs.start(env.svc, env.upstream(sign_authn_requests=True), relay_state="rs-9")
    query = parse_qs(urlsplit(out.location).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    assert b"ForceAuthn" not in xml


def test_a_post_only_upstream_gets_a_signed_post(env):
    md = re.sub(r"<[^>]*SingleSignOnService[^>]*HTTP-Redirect[^>]*/>", "", env.idp.metadata)
    md = md.replace('WantAuthnRequestsSigned="false"', 'WantAuthnRequestsSigned="true"')
    if "WantAuthnRequestsSigned" not in md:
        md = md.replace(
            "<ns0:IDPSSODescriptor ", '<ns0:IDPSSODescriptor WantAuthnRequestsSigned="true" '
        )
    up = bs.upstream(ALIAS, md, {}, env.clock.utcnow())
    assert BINDING_HTTP_REDIRECT not in up.idp.sso and up.signs_requests
    out = bs.start(env.svc, up, relay_state="rs-8", force_authn=True)
    assert isinstance(out, PostForm) and out.relay_state == "rs-8"
    xml = base64.b64decode(out.value)
    _verify_xml_signature(xml, env.svc.keys.ring().signing_key("RS256").certificate_pem)
    assert b'ForceAuthn="true"' in xml


# --- the upstream's metadata -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda md: '<!DOCTYPE x [<!ENTITY a "b">]>' + md.split("?>", 1)[-1], "DTD"),
        (lambda md: md.replace("IDPSSODescriptor", "AttributeAuthorityDescriptor"), "IDPSSO"),
        (
            lambda md: md.replace("https://upstream.example.org/idp/sso", "http://u.example/sso"),
            "only https",
        ),
        (
            lambda md: re.sub(r"<ns0:KeyDescriptor.*?</ns0:KeyDescriptor>", "", md, flags=re.S),
            "no signing certificate",
        ),
        (
            lambda md: md.replace(
                "<ns0:EntityDescriptor ", '<ns0:EntityDescriptor validUntil="2001-01-01T00:00:00Z" '
            ),
            "expired",
        ),
    ],
)
def test_unusable_upstream_metadata_is_refused(env, edit, why):
    with pytest.raises(ValidationError, match=why):
        parse_idp_metadata(edit(env.idp.metadata), now=env.clock.utcnow())


# --- single logout -----------------------------------------------------------------------------


def _sessions(env):
    from idp.sso.sessions import session_manager

    return session_manager(env.svc)


def test_upstream_logout_request_ends_the_sessions_that_came_through_it(env):
    from saml2.saml import NameID

    mgr = _sessions(env)
    got = env.consume(env.response())
    mine = mgr.create("u-1", ["fed"], "1").sid
    other = mgr.create("u-2", ["fed"], "1").sid
    from idp.sso import broker as hub

    ref = session_ref(got.name_id, got.session_ref)
    hub.remember_session(env.svc, mine, {"provider": ALIAS, "ref": ref, "subject": got.subject})
    req_id, req = env.idp.server.create_logout_request(
        env.ends.sls,
        env.ends.entity_id,
        name_id=NameID(format=got.name_id.format_uri, text=got.name_id.value),
        session_indexes=[got.session_ref],
        sign=True,
        sign_alg=SHA256[0],
        digest_alg=SHA256[1],
    )
    received = Received(BINDING_HTTP_POST, b64(str(req)), "lo-1")
    # Unsigned: refused, nothing ended.
    # The signature element removed whatever prefix pysaml2 gave its namespace (ns0, ds...:
    # it depends on what other tests of the process registered).
    unsigned = re.sub(
        r"<((?:\w+:)?)Signature\b[^>]*>.*?</\1Signature>", "", str(req), flags=re.S
    )
    assert "Signature" not in unsigned
    before = env.state()
    with pytest.raises(bs.Refused, match="not signed"):
        upstream_logout_request(
            env.svc, env.upstream(), Received(BINDING_HTTP_POST, b64(unsigned), None)
        )
    assert env.state() == before
    ended, answer = upstream_logout_request(env.svc, env.upstream(), received)
    assert ended == 1
    assert mgr.peek(mine) is None and mgr.peek(other) is not None
    assert isinstance(answer, Redirect) and answer.location.startswith(UPSTREAM_SLO)
    query = parse_qs(urlsplit(answer.location).query)
    assert "Signature" in query and query["RelayState"] == ["lo-1"]
    resp = env.idp.server.parse_logout_request_response(
        query["SAMLResponse"][0], BINDING_HTTP_REDIRECT
    )
    assert resp.response.in_response_to == req_id
    with pytest.raises(bs.Refused, match="replay"):
        upstream_logout_request(env.svc, env.upstream(), received)


def test_our_logout_request_and_the_upstreams_answer(env):
    got = env.consume(env.response())
    out = logout_request(
        env.svc, env.upstream(), got.name_id, got.session_ref, "https://idp.example.org/done"
    )
    assert isinstance(out, Redirect)
    query = parse_qs(urlsplit(out.location).query)
    req = env.idp.server.parse_logout_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
    assert req.message.name_id.text == "ada-persistent-1"
    assert [s.text for s in req.message.session_index] == [got.session_ref]
    answer = env.idp.server.create_logout_response(
        req.message, [BINDING_HTTP_POST], sign=True, sign_alg=SHA256[0], digest_alg=SHA256[1]
    )
    xml = str(answer)
    assert f'Destination="{env.ends.sls}"' in xml
    received = Received(BINDING_HTTP_POST, b64(xml), query["RelayState"][0])
    assert logout_response(env.svc, env.upstream(), received) == "https://idp.example.org/done"
    with pytest.raises(bs.Refused, match="no sign-out started here"):
        logout_response(env.svc, env.upstream(), received)
