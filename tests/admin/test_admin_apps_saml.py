"""The console's SAML screens (/admin/saml): service providers added from an uploaded metadata
file or a URL fetched only through the outbound fetcher (file:, loopback and plain http URLs
refused, too large or non-SAML metadata refused, nothing stored), certificates with their
expiry, settings and attribute release, enable / disable, removal with confirmation; the
federation aggregates with "refresh now"; CSRF required and an Auditor refused."""

from __future__ import annotations

import base64
import http.server
import threading
from datetime import timedelta

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from federation_kit import aggregate, keypair, sp_entity
from login_kit import audit_actions
from sqlalchemy import func, select

from idp.manage import Actor, transaction
from idp.manage import service_providers as manage_sps
from idp.storage.models import ClaimRule, SamlServiceProvider
from idp.storage.models_saml import SamlFederation
from idp.web.api.saml_providers import provider_id

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
POST_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SP = "https://sp.example.org/shibboleth"


def certificate_b64(not_after) -> str:
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


def metadata(entity_id: str = SP, cert: str | None = None, acs: str | None = None) -> bytes:
    key = ""
    if cert:
        key = (
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="{DS}"><ds:X509Data>'
            f"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            "</md:KeyDescriptor>"
        )
    acs = acs or f"{entity_id.rstrip('/')}/acs"
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{entity_id}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{key}"
        f'<md:AssertionConsumerService Binding="{POST_BINDING}" Location="{acs}" index="1"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    ).encode()


def count(svc, model) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def sp_row(svc, entity_id: str = SP) -> SamlServiceProvider | None:
    with svc.sessions() as db:
        row = db.get(SamlServiceProvider, entity_id)
        if row is not None:
            db.expunge(row)
        return row


def add_sp(svc, entity_id: str = SP, cert: str | None = None) -> str:
    with transaction(svc, Actor.operator()) as ctx:
        manage_sps.add(ctx, metadata(entity_id, cert))
    return provider_id(entity_id)


def post(client, url: str, data: dict | None = None, **kw):
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})}, **kw)


def upload(client, data: bytes, **fields):
    import io

    return post(
        client,
        "/admin/saml/new",
        {"metadata_file": (io.BytesIO(data), "sp.xml"), "url": "", **fields},
        content_type="multipart/form-data",
    )


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


def admin_of(app, username="root"):
    make_admin(app.extensions["idp"], username)
    client = signed_in(app, username)
    client.csrf = console_csrf(client, "/admin/saml/new")
    return client


@pytest.fixture
def admin(app, svc):
    return admin_of(app)


class Serve:
    """A loopback HTTP server answering every GET with ``body``."""

    def __init__(self, body: bytes) -> None:
        outer = self
        self.body = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/metadata.xml"

    def close(self) -> None:
        self.httpd.shutdown()


# --- list and add by upload ------------------------------------------------------------------


def test_upload_adds_the_sp_and_shows_its_certificate_expiry(admin, svc, clock):
    soon = clock.utcnow() + timedelta(days=10)
    response = upload(admin, metadata(cert=certificate_b64(soon)), name_id_format="email")
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    assert response.headers["Location"] == f"/admin/saml/sp/{provider_id(SP)}"
    row = sp_row(svc)
    assert row.origin == "manual" and row.settings == {"name_id_format": "email"}
    html = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Expires {soon:%Y-%m-%d}" in html and 'class="badge warn"' in html
    assert "https://sp.example.org/shibboleth/acs" in html
    listing = admin.get("/admin/saml").get_data(as_text=True)
    assert SP in listing and f"Expires {soon:%Y-%m-%d}" in listing
    assert "saml.sp_added" in audit_actions(svc)


def test_the_list_pages_and_filters_in_sql(admin, svc):
    for i in range(12):
        add_sp(svc, f"https://sp{i:02d}.example.org/")
    html = admin.get("/admin/saml?per_page=10").get_data(as_text=True)
    assert "12 results · page 1 of 2" in html and "sp11.example.org" not in html
    assert "sp11.example.org" in admin.get("/admin/saml?per_page=10&page=2").get_data(as_text=True)
    found = admin.get("/admin/saml?q=sp03").get_data(as_text=True)
    assert "sp03.example.org" in found and "sp04.example.org" not in found
    none = admin.get("/admin/saml?origin=federation:nothing").get_data(as_text=True)
    assert "No service provider matches" in none


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not xml at all", "not usable SAML 2.0 SP metadata"),
        (b"<html><body>hello</body></html>", "not usable SAML 2.0 SP metadata"),
        (metadata(acs="javascript:alert(1)"), "not usable SAML 2.0 SP metadata"),
        (metadata(acs="http://sp.example.org/acs"), "not usable SAML 2.0 SP metadata"),
    ],
)
def test_metadata_that_is_not_usable_is_refused(admin, svc, data, message):
    before = (count(svc, SamlServiceProvider), len(audit_actions(svc)))
    response = upload(admin, data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="metadata_file-error"' in html and message in html
    assert (count(svc, SamlServiceProvider), len(audit_actions(svc))) == before


def test_too_large_metadata_is_refused(make_app, clock):
    app = make_app(clock=clock, saml={"max_metadata_bytes": 2048})
    svc = app.extensions["idp"]
    admin = admin_of(app)
    big = metadata().replace(
        b"<md:SPSSODescriptor", b"<!--" + b"x" * 4000 + b"--><md:SPSSODescriptor"
    )
    response = upload(admin, big)
    assert response.status_code == 400
    assert "larger than 2048 bytes" in response.get_data(as_text=True)
    assert count(svc, SamlServiceProvider) == 0


def test_one_of_file_or_url_is_required(admin, svc):
    neither = post(admin, "/admin/saml/new", {"url": ""}, content_type="multipart/form-data")
    assert neither.status_code == 400
    assert "one of the two" in neither.get_data(as_text=True)
    import io

    both = post(
        admin,
        "/admin/saml/new",
        {"metadata_file": (io.BytesIO(metadata()), "sp.xml"), "url": "https://sp.example.org/md"},
        content_type="multipart/form-data",
    )
    assert both.status_code == 400 and count(svc, SamlServiceProvider) == 0


def test_a_registered_sp_is_a_conflict(admin, svc):
    add_sp(svc)
    response = upload(admin, metadata())
    assert response.status_code == 409 and "already registered" in response.get_data(as_text=True)


# --- add by URL: only through the outbound fetcher ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only https URLs are fetched"),
        ("http://sp.example.org/metadata", "only https URLs are fetched"),
        ("https://127.0.0.1/metadata", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.1.2.3/metadata", "private"),
        ("gopher://sp.example.org/", "only https URLs are fetched"),
    ],
)
def test_unsafe_urls_are_refused_before_any_connection(admin, svc, url, reason):
    before = (count(svc, SamlServiceProvider), len(audit_actions(svc)))
    response = post(admin, "/admin/saml/new", {"url": url}, content_type="multipart/form-data")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="url-error"' in html and reason in html
    assert (count(svc, SamlServiceProvider), len(audit_actions(svc))) == before


def test_a_url_is_fetched_when_outbound_allows_the_lab_address(make_app, clock):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})
    svc = app.extensions["idp"]
    admin = admin_of(app)
    server = Serve(b"<not-saml/>")
    try:
        refused = post(
            admin, "/admin/saml/new", {"url": server.url}, content_type="multipart/form-data"
        )
        assert refused.status_code == 400 and 'id="url-error"' in refused.get_data(as_text=True)
        assert count(svc, SamlServiceProvider) == 0
        server.body = metadata()
        added = post(
            admin, "/admin/saml/new", {"url": server.url}, content_type="multipart/form-data"
        )
        assert added.status_code == 302, added.get_data(as_text=True)[:2000]
        assert sp_row(svc).origin == f"url:{server.url}"
        pid = provider_id(SP)
        assert "Fetch metadata again" in admin.get(f"/admin/saml/sp/{pid}").get_data(as_text=True)
        # A new certificate at the URL: fetched again, settings and the disabled state kept.
        post(admin, f"/admin/saml/sp/{pid}/settings", {"sign_response": "no", "release": "all"})
        post(admin, f"/admin/saml/sp/{pid}/enabled", {"enabled": "0"})
        server.body = metadata(cert=certificate_b64(clock.utcnow() + timedelta(days=400)))
        again = post(admin, f"/admin/saml/sp/{pid}/refetch", follow_redirects=True)
        assert "was fetched again" in again.get_data(as_text=True)
        row = sp_row(svc)
        assert "X509Certificate" in row.metadata_xml and row.settings == {"sign_response": False}
        assert row.enabled is False
        # Metadata for another entity at that URL is refused, nothing changed.
        server.body = metadata("https://evil.example.org/")
        refused = post(admin, f"/admin/saml/sp/{pid}/refetch", follow_redirects=True)
        assert "for another entity" in refused.get_data(as_text=True)
        assert sp_row(svc).metadata_xml == row.metadata_xml
        assert count(svc, SamlServiceProvider) == 1
    finally:
        server.close()


# --- settings, attribute release, enable / disable, remove --------------------------------------


def test_settings_are_saved_and_fall_back_to_the_defaults(admin, svc):
    pid = add_sp(svc)
    page = admin.get(f"/admin/saml/sp/{pid}/settings").get_data(as_text=True)
    assert "Server default (yes)" in page
    response = post(
        admin,
        f"/admin/saml/sp/{pid}/settings",
        {
            "sign_response": "no",
            "encrypt_assertion": "yes",
            "name_id_format": "transient",
            "encryption_algorithm": "aes256-gcm",
            "display_name": "Wiki",
            "release": "some",
            "attributes": "mail\nurn:oid:2.5.4.42\nmail",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert sp_row(svc).settings == {
        "sign_response": False,
        "encrypt_assertion": True,
        "name_id_format": "transient",
        "encryption_algorithm": "aes256-gcm",
        "display_name": "Wiki",
        "attributes": ["mail", "urn:oid:2.5.4.42"],
    }
    detail = admin.get(f"/admin/saml/sp/{pid}").get_data(as_text=True)
    assert "Only these attributes are released" in detail and "urn:oid:2.5.4.42" in detail
    post(admin, f"/admin/saml/sp/{pid}/settings", {"release": "all", "sign_response": "no"})
    assert sp_row(svc).settings == {"sign_response": False}


def test_bad_settings_change_nothing(admin, svc):
    pid = add_sp(svc)
    before = (sp_row(svc).settings, len(audit_actions(svc)))
    for data in (
        {"sign_response": "maybe"},
        {"name_id_format": "x509"},
        {"release": "some", "attributes": ""},
        {"default_relay_state": "x" * 81},
    ):
        response = post(admin, f"/admin/saml/sp/{pid}/settings", data)
        assert response.status_code == 400, data
        assert 'class="field-error"' in response.get_data(as_text=True)
    assert (sp_row(svc).settings, len(audit_actions(svc))) == before


def test_sp_attribute_rules_are_added_and_removed(admin, svc):
    pid = add_sp(svc)
    realm = count(svc, ClaimRule)
    response = post(
        admin,
        f"/admin/saml/sp/{pid}/rules",
        {
            "saml_name": "urn:oid:2.16.840.1.113730.3.1.241",
            "saml_friendly_name": "displayName",
            "source_type": "attribute",
            "source_value": "display_name",
            "enabled": "1",
        },
    )
    assert response.status_code == 302
    with svc.sessions() as db:
        rule = db.scalar(select(ClaimRule).where(ClaimRule.sp_entity_id == SP))
    assert rule.rule["saml_name"] == "urn:oid:2.16.840.1.113730.3.1.241"
    html = admin.get(f"/admin/saml/sp/{pid}").get_data(as_text=True)
    assert "displayName" in html and "attribute: name=display_name" in html
    refused = post(admin, f"/admin/saml/sp/{pid}/rules", {"saml_name": "", "source_type": "groups"})
    assert refused.status_code == 400 and 'id="saml_name-error"' in refused.get_data(as_text=True)
    assert post(admin, f"/admin/saml/sp/{pid}/rules/{rule.id}/delete").status_code == 302
    assert count(svc, ClaimRule) == realm  # the realm's rules untouched
    with svc.sessions() as db:
        assert db.get(ClaimRule, rule.id) is None


def test_disable_enable_and_remove(admin, svc):
    pid = add_sp(svc)
    assert post(admin, f"/admin/saml/sp/{pid}/refetch").status_code == 404  # not from a URL
    post(admin, f"/admin/saml/sp/{pid}/enabled", {"enabled": "0"})
    assert sp_row(svc).enabled is False
    post(admin, f"/admin/saml/sp/{pid}/enabled", {"enabled": "1"})
    assert sp_row(svc).enabled is True
    unconfirmed = post(admin, f"/admin/saml/sp/{pid}/delete", {})
    assert unconfirmed.status_code == 400 and sp_row(svc) is not None
    assert post(admin, f"/admin/saml/sp/{pid}/delete", {"confirm": "yes"}).status_code == 302
    assert sp_row(svc) is None and "saml.sp_removed" in audit_actions(svc)
    assert admin.get(f"/admin/saml/sp/{pid}").status_code == 404
    assert admin.get("/admin/saml/sp/not-an-id!").status_code == 404


# --- federations --------------------------------------------------------------------------------


def _federation(svc, tmp_path, url: str) -> tuple:
    key, cert = keypair(tmp_path, "fed")
    with svc.sessions.begin() as db:
        db.add(
            SamlFederation(
                name="testfed",
                url=url,
                cert_pem=cert.read_text(),
                filters={},
                refresh_seconds=86400,
            )
        )
    return key, cert


def test_federations_are_listed_and_refreshed_through_the_outbound_fetcher(
    make_app, clock, tmp_path
):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})
    svc = app.extensions["idp"]
    admin = admin_of(app)
    server = Serve(b"")
    try:
        key, cert = _federation(svc, tmp_path, server.url)
        server.body = aggregate(
            [sp_entity("https://a.example.org"), sp_entity("https://b.example.org")],
            key,
            cert,
            valid_until=clock.utcnow() + timedelta(days=7),
        )
        html = admin.get("/admin/saml/federations").get_data(as_text=True)
        assert "testfed" in html and "Not fetched yet" in html
        done = post(admin, "/admin/saml/federations/testfed/refresh", follow_redirects=True)
        text = done.get_data(as_text=True)
        assert "testfed was refreshed: 2 service providers" in text
        assert count(svc, SamlServiceProvider) == 2
        assert "saml.federation_refreshed" in audit_actions(svc)
        listed = admin.get("/admin/saml?origin=federation:testfed").get_data(as_text=True)
        assert "a.example.org" in listed and "b.example.org" in listed
    finally:
        server.close()


def test_a_failed_refresh_is_recorded_and_shown(admin, svc, tmp_path):
    _federation(svc, tmp_path, "file:///etc/passwd")
    done = post(admin, "/admin/saml/federations/testfed/refresh", follow_redirects=True)
    text = done.get_data(as_text=True)
    assert "testfed was not refreshed" in text and "only https URLs are fetched" in text
    with svc.sessions() as db:
        assert "only https" in db.get(SamlFederation, "testfed").last_error
    assert "saml.federation_refresh_failed" in audit_actions(svc)
    assert count(svc, SamlServiceProvider) == 0
    assert post(admin, "/admin/saml/federations/nope/refresh").status_code == 404


# --- who may ------------------------------------------------------------------------------------


def test_changes_need_the_csrf_token(admin, svc):
    pid = add_sp(svc)
    before = len(audit_actions(svc))
    assert admin.post(f"/admin/saml/sp/{pid}/enabled", data={"enabled": "0"}).status_code == 400
    assert admin.post(f"/admin/saml/sp/{pid}/delete", data={"confirm": "yes"}).status_code == 400
    assert sp_row(svc).enabled is True and len(audit_actions(svc)) == before


def test_an_auditor_gets_403_on_every_change(app, svc, tmp_path):
    pid = add_sp(svc)
    _federation(svc, tmp_path, "file:///dev/null")
    make_admin(svc, "auditor", role="Auditor")
    auditor = signed_in(app, "auditor")
    auditor.csrf = console_csrf(auditor, "/account/")
    before = (count(svc, SamlServiceProvider), len(audit_actions(svc)))
    assert auditor.get("/admin/saml").status_code == 403
    assert upload(auditor, metadata("https://other.example.org/")).status_code == 403
    assert post(auditor, f"/admin/saml/sp/{pid}/enabled", {"enabled": "0"}).status_code == 403
    assert (
        post(auditor, f"/admin/saml/sp/{pid}/settings", {"sign_response": "no"}).status_code == 403
    )
    assert post(auditor, f"/admin/saml/sp/{pid}/delete", {"confirm": "yes"}).status_code == 403
    assert post(auditor, "/admin/saml/federations/testfed/refresh").status_code == 403
    # A URL is never fetched for someone who may not add SPs.
    assert (
        post(
            auditor,
            "/admin/saml/new",
            {"url": "https://127.0.0.1/"},
            content_type="multipart/form-data",
        ).status_code
        == 403
    )
    assert (count(svc, SamlServiceProvider), len(audit_actions(svc))) == before
    assert sp_row(svc).enabled is True
