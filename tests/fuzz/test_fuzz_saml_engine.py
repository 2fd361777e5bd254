"""The SAML engine (no Flask) on generated hostile messages from registered SPs.

- Signature wrapping (XSW): a pysaml2 SP's signed AuthnRequest, re-shaped the ways wrapping
  attacks do (an evil request around the signed one, the signed one inside Extensions or the
  Signature's Object, the Signature moved to the evil root, duplicate IDs, an attribute changed
  under the signature): refused with ``BadMessage``, and nothing stored; or, where the
  signature still covers the root (content added inside ``ds:Signature`` is outside an
  enveloped signature's digest), every field the IdP uses is the signed one.
- LogoutRequest (``idp.saml.logout.slo``): generated requests, both bindings, from an SP that
  must sign, an SP let off, unknown issuers: refused (400, one line, the store unchanged), or
  answered with a LogoutResponse to the SP; pysaml2's own parse refusing means we refuse too.
"""

from __future__ import annotations

import base64
import copy
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.validate import valid_instance
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_fuzz_kit import DS, SAML, SAMLP, deflate, hostile_documents
from saml_support import pysaml2_sp
from sqlalchemy import select
from support import base_overrides, init_database

from idp.saml.inbound import BadMessage, inspect
from idp.saml.validate import StatusError, check_authn_request

ISSUER = "https://idp.example.org"
SIGNED_SP = "https://sp.example.org/metadata"
LAX_SP = "https://lax.example.org/metadata"
ACS = "https://sp.example.org/acs"
EVIL_ACS = "https://evil.example/acs"

_BOUNDED = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Services without Flask, a pysaml2 SP that signs (and must), and one let off signing."""
    from idp.saml.engine import saml_idp
    from idp.saml.metadata import metadata
    from idp.saml.registry import SpRegistry
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.sso.sessions import SessionManager

    folder = tmp_path_factory.mktemp("saml-fuzz")
    (folder / "instance").mkdir()
    overrides = base_overrides(folder / "instance", issuer=ISSUER)
    init_database(overrides)
    svc = build_services(load_settings(overrides))
    idp_md = metadata(svc).body
    (folder / "signed").mkdir()
    (folder / "lax").mkdir()
    client, signed_md = pysaml2_sp(folder / "signed", idp_md, sign_requests=True)
    _, lax_md = pysaml2_sp(folder / "lax", idp_md, entity_id=LAX_SP)
    with svc.sessions.begin() as db:
        SpRegistry(db).add(signed_md, replace=True)
        SpRegistry(db).add(
            lax_md,
            settings={"want_authn_requests_signed": False, "want_logout_signed": False},
            replace=True,
        )
    yield svc, saml_idp(svc), client, SessionManager(svc)
    svc.engine.dispose()


def store_keys(svc) -> tuple[str, ...]:
    from idp.storage.models import KVEntry

    with svc.sessions() as db:
        return tuple(sorted(db.scalars(select(KVEntry.key)).all()))


# --- signature wrapping ------------------------------------------------------------------------

P, A = f"{{{SAMLP}}}", f"{{{SAML}}}"
SIG = f"{{{DS}}}Signature"
SHAPES = [
    "evil-root-signed-in-extensions",  # XSW: the signed request hidden below an evil root
    "evil-root-with-moved-signature",  # the signature moved up; it still points at the ID
    "signed-root-evil-in-extensions",  # a second AuthnRequest inside the signed one
    "evil-in-signature-object",  # outside the enveloped digest: must change nothing read
    "attribute-changed",  # the ACS URL edited under the signature
    "evil-root-same-id",  # duplicate IDs: which one the signature names is ambiguous
    "signature-in-issuer",  # the signature somewhere pysaml2 does not look
]


def _signed_request(client, idp) -> bytes:
    _, xml = client.create_authn_request(
        destination=idp.sso_url,
        sign=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        assertion_consumer_service_url=ACS,
    )
    return str(xml).encode()


def _evil_from(original, same_id: bool, acs: str):
    evil = copy.deepcopy(original)
    for sig in evil.findall(SIG):
        evil.remove(sig)
    for child in list(evil):
        if child.tag != A + "Issuer":
            evil.remove(child)
    evil.set("ID", original.get("ID") if same_id else "_evil" + original.get("ID"))
    evil.set("AssertionConsumerServiceURL", acs)
    evil.set("ForceAuthn", "false")
    return evil


def _extensions(parent):
    ext = parent.find(P + "Extensions")
    if ext is None:
        ext = etree.Element(P + "Extensions")
        issuer = parent.find(A + "Issuer")
        parent.insert(0 if issuer is None else parent.index(issuer) + 1, ext)
    return ext


def wrap(signed: bytes, shape: str, same_id: bool, acs: str) -> bytes:
    original = etree.fromstring(signed)
    evil = _evil_from(original, same_id, acs)
    if shape == "evil-root-signed-in-extensions":
        _extensions(evil).append(original)
        root = evil
    elif shape == "evil-root-with-moved-signature":
        sig = original.find(SIG)
        original.remove(sig)
        evil.insert(1, sig)
        _extensions(evil).append(original)
        root = evil
    elif shape == "signed-root-evil-in-extensions":
        _extensions(original).append(evil)
        root = original
    elif shape == "evil-in-signature-object":
        obj = etree.SubElement(original.find(SIG), f"{{{DS}}}Object")
        obj.append(evil)
        root = original
    elif shape == "attribute-changed":
        original.set("AssertionConsumerServiceURL", acs)
        root = original
    elif shape == "evil-root-same-id":
        evil.set("ID", original.get("ID"))
        evil.append(original)
        root = evil
    else:  # signature-in-issuer
        sig = original.find(SIG)
        original.remove(sig)
        original.find(A + "Issuer").append(sig)
        root = original
    return etree.tostring(root)


def _enveloped_content(xml: bytes) -> bytes:
    """The root as an enveloped signature digests it: without its ds:Signature child."""
    root = etree.fromstring(xml)
    for sig in root.findall(SIG):
        root.remove(sig)
    return etree.tostring(root, method="c14n")


@settings(max_examples=50, **_BOUNDED)
@given(
    shape=st.sampled_from(SHAPES),
    same_id=st.booleans(),
    acs=st.sampled_from([EVIL_ACS, ACS, "https://sp.example.org/acs/../evil"]),
    binding=st.sampled_from([BINDING_HTTP_POST, BINDING_HTTP_REDIRECT]),
)
def test_signature_wrapping_never_yields_unsigned_fields(engine, shape, same_id, acs, binding):
    svc, idp, client, _ = engine
    signed = _signed_request(client, idp)
    want = etree.fromstring(signed)
    xml = wrap(signed, shape, same_id, acs)
    before = store_keys(svc)
    try:
        checked = check_authn_request(idp, binding, inspect(xml), b"")
    except (BadMessage, StatusError) as exc:
        event(f"refused: {exc}"[:60])
        assert store_keys(svc) == before
        return
    # Accepted: only where the root is the signed element as signed (an enveloped signature
    # leaves ds:Signature itself out of its digest), and what is used is what the SP signed.
    assert _enveloped_content(xml) == _enveloped_content(signed), shape
    assert (checked.request_id, checked.acs_url, checked.force_authn) == (
        want.get("ID"),
        ACS,
        want.get("ForceAuthn") in ("true", "1"),
    )
    assert checked.sp.entity_id == SIGNED_SP


def test_the_untouched_signed_request_is_accepted(engine):
    """The control: without wrapping, the same signed request passes (so the refusals above are
    the wrapping's doing, not a broken setup)."""
    svc, idp, client, _ = engine
    signed = _signed_request(client, idp)
    checked = check_authn_request(idp, BINDING_HTTP_POST, inspect(signed), b"")
    assert (checked.sp.entity_id, checked.acs_url) == (SIGNED_SP, ACS)


# --- LogoutRequest ------------------------------------------------------------------------------


def _instant(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


_IDS = itertools.count()


@st.composite
def logout_requests(draw) -> str:
    """A LogoutRequest; one in three is well-formed and from the SP let off signing (so the
    answering path is fuzzed too), the rest mix hostile values into every part."""
    valid = draw(st.integers(0, 2)) == 0

    def pick(good, *bad):
        return good if valid else draw(st.sampled_from([good, *bad]))

    rid = f"_lo{next(_IDS)}"  # fresh each time: a repeated ID is a replay, refused
    attrs = {
        "ID": pick(rid, "", None, "x" * 300),
        "Version": pick("2.0", "1.1", None),
        "IssueInstant": pick(_instant(0), _instant(-7200), _instant(7200), "soon", None),
        "Destination": draw(st.sampled_from([None, f"{ISSUER}/saml/slo"]))
        if valid
        else pick(None, f"{ISSUER}/saml/slo", f"{ISSUER}/saml/sso", " "),
        "NotOnOrAfter": pick(None, _instant(300), "never"),
        "Reason": pick(None, "urn:oasis:names:tc:SAML:2.0:logout:user"),
    }
    head = "".join(f' {k}="{v}"' for k, v in attrs.items() if v is not None)
    issuer = pick(
        f"<saml:Issuer>{LAX_SP}</saml:Issuer>",
        f"<saml:Issuer>{SIGNED_SP}</saml:Issuer>",
        "<saml:Issuer>https://unknown.example/sp</saml:Issuer>",
        f"<saml:Issuer>{LAX_SP}<!-- x --></saml:Issuer>",
        f"<saml:Issuer>{LAX_SP}</saml:Issuer><saml:Issuer>{SIGNED_SP}</saml:Issuer>",
        "",
    )
    name_id = pick(
        "<saml:NameID Format='urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'>"
        "p-1</saml:NameID>",
        "<saml:NameID>some<!-- c -->one</saml:NameID>",
        "<saml:NameID/>",
        "<saml:NameID> </saml:NameID>",
        "<saml:BaseID/>",
        "<saml:EncryptedID><x/></saml:EncryptedID>",
        "",
    )
    indexes = "".join(
        f"<samlp:SessionIndex>{i}</samlp:SessionIndex>"
        for i in draw(st.lists(st.sampled_from(["s1", "", " s2 "]), max_size=2))
    )
    hostile = [
        "<samlp:Extensions><x:y xmlns:x='urn:x'/></samlp:Extensions>",
        f"<ds:Signature xmlns:ds='{DS}'/>",
        "<samlp:LogoutRequest/>",
        "<?pi x?>",
        "&#x1F600;",
    ]
    extra = "" if valid else "".join(draw(st.lists(st.sampled_from(hostile), max_size=2)))
    dtd = pick("", '<!DOCTYPE r [<!ENTITY e "x">]>')
    return (
        f"{dtd}<samlp:LogoutRequest xmlns:samlp='{SAMLP}' xmlns:saml='{SAML}'{head}>"
        f"{issuer}{name_id}{indexes}{extra}</samlp:LogoutRequest>"
    )


def pysaml2_refuses(xml: str) -> bool:
    try:
        msg = samlp.logout_request_from_string(xml)
        valid_instance(msg)
        return msg is None or msg.version != "2.0"
    except Exception:
        return True


@settings(max_examples=120, **_BOUNDED)
@given(
    xml=logout_requests(),
    binding=st.sampled_from([BINDING_HTTP_REDIRECT, BINDING_HTTP_POST]),
    relay=st.one_of(st.none(), st.text(max_size=20), st.text(max_size=80), st.just("r" * 1025)),
)
def test_logout_request_is_answered_or_refused_with_nothing_stored(engine, xml, binding, relay):
    from idp.saml.logout import slo
    from idp.saml.results import LogoutPage, PostForm, Received, Redirect, Refused

    svc, _, _, mgr = engine
    encoded = (
        deflate(xml.encode())
        if binding == BINDING_HTTP_REDIRECT
        else (base64.b64encode(xml.encode()).decode())
    )
    before = store_keys(svc)
    answer = slo(svc, Received(binding, encoded, relay, b"", relay), "SAMLRequest", None, mgr)
    event(type(answer).__name__)
    if isinstance(answer, Refused):
        assert answer.status == 400 and answer.message and "\n" not in answer.message
        assert store_keys(svc) == before
        return
    assert isinstance(answer, Redirect | PostForm | LogoutPage), answer
    assert not pysaml2_refuses(xml), xml
    assert f"<saml:Issuer>{LAX_SP}</saml:Issuer>" in xml  # the SP that must sign never gets here
    after = set(store_keys(svc)) - set(before)
    assert [k for k in after if k.startswith("saml:logout:")], after  # the replay cache
    if isinstance(answer, Redirect):
        assert answer.location.startswith("https://sp.example.org/slo?SAMLResponse=")


# --- AuthnRequest: hostile documents through the whole SSO pipeline ------------------------------


@settings(max_examples=120, **_BOUNDED)
@given(
    case=hostile_documents(),
    issuer=st.sampled_from([SIGNED_SP, LAX_SP]),
    binding=st.sampled_from([BINDING_HTTP_REDIRECT, BINDING_HTTP_POST]),
)
def test_hostile_authn_request_is_answered_or_refused_with_nothing_stored(
    engine, case, issuer, binding
):
    """``idp.saml.sso.sso`` on the hostile documents of ``saml_fuzz_kit`` (from a known SP and
    issued now, so that they get past the first checks): refused (400, one line, the store
    unchanged), a SAML error status to the SP's ACS, or the login asked for; never an
    exception."""
    from idp.saml.results import LoginNeeded, PostForm, Received, Refused
    from idp.saml.sso import sso
    from idp.sso.network import Origin

    svc, _, _, mgr = engine
    data = case[0].replace(b"https://sp.example.org/metadata", issuer.encode())
    data = data.replace(b"2026-11-21T10:00:00Z", _instant(0).encode())
    encoded = deflate(data) if binding == BINDING_HTTP_REDIRECT else base64.b64encode(data).decode()
    before = store_keys(svc)
    answer = sso(
        svc, Received(binding, encoded, None, b"", None), None, mgr, origin=Origin(ip="192.0.2.1")
    )
    event(type(answer).__name__)
    if isinstance(answer, Refused):
        assert answer.status == 400 and answer.message and "\n" not in answer.message
        assert store_keys(svc) == before
        return
    assert isinstance(answer, LoginNeeded | PostForm), answer
    if isinstance(answer, PostForm):
        assert (answer.action, answer.field) == (ACS, "SAMLResponse")
