"""``/api/v1/saml/providers``: SAML service providers through the admin API. Every operation,
and the hostile cases: malformed, unsafe (javascript: / http ACS) or, when the deployment
requires it, unsigned metadata -> 400 with nothing stored; no permission -> 403 with nothing
changed; stale ``If-Match`` -> 412; ids that are not an SP's -> 404 problem+json."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from api_kit import api, service_token
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from federation_kit import keypair
from lxml import etree
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import service_providers as manage_sps
from idp.storage.models import AuditEvent, SamlServiceProvider

PROBLEM = "application/problem+json"
XML = "application/samlmetadata+xml"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
SP = "https://sp.example.org/shibboleth"
NOT_AFTER = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)


def certificate_b64(not_after: datetime = NOT_AFTER) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sp.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=3650))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def metadata(
    entity_id: str = SP,
    acs: str = "https://sp.example.org/Shibboleth.sso/SAML2/POST",
    slo: str | None = "https://sp.example.org/Shibboleth.sso/SLO/Redirect",
    cert: str | None = None,
    root_id: str | None = None,
) -> str:
    key = ""
    if cert:
        key = (
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="{DS}"><ds:X509Data>'
            f"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            "</md:KeyDescriptor>"
        )
    slo_el = f'<md:SingleLogoutService Binding="{REDIRECT}" Location="{slo}"/>' if slo else ""
    id_attr = f' ID="{root_id}"' if root_id else ""
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{entity_id}"{id_attr}>'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{key}{slo_el}"
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="{POST}" Location="{acs}" index="1"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def sign(xml: str, key_path) -> bytes:
    root = etree.fromstring(xml.encode())
    sig = xmlsec.template.create(
        root, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256
    )
    root.insert(0, sig)
    ref = xmlsec.template.add_reference(
        sig, xmlsec.constants.TransformSha256, uri=f"#{root.get('ID')}"
    )
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(key_path), xmlsec.constants.KeyDataFormatPem)
    ctx.sign(sig)
    return etree.tostring(root)


def pid(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def upload(client, token, xml: str | bytes, **query):
    return api(
        client,
        "POST",
        "/api/v1/saml/providers",
        token,
        data=xml,
        content_type=XML,
        query_string=query,
    )


def stored(svc) -> dict[str, dict]:
    with svc.sessions() as db:
        return {
            r.entity_id: {"settings": dict(r.settings), "enabled": r.enabled, "xml": r.metadata_xml}
            for r in db.scalars(select(SamlServiceProvider))
        }


def audit_actions(svc) -> list[str]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def admin(app):
    return service_token(app)


# --- add, read, list ----------------------------------------------------------------------------


def test_upload_answers_201_with_location_and_the_parsed_metadata(client, admin, svc):
    resp = upload(client, admin, metadata(cert=certificate_b64()), allow_sha1="true")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["id"] == pid(SP) and body["entity_id"] == SP
    assert resp.headers["Location"] == f"/api/v1/saml/providers/{pid(SP)}"
    assert body["settings"] == {"allow_sha1": True}
    (acs,) = body["assertion_consumer_services"]
    assert acs == {
        "binding": POST,
        "location": "https://sp.example.org/Shibboleth.sso/SAML2/POST",
        "response_location": None,
        "index": 1,
        "is_default": None,
    }
    assert body["single_logout_services"][0]["binding"] == REDIRECT
    (cert,) = body["certificates"]
    assert cert["use"] == "signing" and "sp.example.org" in cert["subject"]
    assert datetime.fromisoformat(cert["not_after"]) == NOT_AFTER
    assert datetime.fromisoformat(body["certificate_expires_at"]) == NOT_AFTER
    assert body["name_id_formats"] == ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"]
    assert SP in stored(svc)
    assert "saml.sp_added" in audit_actions(svc)

    got = api(client, "GET", resp.headers["Location"], admin)
    assert got.status_code == 200 and got.headers["ETag"]
    assert got.get_json()["entity_id"] == SP
    listed = api(client, "GET", "/api/v1/saml/providers", admin, query_string={"q": "sp.example"})
    assert [p["entity_id"] for p in listed.get_json()["items"]] == [SP]


def test_list_filters(client, admin):
    upload(client, admin, metadata())
    other = "urn:example:other-sp"
    upload(client, admin, metadata(entity_id=other, acs="https://other.example.org/acs"))
    api(client, "PATCH", f"/api/v1/saml/providers/{pid(other)}", admin, json={"enabled": False})
    off = api(client, "GET", "/api/v1/saml/providers", admin, query_string={"enabled": "false"})
    assert [p["entity_id"] for p in off.get_json()["items"]] == [other]
    api_origin = api(client, "GET", "/api/v1/saml/providers", admin, query_string={"origin": "api"})
    assert api_origin.get_json()["total"] == 2


def test_duplicate_is_409(client, admin, svc):
    upload(client, admin, metadata())
    before = stored(svc)
    again = upload(client, admin, metadata(acs="https://sp.example.org/other-acs"))
    assert again.status_code == 409 and again.mimetype == PROBLEM
    assert stored(svc) == before


def test_id_is_the_base64url_of_the_entity_id_and_other_ids_are_404(client, admin):
    entity_id = "https://sp.example.org/a?b=c&d=ü"
    resp = upload(client, admin, metadata(entity_id=entity_id.replace("&", "&amp;")))
    # ü is not printable ASCII: the API takes entity ids without it.
    assert resp.status_code == 400
    plain = "https://sp.example.org/a?b=c&d=e"
    assert upload(client, admin, metadata(entity_id=plain.replace("&", "&amp;"))).status_code == 201
    assert api(client, "GET", f"/api/v1/saml/providers/{pid(plain)}", admin).status_code == 200
    for bad in ("nope", pid(plain) + "=", pid(plain) + "AA", "%F0%9F%98%80", pid("https://x.y/")):
        resp = api(client, "GET", f"/api/v1/saml/providers/{bad}", admin)
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, bad


# --- hostile uploads ------------------------------------------------------------------------------

BAD = [
    pytest.param("not xml at all", "well-formed", id="not-xml"),
    pytest.param(
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + metadata(), "DTD", id="dtd"
    ),
    pytest.param(metadata(acs="javascript:alert(document.domain)"), "javascript", id="js-acs"),
    pytest.param(metadata(acs="http://sp.example.org/acs"), "https", id="http-acs"),
    pytest.param(metadata(slo="javascript:alert(1)"), "javascript", id="js-slo"),
    pytest.param(metadata(acs="https://sp.example.org/acs#x"), "https", id="fragment-acs"),
    pytest.param(metadata(entity_id=""), "entityID", id="no-entity-id"),
    pytest.param(metadata(entity_id="not a uri"), "absolute URI", id="entity-id-not-uri"),
    pytest.param(
        metadata().replace("SPSSODescriptor", "IDPSSODescriptor"), "SPSSODescriptor", id="an-idp"
    ),
    pytest.param(
        metadata().replace("<md:NameIDFormat>", "<junk/><md:NameIDFormat>"),
        "namespace",
        id="element-without-namespace",
    ),
    pytest.param(
        metadata()
        .replace('validUntil="', "")
        .replace(f'entityID="{SP}"', f'entityID="{SP}" validUntil="2001-01-01T00:00:00Z"'),
        "usable",
        id="expired",
    ),
]


@pytest.mark.parametrize(("xml", "why"), BAD)
def test_bad_metadata_is_400_and_nothing_stored(client, admin, svc, xml, why):
    resp = upload(client, admin, xml)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM, resp.get_json()
    assert why in resp.get_json()["detail"]
    assert stored(svc) == {}
    assert "saml.sp_added" not in audit_actions(svc)


def test_json_or_form_bodies_are_415(client, admin, svc):
    resp = api(client, "POST", "/api/v1/saml/providers", admin, json={"metadata": metadata()})
    assert resp.status_code == 415 and resp.mimetype == PROBLEM
    assert stored(svc) == {}


def test_unknown_setting_in_the_query_is_400(client, admin, svc):
    resp = upload(client, admin, metadata(), allow_http="true")
    assert resp.status_code == 400  # lab SPs with http endpoints: `idp saml sp add --allow-http`
    assert stored(svc) == {}


@pytest.fixture
def signer(tmp_path):
    return keypair(tmp_path, "md-signer")


@pytest.fixture
def signed_app(make_app, clock, signer):
    _, cert = signer
    return make_app(clock=clock, saml={"sp_metadata_signers": [str(cert)]})


def test_when_signers_are_configured_unsigned_metadata_is_refused(signed_app, signer, tmp_path):
    client, svc = signed_app.test_client(), signed_app.extensions["idp"]
    token = service_token(signed_app)
    unsigned = upload(client, token, metadata(root_id="md1"))
    assert unsigned.status_code == 400 and "not signed" in unsigned.get_json()["detail"]
    other_key, _ = keypair(tmp_path, "someone-else")
    forged = upload(client, token, sign(metadata(root_id="md1"), other_key))
    assert forged.status_code == 400 and "does not verify" in forged.get_json()["detail"]
    assert stored(svc) == {}
    key, _ = signer
    signed = upload(client, token, sign(metadata(root_id="md1"), key))
    assert signed.status_code == 201, signed.get_json()
    assert SP in stored(svc)


def test_a_signature_must_cover_the_whole_document(signed_app, signer):
    client, svc = signed_app.test_client(), signed_app.extensions["idp"]
    token = service_token(signed_app)
    key, _ = signer
    signed = sign(metadata(root_id="md1"), key)
    # A signed document carried inside an unsigned wrapper (signature wrapping).
    wrapped = (
        f'<md:EntitiesDescriptor xmlns:md="{MD}">'.encode()
        + signed.replace(b'<?xml version="1.0"?>', b"")
        + b"</md:EntitiesDescriptor>"
    )
    resp = upload(client, token, wrapped)
    assert resp.status_code == 400
    assert stored(svc) == {}


# --- update -------------------------------------------------------------------------------------


def test_patch_sets_and_removes_settings_and_disables(client, admin, svc):
    upload(client, admin, metadata(), name_id_format="email")
    path = f"/api/v1/saml/providers/{pid(SP)}"
    resp = api(
        client,
        "PATCH",
        path,
        admin,
        json={
            "settings": {
                "name_id_format": None,
                "allow_sha1": True,
                "encryption_algorithm": "aes256-cbc",
                "want_logout_signed": False,
                "attributes": ["mail", "displayName"],
            }
        },
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["settings"] == {
        "allow_sha1": True,
        "encryption_algorithm": "aes256-cbc",
        "want_logout_signed": False,
        "attributes": ["mail", "displayName"],
    }
    off = api(client, "PATCH", path, admin, json={"enabled": False})
    assert off.get_json()["enabled"] is False and stored(svc)[SP]["enabled"] is False
    actions = audit_actions(svc)
    assert "saml.sp_updated" in actions and "saml.sp_disabled" in actions


@pytest.mark.parametrize(
    "body",
    [
        {"settings": {"encryption_algorithm": "rot13"}},
        {"settings": {"name_id_format": "urn:whatever"}},
        {"settings": {"bogus": True}},
        {"settings": {"default_relay_state": "x" * 81}},
        {"entity_id": "https://evil.example/"},
        {"enabled": None},
    ],
)
def test_bad_patch_is_400_and_changes_nothing(client, admin, svc, body):
    upload(client, admin, metadata())
    before = stored(svc)
    resp = api(client, "PATCH", f"/api/v1/saml/providers/{pid(SP)}", admin, json=body)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    assert stored(svc) == before


def test_taking_allow_http_from_an_sp_with_http_endpoints_is_409(client, admin, svc):
    lab = "https://lab.example/sp"
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_sps.add(
            ctx,
            metadata(entity_id=lab, acs="http://lab.example/acs", slo=None),
            settings={"allow_http": True},
        )
    before = stored(svc)
    resp = api(
        client,
        "PATCH",
        f"/api/v1/saml/providers/{pid(lab)}",
        admin,
        json={"settings": {"allow_http": None}},
    )
    assert resp.status_code == 409 and "http" in resp.get_json()["detail"]
    assert stored(svc) == before


def test_stale_if_match_is_412_and_changes_nothing(client, admin, svc):
    upload(client, admin, metadata())
    path = f"/api/v1/saml/providers/{pid(SP)}"
    first = api(client, "GET", path, admin).headers["ETag"]
    ok = api(
        client,
        "PATCH",
        path,
        admin,
        json={"settings": {"display_name": "One"}},
        headers={"If-Match": first},
    )
    assert ok.status_code == 200 and ok.headers["ETag"] != first
    before = stored(svc)
    stale = api(
        client,
        "PATCH",
        path,
        admin,
        json={"settings": {"display_name": "Two"}},
        headers={"If-Match": first},
    )
    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    assert api(client, "DELETE", path, admin, headers={"If-Match": first}).status_code == 412
    assert stored(svc) == before
    assert (
        api(client, "DELETE", path, admin, headers={"If-Match": ok.headers["ETag"]}).status_code
        == 204
    )


# --- delete -------------------------------------------------------------------------------------


def test_delete(client, admin, svc):
    upload(client, admin, metadata())
    path = f"/api/v1/saml/providers/{pid(SP)}"
    assert api(client, "DELETE", path, admin).status_code == 204
    assert api(client, "GET", path, admin).status_code == 404
    assert stored(svc) == {}
    assert "saml.sp_removed" in audit_actions(svc)


# --- permissions --------------------------------------------------------------------------------


def test_without_permission_everything_is_403_and_nothing_changes(app, client, admin, svc):
    upload(client, admin, metadata())
    before = stored(svc)
    helpdesk = service_token(app, roles=("Helpdesk",))
    path = f"/api/v1/saml/providers/{pid(SP)}"
    for method, url, kw in [
        ("GET", "/api/v1/saml/providers", {}),
        ("GET", path, {}),
        ("PATCH", path, {"json": {"enabled": False}}),
        ("DELETE", path, {}),
        (
            "POST",
            "/api/v1/saml/providers",
            {"data": metadata(entity_id="urn:x:new"), "content_type": XML},
        ),
    ]:
        resp = api(client, method, url, helpdesk, **kw)
        assert resp.status_code == 403 and resp.mimetype == PROBLEM, (method, url)
    assert stored(svc) == before


def test_read_only_reads_but_cannot_change(app, client, admin):
    upload(client, admin, metadata())
    reader = service_token(app, roles=("Read-only",))
    path = f"/api/v1/saml/providers/{pid(SP)}"
    assert api(client, "GET", path, reader).status_code == 200
    assert api(client, "DELETE", path, reader).status_code == 403
