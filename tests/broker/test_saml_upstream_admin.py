"""Managing upstream SAML IdPs through ``/api/v1/upstreams`` (kind ``saml``): the IdP's
metadata pasted as ``metadata_xml`` or fetched from ``metadata_url`` under the outbound policy;
the answer names what to register at the IdP (our SP metadata URL, ACS, SLS); unusable
metadata, a client secret or an unknown setting is refused as problem+json and changes
nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from broker_kit import audits
from saml_upstream_kit import UPSTREAM, build_upstream

_TESTS = Path(__file__).resolve().parent.parent
for _folder in (_TESTS, _TESTS / "api"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


@pytest.fixture(scope="module")
def idp_metadata(tmp_path_factory) -> str:
    return build_upstream(tmp_path_factory.mktemp("upstream"), []).metadata


def _body(metadata: str, **config):
    return {
        "alias": "campus",
        "kind": "saml",
        "display_name": "Campus",
        "config": {"metadata_xml": metadata, **config},
    }


def test_api_creates_a_saml_upstream_and_says_what_to_register(app, idp_metadata):
    from api_kit import api, service_token

    token = service_token(app)
    client = app.test_client()
    body = _body(
        idp_metadata, name_id_format="persistent", trust_email=True, email_attribute="mail"
    )
    made = api(client, "POST", "/api/v1/upstreams", token, json=body)
    assert made.status_code == 201, made.get_json()
    out = made.get_json()
    issuer = app.extensions["idp"].settings.issuer
    assert out["sp_metadata_url"] == f"{issuer}/broker/campus/saml/metadata"
    assert out["acs_url"] == f"{issuer}/broker/campus/saml/acs"
    assert out["sls_url"] == f"{issuer}/broker/campus/saml/sls"
    assert out["config"]["name_id_format"] == (
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    )
    assert out["has_secret"] is False
    md = client.get("/broker/campus/saml/metadata")
    assert md.status_code == 200 and md.mimetype == "application/samlmetadata+xml"
    assert 'entityID="' + out["sp_metadata_url"] in md.get_data(as_text=True)
    assert UPSTREAM not in md.get_data(as_text=True)
    patched = api(
        client,
        "PATCH",
        "/api/v1/upstreams/campus",
        token,
        json={"config": {"metadata_xml": idp_metadata, "allow_unsolicited": True}},
        headers={"If-Match": made.headers["ETag"]},
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["config"]["allow_unsolicited"] is True


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda md: _body('<!DOCTYPE x [<!ENTITY a "b">]>' + md.split("?>", 1)[-1]), "DTD"),
        (lambda md: _body(md.replace("IDPSSODescriptor", "SPSSODescriptor")), "IDPSSODescriptor"),
        (lambda md: _body(md, want_assertions_signed="yes"), "must be bool"),
        (lambda md: _body(md, issuer="https://x.example"), "unknown SAML upstream setting"),
        (lambda md: {**_body(md), "client_secret": "s3cret"}, "no client secret"),
        (
            lambda md: {
                "alias": "campus",
                "kind": "saml",
                "display_name": "Campus",
                "config": {"metadata_url": "https://127.0.0.1:1/md"},
            },
            "cannot be fetched",
        ),
    ],
)
def test_unusable_saml_settings_are_problem_json_and_change_nothing(
    app, idp_metadata, edit, needle
):
    from api_kit import api, service_token

    token = service_token(app)
    svc = app.extensions["idp"]
    before = len(audits(svc, "upstream.created"))
    resp = api(app.test_client(), "POST", "/api/v1/upstreams", token, json=edit(idp_metadata))
    assert resp.status_code == 409, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert needle in resp.get_json()["detail"]
    assert len(audits(svc, "upstream.created")) == before
    assert api(app.test_client(), "GET", "/api/v1/upstreams/campus", token).status_code == 404


def test_no_sp_endpoints_for_an_unknown_or_oidc_upstream(app):
    client = app.test_client()
    assert client.get("/broker/nobody/saml/metadata").status_code == 404
    assert client.post("/broker/nobody/saml/acs", data={"SAMLResponse": "x"}).status_code == 403


def test_the_console_adds_a_saml_upstream_and_shows_what_to_register(app, svc, idp_metadata):
    from admin_kit import console_csrf, make_admin, signed_in

    make_admin(svc)
    client = signed_in(app)
    token = console_csrf(client, "/admin/upstreams")
    form = {
        "csrf_token": token,
        "alias": "campus",
        "kind": "saml",
        "display_name": "Campus",
        "client_secret": "",
        "mapping": "[]",
        "hrd_domains": "",
        "sync_mode": "import",
        "enabled": "1",
        "config": json.dumps({"metadata_xml": "<nope/>"}),
    }
    refused = client.post("/admin/upstreams", data=form)
    assert refused.status_code == 400
    assert "EntityDescriptor" in refused.get_data(as_text=True)
    assert audits(svc, "upstream.created") == []
    made = client.post(
        "/admin/upstreams",
        data={**form, "config": json.dumps({"metadata_xml": idp_metadata, "trust_email": True})},
    )
    assert made.status_code == 303, made.get_data(as_text=True)[:300]
    page = client.get(made.headers["Location"]).get_data(as_text=True)
    assert "/broker/campus/saml/metadata" in page and "/broker/campus/saml/acs" in page
    assert "/broker/campus/callback" not in page
