"""The console operations the API lacked, now API operations calling the same
``idp.manage`` functions: a client's claim rules and an SP's attribute rules, an SP added from
its metadata URL (SSRF rules before any connection) and fetched again, a user's photo. Hostile
cases: no permission -> 403, unknown ids -> 404, data the rules refuse -> 409, each with
problem+json and nothing changed."""

from __future__ import annotations

import http.server
import io
import threading

import pytest
from directory_api_kit import refused, service_caller, snapshot, user_uuid
from login_kit import GOOD, make_user
from PIL import Image
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients
from idp.storage.models import ClaimRule, SamlServiceProvider, User
from idp.web.api.saml_providers import provider_id

SP = "https://sp.example.org/shibboleth"


def sp_metadata(entity_id: str = SP) -> bytes:
    return f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
 entityID="{entity_id}"><md:SPSSODescriptor
 protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
 <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
 Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor>
</md:EntityDescriptor>""".encode()


class Serve:
    """A loopback HTTP server answering every GET with ``body``; counts the requests."""

    def __init__(self, body: bytes) -> None:
        outer = self
        self.body, self.hits = body, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits += 1
                self.send_response(200)
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


def make_client(svc, client_id: str = "wiki") -> None:
    with transaction(svc, Actor.operator()) as ctx:
        manage_clients.create(ctx, client_id, redirect_uris=["https://wiki.example.org/cb"])


RULE = {"target": "department", "source": {"type": "department"}}


# --- claim rules of a client / attribute rules of an SP ------------------------------------------


def test_client_claim_rules_are_listed_added_and_deleted(app, svc):
    make_client(svc)
    admin = service_caller(app)
    assert admin.get("/clients/wiki/claim-rules").get_json() == {"items": []}
    added = admin.post("/clients/wiki/claim-rules", {"rule": RULE, "scope": "profile"})
    assert added.status_code == 201, added.get_data(as_text=True)
    rule = added.get_json()
    assert rule["rule"] == RULE and rule["scope"] == "profile" and rule["enabled"] is True
    assert added.headers["Location"].endswith(f"/clients/wiki/claim-rules/{rule['id']}")
    assert admin.get("/clients/wiki/claim-rules").get_json()["items"] == [rule]
    assert admin.delete(f"/clients/wiki/claim-rules/{rule['id']}").status_code == 204
    assert admin.get("/clients/wiki/claim-rules").get_json() == {"items": []}


def test_a_rule_the_mapper_refuses_is_409_and_nothing_stored(app, svc):
    make_client(svc)
    admin = service_caller(app)
    for rule in (
        {"target": "sub", "source": {"type": "attribute", "name": "email"}},  # registered
        {"target": "x", "source": {"type": "no-such-source"}},
        {"target": "x", "source": {"type": "template", "template": "{x.__class__}"}},
    ):
        resp = refused(
            app, 409, lambda r=rule: admin.post("/clients/wiki/claim-rules", {"rule": r})
        )
        assert resp.get_json()["type"].endswith("/rule-refused")
    # Schema violations stay 400.
    refused(app, 400, lambda: admin.post("/clients/wiki/claim-rules", {"rule": "text"}))
    refused(app, 400, lambda: admin.post("/clients/wiki/claim-rules", {"rule": RULE, "x": 1}))


def test_claim_rules_unknown_ids_and_other_owners_are_404(app, svc):
    make_client(svc)
    make_client(svc, "other")
    admin = service_caller(app)
    theirs = admin.post("/clients/other/claim-rules", {"rule": RULE}).get_json()["id"]
    refused(app, 404, lambda: admin.get("/clients/nope/claim-rules"))
    refused(app, 404, lambda: admin.post("/clients/nope/claim-rules", {"rule": RULE}))
    # A rule of another client, an unknown rule and a realm default are not this client's.
    with svc.sessions() as db:
        realm = db.scalar(select(ClaimRule.id).where(ClaimRule.client_id.is_(None)).limit(1))
    for rule_id in (theirs, 999999, "abc", realm):
        refused(app, 404, lambda i=rule_id: admin.delete(f"/clients/wiki/claim-rules/{i}"))


def test_claim_rules_need_the_permissions(app, svc):
    make_client(svc)
    admin = service_caller(app)
    rule_id = admin.post("/clients/wiki/claim-rules", {"rule": RULE}).get_json()["id"]
    helpdesk = service_caller(app, roles=("Helpdesk",))
    refused(app, 403, lambda: helpdesk.get("/clients/wiki/claim-rules"))
    refused(app, 403, lambda: helpdesk.post("/clients/wiki/claim-rules", {"rule": RULE}))
    refused(app, 403, lambda: helpdesk.delete(f"/clients/wiki/claim-rules/{rule_id}"))


def test_sp_attribute_rules(app, svc):
    from idp.manage import service_providers as manage_sps

    with transaction(svc, Actor.operator()) as ctx:
        manage_sps.add(ctx, sp_metadata())
    pid = provider_id(SP)
    admin = service_caller(app)
    rule = {"saml_name": "urn:oid:2.5.4.11", "source": {"type": "department"}}
    added = admin.post(f"/saml/providers/{pid}/attribute-rules", {"rule": rule})
    assert added.status_code == 201, added.get_data(as_text=True)
    rule_id = added.get_json()["id"]
    assert [r["id"] for r in admin.get(f"/saml/providers/{pid}/attribute-rules").json["items"]] == [
        rule_id
    ]
    refused(app, 404, lambda: admin.get("/saml/providers/bm9wZQ/attribute-rules"))
    assert admin.delete(f"/saml/providers/{pid}/attribute-rules/{rule_id}").status_code == 204
    refused(app, 404, lambda: admin.delete(f"/saml/providers/{pid}/attribute-rules/{rule_id}"))


# --- an SP from its metadata URL ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://sp.example.org/metadata", "only https URLs are fetched"),
        ("https://127.0.0.1/metadata", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.1.2.3/metadata", "private"),
        ("https://[::1]/metadata", "loopback"),
    ],
)
def test_unsafe_metadata_urls_are_refused_before_any_connection(app, url, reason, monkeypatch):
    import socket

    def no_connection(*args, **kw):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    admin = service_caller(app)
    resp = refused(app, 409, lambda: admin.post("/saml/providers/from-url", {"url": url}))
    body = resp.get_json()
    assert body["type"].endswith("/metadata-not-fetched") and reason in body["detail"]


def test_urls_outside_the_schema_are_400(app):
    admin = service_caller(app)
    for url in ("file:///etc/passwd", "gopher://sp.example.org/", " https://sp.example.org/x"):
        refused(app, 400, lambda u=url: admin.post("/saml/providers/from-url", {"url": u}))
    refused(
        app,
        400,
        lambda: admin.post("/saml/providers/from-url", {"url": "https://a.b/" + "x" * 300}),
    )


def test_from_url_adds_and_refresh_fetches_again(make_app, clock):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})
    svc = app.extensions["idp"]
    admin = service_caller(app)
    server = Serve(b"<not-saml/>")
    try:
        resp = refused(
            app, 409, lambda: admin.post("/saml/providers/from-url", {"url": server.url})
        )
        assert resp.get_json()["type"].endswith("/unusable-metadata")
        server.body = sp_metadata()
        added = admin.post(
            "/saml/providers/from-url",
            {"url": server.url, "settings": {"name_id_format": "persistent"}},
        )
        assert added.status_code == 201, added.get_data(as_text=True)
        sp = added.get_json()
        assert sp["origin"] == f"url:{server.url}" and sp["settings"] == {
            "name_id_format": "persistent"
        }
        # Added twice: a conflict, nothing changed.
        refused(app, 409, lambda: admin.post("/saml/providers/from-url", {"url": server.url}))
        # Disabled, then fetched again: the new endpoint is read, settings and state kept.
        assert admin.patch(f"/saml/providers/{sp['id']}", {"enabled": False}).status_code == 200
        server.body = sp_metadata().replace(b"/acs", b"/acs2")
        again = admin.post(f"/saml/providers/{sp['id']}/refresh")
        assert again.status_code == 200, again.get_data(as_text=True)
        out = again.get_json()
        assert out["assertion_consumer_services"][0]["location"] == "https://sp.example.org/acs2"
        assert out["enabled"] is False and out["settings"] == {"name_id_format": "persistent"}
        # Metadata for another entity at the URL: 409, nothing changed.
        server.body = sp_metadata("https://evil.example.org/")
        resp = refused(app, 409, lambda: admin.post(f"/saml/providers/{sp['id']}/refresh"))
        assert "another entity" in resp.get_json()["detail"]
        # No permission: 403 before any connection.
        hits = server.hits
        helpdesk = service_caller(app, roles=("Helpdesk",))
        refused(app, 403, lambda: helpdesk.post(f"/saml/providers/{sp['id']}/refresh"))
        refused(app, 403, lambda: helpdesk.post("/saml/providers/from-url", {"url": server.url}))
        assert server.hits == hits
    finally:
        server.close()
    with svc.sessions() as db:
        assert db.scalar(select(SamlServiceProvider.enabled)) is False


def test_refresh_of_an_sp_not_added_from_a_url_is_409_and_unknown_is_404(app, svc):
    from idp.manage import service_providers as manage_sps

    with transaction(svc, Actor.operator()) as ctx:
        manage_sps.add(ctx, sp_metadata())
    admin = service_caller(app)
    refused(app, 409, lambda: admin.post(f"/saml/providers/{provider_id(SP)}/refresh"))
    refused(app, 404, lambda: admin.post("/saml/providers/bm9wZQ/refresh"))


# --- a user's photo ------------------------------------------------------------------------------


def picture(size=(300, 240), kind="PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=kind)
    return out.getvalue()


def put_photo(caller, uuid: str, data: bytes, media: str = "image/png"):
    return caller("PUT", f"/users/{uuid}/photo", data=data, content_type=media)


def avatar_of(svc, uuid: str):
    with svc.sessions() as db:
        return db.scalar(select(User.avatar).where(User.uuid == uuid))


def test_photo_is_set_read_and_removed(app, svc):
    make_user(svc, "ann", GOOD)
    uuid = user_uuid(svc, "ann")
    admin = service_caller(app)
    refused(app, 404, lambda: admin.get(f"/users/{uuid}/photo"))
    assert put_photo(admin, uuid, picture(kind="JPEG"), "image/jpeg").status_code == 204
    first = avatar_of(svc, uuid)
    got = admin.get(f"/users/{uuid}/photo")
    assert got.status_code == 200 and got.mimetype == "image/png"
    with Image.open(io.BytesIO(got.data)) as image:
        assert image.size == (256, 256) and image.format == "PNG"
    # Replaced: the old file goes.
    assert put_photo(admin, uuid, picture()).status_code == 204
    folder = app.extensions["idp"].settings.instance_dir
    from pathlib import Path

    assert not (Path(folder) / "avatars" / first).exists()
    assert admin.delete(f"/users/{uuid}/photo").status_code == 204
    assert avatar_of(svc, uuid) is None
    refused(app, 404, lambda: admin.get(f"/users/{uuid}/photo"))


@pytest.mark.parametrize(
    ("data", "media", "status", "rule"),
    [
        (picture((150, 400)), "image/png", 409, "too_small"),
        (b"GIF89a not a picture", "image/png", 409, "unreadable"),
        (picture(kind="GIF"), "image/png", 409, "format"),
        (picture(), "text/plain", 415, None),
        (b"\0" * (2 * 1024 * 1024 + 1), "image/png", 413, None),
    ],
)
def test_bad_pictures_change_nothing(app, svc, data, media, status, rule):
    make_user(svc, "ann", GOOD)
    uuid = user_uuid(svc, "ann")
    admin = service_caller(app)
    resp = refused(app, status, lambda: put_photo(admin, uuid, data, media))
    if rule:
        assert resp.get_json()["rule"] == rule


def test_photo_needs_permission_and_a_known_user(app, svc):
    make_user(svc, "ann", GOOD)
    uuid = user_uuid(svc, "ann")
    reader = service_caller(app, roles=("Read-only",))
    admin = service_caller(app)
    before = snapshot(svc)
    refused(app, 403, lambda: put_photo(reader, uuid, picture()))
    refused(app, 403, lambda: reader.delete(f"/users/{uuid}/photo"))
    refused(app, 404, lambda: put_photo(admin, "00000000-0000-0000-0000-000000000000", picture()))
    assert snapshot(svc) == before


@pytest.mark.parametrize("odd", ["¹", "²³", "٣"])
def test_unicode_digits_in_a_path_id_are_not_found_not_a_crash(app, svc, odd):
    """str.isdigit() is true for superscripts and other scripts' digits, which int() then
    refuses (or reads as another number): ids are ASCII digits only."""
    make_client(svc)
    admin = service_caller(app)
    refused(app, 404, lambda: admin.delete(f"/clients/wiki/claim-rules/{odd}"))
