"""The checks on an inbound SAML request (idp.saml.validate, idp.saml.inbound), each at its
edge: the signature an SP must send, the Destination a signed request must carry, the issuer,
the IssueInstant window, the replay cache and its lifetime, the ACS URL / index / binding the
response may go to, the NameID format and the authentication context asked for, RelayState's
length. A refused request raises ``BadMessage`` (or ``StatusError`` once the ACS is trusted)
with its exact text and leaves the store as it was.

The engine runs without Flask on a frozen clock (the mutation tier's ``saml_inbound`` target,
tests/mutation_kit.py, runs this file once per mutant: the services are built once per module
from a copied instance)."""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from saml_support import pysaml2_sp
from sqlalchemy import select

from idp.clock import FrozenClock
from idp.saml.inbound import BadMessage, inspect, utc_instant
from idp.saml.results import Received
from idp.saml.validate import (
    ST_INVALID_NAMEID,
    ST_NO_AUTHN_CONTEXT,
    StatusError,
    check_authn_request,
    check_destination,
    check_signature,
    check_time,
    error_relay_state,
    read_message,
    remember_id,
)

ISSUER = "https://idp.example.org"
SSO = f"{ISSUER}/saml/sso"
SIGNED_SP = "https://sp.example.org/metadata"
SIGNED_ACS = "https://sp.example.org/acs"
LAX_SP = "https://lax.example.org/metadata"
NO_POST_SP = "https://nopost.example.org/metadata"
HTTP_SP = "https://http.example.org/metadata"
LAB_SP = "https://lab.example.org/metadata"
SHA1_SP = "https://old.example.org/metadata"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
POST = BINDING_HTTP_POST
REDIRECT = BINDING_HTTP_REDIRECT
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


class SetClock(FrozenClock):
    def set(self, at: float) -> None:
        self._t = at


def _sp_metadata(entity_id: str, services: list[tuple[str, str, int, bool]]) -> str:
    """An SP's metadata with these (binding, location, index, isDefault) ACS endpoints."""
    acs = "".join(
        f'<md:AssertionConsumerService Binding="{b}" Location="{loc}" index="{i}"'
        + (' isDefault="true"' if default else "")
        + "/>"
        for b, loc, i, default in services
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{entity_id}">'
        f'<md:SPSSODescriptor protocolSupportEnumeration="{SAMLP}" AuthnRequestsSigned="false">'
        f"{acs}</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def _populate(svc, folder: Path) -> tuple[Any, Any]:
    """Register the SPs in a new instance; the two pysaml2 SPs (their keys under ``folder``)."""
    from idp.saml.metadata import metadata
    from idp.saml.registry import SpRegistry

    (folder / "signed").mkdir()
    client, signed_md = pysaml2_sp(folder / "signed", metadata(svc).body, sign_requests=True)
    (folder / "sha1").mkdir()
    old_client, old_md = pysaml2_sp(
        folder / "sha1", metadata(svc).body, entity_id=SHA1_SP, sign_requests=True
    )
    lax = [
        (REDIRECT, "https://lax.example.org/acs0", 0, False),
        (POST, "https://lax.example.org/acs1", 1, False),
        (POST, "https://lax.example.org/acs2", 2, True),
    ]
    with svc.sessions.begin() as db:
        reg = SpRegistry(db)
        reg.add(signed_md, replace=True)
        reg.add(old_md, settings={"allow_sha1": True}, replace=True)
        let_off = {"want_authn_requests_signed": False}
        reg.add(_sp_metadata(LAX_SP, lax), settings=let_off, replace=True)
        reg.add(
            _sp_metadata(NO_POST_SP, [(REDIRECT, "https://nopost.example.org/acs", 0, False)]),
            settings=let_off,
            replace=True,
        )
        reg.add(
            _sp_metadata(HTTP_SP, [(POST, "http://http.example.org/acs", 0, True)]),
            settings={**let_off, "allow_http": True},
            replace=True,
        )
        reg.add(
            _sp_metadata(LAB_SP, [(POST, "http://lab.example.org/acs", 0, True)]),
            settings={**let_off, "allow_http": True},
            replace=True,
        )
        # Then allow_http went off in the row itself (not through the registry's checks).
        row = reg.get(HTTP_SP)
        row.settings = {**row.settings, "allow_http": False}
    return client, old_client


# A mutation run (IDP_TEST_INSTANCE_TEMPLATE) builds this module's services again for every
# mutant, in a child forked from the process that made them first: that process keeps the
# populated instance and the pysaml2 SPs here, and the children copy the instance.
_MADE: dict[str, Any] = {}


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Services on a frozen clock; a pysaml2 SP that must sign (SIGNED_SP), one let off SHA-1
    (SHA1_SP), one let off signing with three ACS endpoints (LAX_SP: index 0 HTTP-Redirect, 1
    POST, 2 POST and the default), one with no POST ACS, a lab SP with allow_http and an http
    ACS, and one whose http ACS was imported while allow_http was on."""
    from instance_template import initialised
    from support import base_overrides

    from idp.saml.engine import saml_idp
    from idp.services import build_services
    from idp.settings import load_settings

    instance = tmp_path_factory.mktemp("saml-inbound") / "instance"
    instance.mkdir()
    clock = SetClock()
    kept = _MADE.get("instance")
    if kept is not None and kept.is_dir():
        shutil.copytree(kept, instance, dirs_exist_ok=True)
        svc = build_services(load_settings(base_overrides(instance, issuer=ISSUER)), clock)
        client, old_client = _MADE["clients"]
    else:
        overrides = initialised(instance, issuer=ISSUER)
        keep = os.environ.get("IDP_TEST_INSTANCE_TEMPLATE") and "database_url" not in overrides
        home = Path(tempfile.mkdtemp(prefix="idp-saml-inbound-")) if keep else instance.parent
        svc = build_services(load_settings(overrides), clock)
        client, old_client = _populate(svc, home)
        if keep:
            svc.engine.dispose()
            shutil.copytree(instance, home / "instance")
            atexit.register(_remove, home, os.getpid())
            _MADE.update(instance=home / "instance", clients=(client, old_client))
    yield SimpleNamespace(
        svc=svc, idp=saml_idp(svc), client=client, old_client=old_client, clock=clock
    )
    svc.engine.dispose()


@pytest.fixture
def fresh(env):
    """The clock at the real time (pysaml2 stamps the requests it signs with it); a test may
    move it on."""
    env.clock.set(float(int(time.time())))
    return env


def _instant(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_IDS = iter(range(10**6))


def request_xml(
    env,
    *,
    rid: str | None = None,
    issuer: str = LAX_SP,
    instant: str | None = None,
    destination: str | None = SSO,
    attrs: str = "",
    body: str = "",
) -> bytes:
    rid = rid or f"_r{next(_IDS)}"
    dest = "" if destination is None else f" Destination='{destination}'"
    return (
        f"<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='{rid}' "
        f"Version='2.0' IssueInstant='{instant or _instant(env.clock.now())}'{dest}{attrs}>"
        f"<saml:Issuer>{issuer}</saml:Issuer>{body}</samlp:AuthnRequest>"
    ).encode()


def keys(env) -> tuple[str, ...]:
    from idp.storage.models import KVEntry

    with env.svc.sessions() as db:
        return tuple(sorted(db.scalars(select(KVEntry.key)).all()))


def check(env, xml: bytes, binding: str = POST, query: bytes = b""):
    return check_authn_request(env.idp, binding, inspect(xml), query)


def refused(env, xml: bytes, text: str, binding: str = POST, query: bytes = b"") -> None:
    """The request is refused with exactly ``text`` and nothing is stored."""
    before = keys(env)
    with pytest.raises(BadMessage) as info:
        check(env, xml, binding, query)
    assert str(info.value) == text
    assert keys(env) == before


def signed_post(
    env, *, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256, client=None, **kwargs
) -> bytes:
    _, xml = (client or env.client).create_authn_request(
        destination=SSO, sign=True, sign_alg=sign_alg, digest_alg=digest_alg, **kwargs
    )
    return str(xml).encode()


def signed_redirect(env, sigalg=SIG_RSA_SHA256, client=None) -> tuple[bytes, bytes]:
    """(XML, raw query string) of an AuthnRequest signed in the HTTP-Redirect query."""
    _, info = (client or env.client).prepare_for_authenticate(
        entityid=f"{ISSUER}/saml/metadata",
        binding=REDIRECT,
        sigalg=sigalg,
        digest_alg=DIGEST_SHA256,
    )
    query = urlsplit(dict(info["headers"])["Location"]).query
    encoded = parse_qs(query)["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(encoded), -15)
    return xml, query.encode()


# --- the happy paths, and the replay cache ------------------------------------------------------


def test_an_unsigned_request_from_a_let_off_sp_is_accepted_once(fresh):
    xml = request_xml(fresh, rid="_once")
    checked = check(fresh, xml)
    assert (checked.sp.entity_id, checked.request_id) == (LAX_SP, "_once")
    assert checked.acs_url == "https://lax.example.org/acs2"  # the default POST ACS
    assert (checked.force_authn, checked.is_passive) == (False, False)
    assert (checked.name_id_format, checked.acr_classes, checked.comparison) == (None, [], None)
    refused(fresh, xml, "this request was already used (replay)")


def test_a_signed_post_request_is_accepted(fresh):
    checked = check(fresh, signed_post(fresh, assertion_consumer_service_url=SIGNED_ACS))
    assert (checked.sp.entity_id, checked.acs_url) == (SIGNED_SP, SIGNED_ACS)


def test_a_request_signed_in_the_redirect_query_is_accepted(fresh):
    xml, query = signed_redirect(fresh)
    checked = check(fresh, xml, REDIRECT, query)
    assert (checked.sp.entity_id, checked.acs_url) == (SIGNED_SP, SIGNED_ACS)


def test_a_request_refused_after_the_acs_is_trusted_stores_no_replay_entry(fresh):
    xml = request_xml(fresh, body="<samlp:NameIDPolicy Format='urn:x:unknown'/>")
    before = keys(fresh)
    with pytest.raises(StatusError):
        check(fresh, xml)
    assert keys(fresh) == before
    # ... so the same request, once its problem is gone, is not a replay: the ID is free.


def test_the_replay_cache_holds_an_id_as_long_as_the_request_could_be_accepted(fresh):
    """[saml] clock_skew 120, request_max_age 300: a request issued 120 s ahead is accepted
    until 420 s after now, so its ID is remembered for 540 s (max age + twice the skew), and
    no longer."""
    cfg = fresh.idp.cfg
    assert (cfg.clock_skew, cfg.request_max_age) == (120, 300)
    msg = SimpleNamespace(id="_window", issuer=LAX_SP)
    remember_id(fresh.idp, msg, "authn")
    fresh.clock.advance(539)
    with pytest.raises(BadMessage, match=r"^this request was already used \(replay\)$"):
        remember_id(fresh.idp, msg, "authn")
    fresh.clock.advance(2)
    remember_id(fresh.idp, msg, "authn")  # expired: the entry is gone


def test_the_replay_cache_keys_an_id_by_its_issuer_and_kind(fresh):
    remember_id(fresh.idp, SimpleNamespace(id="_same", issuer=LAX_SP), "authn")
    remember_id(fresh.idp, SimpleNamespace(id="_same", issuer=SIGNED_SP), "authn")
    remember_id(fresh.idp, SimpleNamespace(id="_same", issuer=LAX_SP), "logout")
    with pytest.raises(BadMessage, match="replay"):
        remember_id(fresh.idp, SimpleNamespace(id="_same", issuer=SIGNED_SP), "authn")


@pytest.mark.parametrize(
    ("rid", "ok"), [("", False), (None, False), ("i" * 256, True), ("i" * 257, False)]
)
def test_a_request_id_must_be_present_and_at_most_256_characters(fresh, rid, ok):
    msg = SimpleNamespace(id=rid, issuer=LAX_SP)
    if ok:
        remember_id(fresh.idp, msg, "authn")
    else:
        before = keys(fresh)
        with pytest.raises(BadMessage, match=r"^the request has no usable ID$"):
            remember_id(fresh.idp, msg, "authn")
        assert keys(fresh) == before


# --- signature required --------------------------------------------------------------------------


def test_an_unsigned_request_from_an_sp_that_must_sign_is_refused(fresh):
    xml = request_xml(fresh, issuer=SIGNED_SP)
    refused(fresh, xml, "this service provider must sign its requests, and this one is not signed")


def test_a_tampered_redirect_query_signature_is_refused(fresh):
    xml, query = signed_redirect(fresh)
    tampered = query.replace(b"Signature=", b"Signature=AAAA")
    before = keys(fresh)
    with pytest.raises(BadMessage, match=r"^the request signature is not valid: "):
        check(fresh, xml, REDIRECT, tampered)
    assert keys(fresh) == before


def test_a_tampered_xml_signature_is_refused(fresh):
    xml = signed_post(fresh, assertion_consumer_service_url=SIGNED_ACS)
    evil = xml.replace(SIGNED_ACS.encode(), b"https://sp.example.org/acs2")
    before = keys(fresh)
    with pytest.raises(BadMessage, match=r"^the request is not valid \(IncorrectlySigned\)$"):
        check(fresh, evil)
    assert keys(fresh) == before


def test_a_sha1_signature_is_refused_before_verification(fresh):
    xml = signed_post(fresh, sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1)
    refused(
        fresh,
        xml,
        f"the request signature is not valid: signature algorithm {SIG_RSA_SHA1} is not accepted",
    )


def test_sha1_is_accepted_from_an_sp_let_off(fresh):
    xml = signed_post(fresh, sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1, client=fresh.old_client)
    assert check(fresh, xml).sp.entity_id == SHA1_SP
    xml, query = signed_redirect(fresh, SIG_RSA_SHA1, fresh.old_client)
    assert check(fresh, xml, REDIRECT, query).sp.entity_id == SHA1_SP


def test_a_sha1_query_signature_is_refused_from_an_sp_not_let_off(fresh):
    xml, query = signed_redirect(fresh, SIG_RSA_SHA1)
    before = keys(fresh)
    with pytest.raises(BadMessage, match=r"^the request signature is not valid: .*sha1"):
        check(fresh, xml, REDIRECT, query)
    assert keys(fresh) == before


def test_check_signature_answers_whether_the_message_was_signed(fresh):
    idp = fresh.idp
    lax, must = idp.sp(LAX_SP), idp.sp(SIGNED_SP)
    assert check_signature(idp, lax, POST, b"", "SAMLRequest", False, False) is False
    assert check_signature(idp, must, POST, b"", "SAMLRequest", True, True) is True
    _, query = signed_redirect(fresh)
    assert check_signature(idp, must, REDIRECT, query, "SAMLRequest", False, True) is True
    # A query signature counts only on the HTTP-Redirect binding.
    with pytest.raises(BadMessage, match="must sign its requests"):
        check_signature(idp, must, POST, query, "SAMLRequest", False, True)


# --- Destination -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "signed", "refusal"),
    [
        (None, False, None),
        ("", False, None),
        (None, True, "no Destination"),
        ("   ", True, "no Destination"),
        (SSO, True, None),
        (f"  {SSO} ", True, None),
        (f"{ISSUER}/saml/slo", False, "another destination"),
        (f"{SSO}/", True, "another destination"),
    ],
)
def test_destination_rules(destination, signed, refusal):
    if refusal is None:
        check_destination(destination, signed, SSO)
        return
    with pytest.raises(BadMessage) as info:
        check_destination(destination, signed, SSO)
    if refusal == "no Destination":
        assert str(info.value) == (
            "the request is signed but has no Destination, which a signed SAML message "
            "must carry (saml-bindings 3.4.5.2, 3.5.5.2)"
        )
    else:
        assert str(info.value) == "the request is addressed to another destination"


def test_an_unsigned_request_to_another_destination_is_refused(fresh):
    xml = request_xml(fresh, destination="https://other.example/saml/sso")
    refused(fresh, xml, "the request is addressed to another destination")


# --- issuer and message type -------------------------------------------------------------------


def test_an_unknown_issuer_is_refused(fresh):
    xml = request_xml(fresh, issuer="https://unknown.example/sp")
    refused(fresh, xml, "the request comes from an unknown service provider")


def test_another_message_type_with_a_signature_is_refused_before_verification(fresh):
    xml = (
        f"<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_lo' Version='2.0' "
        f"IssueInstant='{_instant(fresh.clock.now())}'><saml:Issuer>{SIGNED_SP}</saml:Issuer>"
        f"<ds:Signature xmlns:ds='{DS}'/><saml:NameID>x</saml:NameID></samlp:LogoutRequest>"
    ).encode()
    refused(fresh, xml, "the message is not an AuthnRequest")


def test_a_logout_request_is_parsed_as_one(fresh):
    from saml2.samlp import LogoutRequest

    from idp.saml.validate import parse_from_sp

    xml = (
        f"<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_lo2' Version='2.0' "
        f"IssueInstant='{_instant(fresh.clock.now())}'><saml:Issuer>{LAX_SP}</saml:Issuer>"
        "<saml:NameID>someone</saml:NameID></samlp:LogoutRequest>"
    ).encode()
    sp, message = parse_from_sp(
        fresh.idp, inspect(xml), "LogoutRequest", "a LogoutRequest", "the logout request"
    )
    assert sp.entity_id == LAX_SP
    assert isinstance(message, LogoutRequest) and message.name_id.text == "someone"
    with pytest.raises(BadMessage, match=r"^the message is not an AuthnRequest$"):
        parse_from_sp(fresh.idp, inspect(xml), "AuthnRequest", "an AuthnRequest", "the request")


def test_a_request_whose_readers_disagree_on_the_issuer_is_refused(fresh):
    """Two Issuers, and a ds:Signature somewhere so pysaml2 reads it: the gate takes the first
    (a let-off SP), pysaml2 the last (one that must sign). Neither is trusted."""
    sig = f"<samlp:Extensions><ds:Signature xmlns:ds='{DS}'/></samlp:Extensions>"
    xml = request_xml(fresh, body=f"<saml:Issuer>{SIGNED_SP}</saml:Issuer>{sig}")
    refused(fresh, xml, "the request is not consistent")


def test_another_message_type_is_refused(fresh):
    xml = (
        f"<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_lo' Version='2.0' "
        f"IssueInstant='{_instant(fresh.clock.now())}'><saml:Issuer>{LAX_SP}</saml:Issuer>"
        "<saml:NameID>x</saml:NameID></samlp:LogoutRequest>"
    ).encode()
    refused(fresh, xml, "the message is not an AuthnRequest")


# --- IssueInstant --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "refusal"),
    [
        (120, None),
        (121, "the request is issued in the future (check the clocks)"),
        (-420, None),
        (-421, "the request has expired"),
    ],
)
def test_issue_instant_window(fresh, offset, refusal):
    xml = request_xml(fresh, instant=_instant(fresh.clock.now() + offset))
    if refusal is None:
        assert check(fresh, xml).sp.entity_id == LAX_SP
    else:
        refused(fresh, xml, refusal)


@pytest.mark.parametrize(
    ("instant", "refusal"),
    [
        (None, "the request has no IssueInstant"),
        ("", "the request has no IssueInstant"),
        ("yesterday", "the request's IssueInstant is not a valid time"),
        ("2027-01-15T08:00:00+01:00", "the request's IssueInstant is not a valid time"),
    ],
)
def test_issue_instant_must_be_a_time(fresh, instant, refusal):
    msg = SimpleNamespace(issue_instant=instant)
    with pytest.raises(BadMessage) as info:
        check_time(fresh.idp, msg)
    assert str(info.value) == refusal


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("2027-01-15T08:00:00Z", True),
        ("2027-01-15T08:00:00.750Z", True),  # fractions of a second are dropped
        ("2027-01-15T08:00:00", True),  # like pysaml2: UTC without the "Z"
        ("2027-13-15T08:00:00Z", False),
        ("2027-02-30T08:00:00Z", False),
        ("2027-01-15T08:00:00+00:00", False),  # SAML times carry no offset
        ("2027-01-15 08:00:00Z", False),
        ("x2027-01-15T08:00:00Z", False),
        (None, False),
    ],
)
def test_saml_times_read_as_utc(value, read, monkeypatch):
    """Whatever the server's own time zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert utc_instant(value) == (1800000000.0 if read else None)  # 2027-01-15T08:00:00Z
    finally:
        monkeypatch.undo()
        time.tzset()


# --- the ACS the response goes to --------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "acs"),
    [
        ("", "https://lax.example.org/acs2"),
        (
            " AssertionConsumerServiceURL='https://lax.example.org/acs1'",
            "https://lax.example.org/acs1",
        ),
        (
            " AssertionConsumerServiceURL=' https://lax.example.org/acs1 '",
            "https://lax.example.org/acs1",
        ),
        (" AssertionConsumerServiceIndex='1'", "https://lax.example.org/acs1"),
        (" AssertionConsumerServiceIndex='2'", "https://lax.example.org/acs2"),
        (f" ProtocolBinding='{POST}'", "https://lax.example.org/acs2"),
    ],
)
def test_the_acs_is_the_one_asked_for_or_the_default(fresh, attrs, acs):
    assert check(fresh, request_xml(fresh, attrs=attrs)).acs_url == acs


@pytest.mark.parametrize(
    ("attrs", "refusal"),
    [
        (
            " AssertionConsumerServiceURL='https://evil.example/acs'",
            "the AssertionConsumerServiceURL is not in the service provider's metadata",
        ),
        # registered, but for HTTP-Redirect: responses go by POST only
        (
            " AssertionConsumerServiceURL='https://lax.example.org/acs0'",
            "the AssertionConsumerServiceURL is not in the service provider's metadata",
        ),
        (
            " AssertionConsumerServiceIndex='0'",
            "the AssertionConsumerServiceIndex is not in the service provider's metadata",
        ),
        (
            " AssertionConsumerServiceIndex='7'",
            "the AssertionConsumerServiceIndex is not in the service provider's metadata",
        ),
        (f" ProtocolBinding='{REDIRECT}'", "only the HTTP-POST binding is offered for responses"),
        (
            f" ProtocolBinding='{REDIRECT}' AssertionConsumerServiceURL='https://lax.example.org/acs1'",
            "only the HTTP-POST binding is offered for responses",
        ),
    ],
)
def test_an_acs_not_offered_is_refused(fresh, attrs, refusal):
    refused(fresh, request_xml(fresh, attrs=attrs), refusal)


def test_an_sp_without_a_post_acs_gets_nothing(fresh):
    xml = request_xml(fresh, issuer=NO_POST_SP)
    refused(fresh, xml, "the service provider has no HTTP-POST AssertionConsumerService")


def test_an_http_acs_is_used_while_the_sp_has_allow_http(fresh):
    assert check(fresh, request_xml(fresh, issuer=LAB_SP)).acs_url == "http://lab.example.org/acs"


def test_an_acs_that_became_unacceptable_is_not_used(fresh):
    """Imported while the SP had allow_http; allow_http is off now: the http ACS is refused
    when a request would send a response to it."""
    xml = request_xml(fresh, issuer=HTTP_SP)
    refused(
        fresh,
        xml,
        "this application's AssertionConsumerService address is not acceptable (it is http: "
        "only https is accepted (allow_http lets a lab SP use http)); nothing was sent to it",
    )


# --- NameID format and authentication context --------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "short"),
    [(PERSISTENT, "persistent"), (f" {PERSISTENT} ", "persistent"), (UNSPECIFIED, None)],
)
def test_the_name_id_format_asked_for(fresh, fmt, short):
    xml = request_xml(fresh, body=f"<samlp:NameIDPolicy Format='{fmt}'/>")
    assert check(fresh, xml).name_id_format == short


def test_a_name_id_format_not_offered_is_a_status_at_the_trusted_acs(fresh):
    xml = request_xml(fresh, body="<samlp:NameIDPolicy Format='urn:x:unknown'/>")
    with pytest.raises(StatusError) as info:
        check(fresh, xml)
    assert info.value.status == ST_INVALID_NAMEID
    assert str(info.value) == "the requested NameID format is not offered"
    assert info.value.checked.acs_url == "https://lax.example.org/acs2"


def _context(comparison: str, *classes: str) -> str:
    refs = "".join(f"<saml:AuthnContextClassRef>{c}</saml:AuthnContextClassRef>" for c in classes)
    return (
        f"<samlp:RequestedAuthnContext Comparison='{comparison}'>{refs}"
        "</samlp:RequestedAuthnContext>"
    )


def test_an_authentication_context_asked_for_is_kept(fresh):
    ppt = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    checked = check(fresh, request_xml(fresh, body=_context("minimum", ppt)))
    assert (checked.acr_classes, checked.comparison) == ([ppt], "minimum")


@pytest.mark.parametrize(
    ("comparison", "wanted", "message"),
    [
        (
            "exact",
            "urn:x:no-such-class",
            "none of the requested authentication contexts is offered",
        ),
        (
            "better",
            "https://refeds.org/profile/mfa",
            "no authentication context better than the one requested",
        ),
    ],
)
def test_an_authentication_context_no_level_meets_is_a_status(fresh, comparison, wanted, message):
    xml = request_xml(fresh, body=_context(comparison, wanted))
    before = keys(fresh)
    with pytest.raises(StatusError) as info:
        check(fresh, xml)
    assert info.value.status == ST_NO_AUTHN_CONTEXT
    assert str(info.value) == message
    assert (info.value.checked.acr_classes, info.value.checked.comparison) == ([wanted], comparison)
    assert keys(fresh) == before


def test_force_authn_and_is_passive_are_read(fresh):
    checked = check(fresh, request_xml(fresh, attrs=" ForceAuthn='true' IsPassive='1'"))
    assert (checked.force_authn, checked.is_passive) == (True, True)


# --- the message as the HTTP request carried it ------------------------------------------------


def _deflate(xml: bytes) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml) + c.flush()).decode()


def test_read_message_decodes_each_binding_and_bounds_relay_state():
    xml = b"<x/>"
    post = Received(POST, base64.b64encode(xml).decode(), "r" * 1024)
    assert read_message(post, "SAMLRequest") == (POST, "r" * 1024, xml)
    redirect = Received(REDIRECT, _deflate(xml), None)
    assert read_message(redirect, "SAMLRequest") == (REDIRECT, None, xml)
    with pytest.raises(BadMessage, match=r"^RelayState is too long$"):
        read_message(Received(POST, base64.b64encode(xml).decode(), "r" * 1025), "SAMLRequest")
    for empty in (None, ""):
        with pytest.raises(BadMessage, match=r"^no SAMLRequest in the request$"):
            read_message(Received(POST, empty, None), "SAMLRequest")


@pytest.mark.parametrize(
    ("relay", "back"), [("r" * 1024, "r" * 1024), ("r" * 1025, None), ("", None), (None, None)]
)
def test_an_error_status_carries_relay_state_back_only_when_it_is_acceptable(relay, back):
    received = Received(POST, "x", relay, b"", relay)
    assert error_relay_state(received) == back


# --- the gate every message passes first (idp.saml.inbound) ------------------------------------


def _root(inner: str = "", head: str = "") -> bytes:
    return (
        f"{head}<samlp:AuthnRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}' ID='_g' "
        f"Version='2.0' IssueInstant='2027-01-15T08:00:00Z'>{inner}</samlp:AuthnRequest>"
    ).encode()


def test_inspect_reads_what_routing_needs():
    msg = inspect(_root(f"<saml:Issuer>  {LAX_SP}\n</saml:Issuer>"))
    assert (msg.root_tag, msg.issuer, msg.id, msg.issue_instant) == (
        "AuthnRequest",
        LAX_SP,
        "_g",
        "2027-01-15T08:00:00Z",
    )
    assert msg.has_signature is False and msg.root is not None
    assert inspect(_root("<saml:Issuer/>")).issuer is None
    assert inspect(_root()).issuer is None


def test_inspect_sees_a_signature_anywhere():
    sig = f"<ds:Signature xmlns:ds='{DS}'/>"
    assert inspect(_root(sig)).has_signature is True
    assert inspect(_root(f"<samlp:Extensions>{sig}</samlp:Extensions>")).has_signature is True


@pytest.mark.parametrize(
    ("xml", "refusal"),
    [
        (_root(head="<!DOCTYPE r>"), "the SAML message contains a DTD, which is not allowed"),
        (_root(head="<!doctype r>"), "the SAML message contains a DTD, which is not allowed"),
        (b"<x/><!ENTITY e 'x'>", "the SAML message contains a DTD, which is not allowed"),
        (b"<samlp:AuthnRequest", "the SAML message is not well-formed XML"),
        (b"<AuthnRequest/>", "the SAML message is not a SAML protocol message"),
        (
            f"<x:AuthnRequest xmlns:x='{SAML}'/>".encode(),
            "the SAML message is not a SAML protocol message",
        ),
        (_root("<?evil x?>"), "the SAML message contains processing instructions or entities"),
        (
            _root(f"<saml:Issuer>{LAX_SP}<!-- x --></saml:Issuer>"),
            "the Issuer of the SAML message has comments or elements in it",
        ),
        (
            _root("<saml:Subject><saml:NameID>admin<!-- x -->@evil</saml:NameID></saml:Subject>"),
            "the NameID of the SAML message has comments or elements in it",
        ),
        (
            _root("<saml:Subject><saml:NameID><b/></saml:NameID></saml:Subject>"),
            "the NameID of the SAML message has comments or elements in it",
        ),
    ],
)
def test_inspect_refuses_unsafe_or_foreign_xml(xml, refusal):
    with pytest.raises(BadMessage) as info:
        inspect(xml)
    assert str(info.value) == refusal


SHA256_SIG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"


def _signature(method: str, digest: str) -> bytes:
    return _root(
        f"<ds:Signature xmlns:ds='{DS}'><ds:SignedInfo><ds:SignatureMethod Algorithm='{method}'/>"
        f"<ds:Reference><ds:DigestMethod Algorithm='{digest}'/></ds:Reference></ds:SignedInfo>"
        "</ds:Signature>"
    )


@pytest.mark.parametrize(
    ("method", "digest", "allow_sha1", "refusal"),
    [
        (SHA256_SIG, SHA256_DIGEST, False, None),
        (SIG_RSA_SHA1, SHA256_DIGEST, True, None),
        (SHA256_SIG, DIGEST_SHA1, True, None),
        (SIG_RSA_SHA1, SHA256_DIGEST, False, f"signature algorithm {SIG_RSA_SHA1}"),
        (SHA256_SIG, DIGEST_SHA1, False, f"digest algorithm {DIGEST_SHA1}"),
        ("urn:x:none", SHA256_DIGEST, True, "signature algorithm urn:x:none"),
        (SHA256_SIG, "urn:x:none", True, "digest algorithm urn:x:none"),
    ],
)
def test_signature_algorithms(method, digest, allow_sha1, refusal):
    from idp.saml.inbound import check_signature_algorithms

    root = inspect(_signature(method, digest)).root
    if refusal is None:
        check_signature_algorithms(root, allow_sha1=allow_sha1)
        return
    with pytest.raises(BadMessage) as info:
        check_signature_algorithms(root, allow_sha1=allow_sha1, what="the logout request")
    assert str(info.value) == f"the logout request is not valid: {refusal} is not accepted"


def test_base64_is_bounded_and_strict():
    from idp.saml.inbound import MAX_ENCODED, decode_post

    largest = base64.b64encode(b"a" * (MAX_ENCODED // 4 * 3)).decode()
    assert len(largest) == MAX_ENCODED
    assert decode_post(largest) == b"a" * (MAX_ENCODED // 4 * 3)
    assert decode_post(" PHgv\nPg== ") == b"<x/>"  # line breaks and spaces are dropped
    with pytest.raises(BadMessage, match=r"^the SAML message is too large$"):
        decode_post(largest + "A")
    for bad in ("PHgvPg=", "PHgv*g==", "PHgvPg==PHgvPg=="):
        with pytest.raises(BadMessage, match=r"^the SAML message is not valid base64$"):
            decode_post(bad)


def test_deflate_is_bounded():
    from idp.saml.inbound import MAX_XML, decode_redirect

    assert decode_redirect(_deflate(b"z" * MAX_XML)) == b"z" * MAX_XML
    with pytest.raises(BadMessage, match=r"^the SAML message is too large$"):
        decode_redirect(_deflate(b"z" * (MAX_XML + 1)))
    full = base64.b64decode(_deflate(b"<x>" + b"y" * 100 + b"</x>"))
    with pytest.raises(BadMessage, match=r"^the SAML message is truncated$"):
        decode_redirect(base64.b64encode(full[:-2]).decode())
    with pytest.raises(BadMessage, match=r"^the SAML message is not DEFLATE-compressed$"):
        decode_redirect(base64.b64encode(b"\xff\xff not deflate").decode())


def test_a_deflate_bomb_stops_at_the_limit():
    """A message within the size allowed (64 KiB of base64) that inflates to 40 MiB of zeros: the
    reader stops after MAX_XML and never holds the rest."""
    import tracemalloc

    from idp.saml.inbound import MAX_ENCODED, MAX_XML, decode_redirect

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = c.compress(b"\0" * (40 * 1024 * 1024)) + c.flush()
    bomb = base64.b64encode(raw).decode()
    assert len(bomb) <= MAX_ENCODED
    tracemalloc.start()
    try:
        with pytest.raises(BadMessage, match=r"^the SAML message is too large$"):
            decode_redirect(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_XML, peak


def test_sha1_is_refused_unless_the_caller_lets_it_off():
    from idp.saml.inbound import check_signature_algorithms

    root = inspect(_signature(SIG_RSA_SHA1, SHA256_DIGEST)).root
    with pytest.raises(BadMessage) as info:
        check_signature_algorithms(root)
    assert str(info.value) == (
        f"the request signature is not valid: signature algorithm {SIG_RSA_SHA1} is not accepted"
    )


def test_only_the_algorithms_of_a_signature_are_judged():
    """A ds:DigestMethod outside any ds:Signature signs nothing: no reason to refuse."""
    from idp.saml.inbound import check_signature_algorithms

    stray = f"<samlp:Extensions><ds:DigestMethod xmlns:ds='{DS}' Algorithm='{DIGEST_SHA1}'/>"
    root = inspect(_root(stray + "</samlp:Extensions>")).root
    check_signature_algorithms(root)


def test_a_signed_request_without_a_destination_is_refused(fresh):
    """Signed in the HTTP-Redirect query, no Destination in the XML (saml-bindings 3.4.5.2)."""
    from saml2.pack import http_redirect_message

    xml = request_xml(fresh, issuer=SIGNED_SP, destination=None)
    info = http_redirect_message(
        xml.decode(),
        SSO,
        None,
        "SAMLRequest",
        sigalg=SIG_RSA_SHA256,
        sign=True,
        backend=fresh.client.sec.sec_backend,
    )
    query = urlsplit(dict(info["headers"])["Location"]).query.encode()
    refused(
        fresh,
        xml,
        "the request is signed but has no Destination, which a signed SAML message must carry "
        "(saml-bindings 3.4.5.2, 3.5.5.2)",
        REDIRECT,
        query,
    )


@pytest.mark.parametrize("doctype", ["<!DOCTYPE r [<!ENTITY x 'y'>]>", "<!DOCTYPE r>"])
def test_a_dtd_in_utf16_is_refused(doctype):
    """The bytes hold no "<!DOCTYPE" in UTF-16: the parsed document's own DTD is checked too."""
    xml = ("<?xml version='1.0' encoding='UTF-16'?>" + doctype + _root().decode()).encode("utf-16")
    assert b"<!DOCTYPE" not in xml.upper()
    with pytest.raises(BadMessage) as info:
        inspect(xml)
    assert str(info.value) == "the SAML message contains a DTD, which is not allowed"
