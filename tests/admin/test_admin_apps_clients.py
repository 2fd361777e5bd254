"""The console's OIDC client screens (/admin/clients): list and search paginated in SQL,
create with the API's own validation (a bad redirect URI refused beside its field, nothing
created), edit, enable / disable, delete with confirmation, the secret shown once after
creation and rotation (never again), service-account roles, the client's claim rules; CSRF
required and an Auditor (no client permissions) refused."""

from __future__ import annotations

import re

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from login_kit import audit_actions
from sqlalchemy import func, select

from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients
from idp.storage.models import ClaimRule, Client, ClientServiceRole


def count(svc, model) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def client_row(svc, client_id: str) -> Client | None:
    with svc.sessions() as db:
        row = db.get(Client, client_id)
        if row is not None:
            db.expunge(row)
        return row


def make_client(svc, client_id: str = "shop", **options) -> str:
    options.setdefault("redirect_uris", ["https://shop.example.org/cb"])
    with transaction(svc, Actor.operator()) as ctx:
        _row, secret = manage_clients.create(
            ctx, client_id, name=options.pop("name", None), **options
        )
    return secret


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


@pytest.fixture
def admin(app, svc):
    make_admin(svc)
    client = signed_in(app)
    client.csrf = console_csrf(client, "/admin/clients/new")
    return client


GOOD_FORM = {
    "client_id": "portal",
    "name": "Staff portal",
    "auth_method": "client_secret_basic",
    "redirect_uris": "https://portal.example.org/callback\nhttp://localhost:8080/cb",
    "post_logout_redirect_uris": "https://portal.example.org/",
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile email",
    "require_pkce": "1",
    "require_pushed_authorization_requests": "1",
    "access_token_lifetime": "600",
    "id_token_lifetime": "",
    "logo_uri": "https://portal.example.org/logo.png",
    "client_uri": "https://portal.example.org/",
}


def post(client, url: str, data: dict | None = None, **kw):
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})}, **kw)


# --- list ----------------------------------------------------------------------------------


def test_the_list_searches_and_pages_in_sql(admin, svc):
    for i in range(12):
        make_client(svc, f"app-{i:02d}", name=f"App {i:02d}")
    make_client(svc, "billing", name="Billing")
    html = admin.get("/admin/clients?per_page=10").get_data(as_text=True)
    assert "13 results · page 1 of 2" in html
    assert "app-09" in html and "app-10" not in html and 'rel="next"' in html
    page2 = admin.get("/admin/clients?per_page=10&page=2").get_data(as_text=True)
    assert "app-10" in page2 and "billing" in page2
    found = admin.get("/admin/clients?q=bill").get_data(as_text=True)
    assert "Billing" in found and "app-01" not in found
    assert '<th scope="col">' in html and 'data-label="Status"' in html
    assert 'href="/admin/clients"' in html  # the sidebar entry now exists


def test_an_empty_list_offers_the_first_client(admin):
    html = admin.get("/admin/clients").get_data(as_text=True)
    assert "No OIDC clients yet." in html and 'href="/admin/clients/new"' in html


# --- create --------------------------------------------------------------------------------


def test_create_shows_the_secret_once(admin, svc):
    response = post(admin, "/admin/clients/new", GOOD_FORM)
    assert response.status_code == 302
    show = response.headers["Location"]
    assert re.match(r"^/admin/clients/portal/secret/[\w-]+$", show)
    row = client_row(svc, "portal")
    assert row.name == "Staff portal"
    assert row.meta["redirect_uris"] == [
        "https://portal.example.org/callback",
        "http://localhost:8080/cb",
    ]
    assert row.meta["access_token_lifetime"] == 600 and row.meta["require_pkce"] is True
    assert row.meta["require_pushed_authorization_requests"] is True
    assert row.meta["require_signed_request_object"] is False
    first = admin.get(show)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    html = first.get_data(as_text=True)
    secret = re.search(r'id="client_secret" readonly value="([^"]+)"', html).group(1)
    assert svc.hasher.verify(secret, row.secret_hash)
    assert "shown this once" in html
    second = admin.get(show)
    assert second.status_code == 410
    assert secret not in second.get_data(as_text=True)
    assert "already shown" in second.get_data(as_text=True)
    assert secret not in admin.get("/admin/clients/portal").get_data(as_text=True)
    assert "client.created" in audit_actions(svc)


def test_a_public_client_has_no_secret_to_show(admin, svc):
    form = dict(GOOD_FORM, client_id="spa", auth_method="none")
    response = post(admin, "/admin/clients/new", form)
    assert response.headers["Location"] == "/admin/clients/spa"
    assert client_row(svc, "spa").meta["token_endpoint_auth_method"] == "none"


@pytest.mark.parametrize(
    ("uris", "message"),
    [
        ("https://ok.example.org/cb\njavascript:alert(1)", "line 2:"),
        ("https://portal.example.org/cb#frag", "fragment"),
        ("http://portal.example.org/cb", "must"),
        ("", "redirect"),
    ],
)
def test_a_bad_redirect_uri_is_refused_beside_the_field(admin, svc, uris, message):
    before = (count(svc, Client), len(audit_actions(svc)))
    response = post(admin, "/admin/clients/new", dict(GOOD_FORM, redirect_uris=uris))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="redirect_uris-error">([^<]*)</p>', html)
    assert error and message in error.group(1), html[html.find("field-error") - 300 :][:800]
    assert 'id="redirect_uris" name="redirect_uris"' in html and 'aria-invalid="true"' in html
    assert (count(svc, Client), len(audit_actions(svc))) == before


def test_a_taken_client_id_and_bad_numbers_are_refused(admin, svc):
    make_client(svc, "portal")
    before = (count(svc, Client), len(audit_actions(svc)))
    taken = post(admin, "/admin/clients/new", GOOD_FORM)
    assert taken.status_code == 409 and 'id="client_id-error"' in taken.get_data(as_text=True)
    bad = post(
        admin, "/admin/clients/new", dict(GOOD_FORM, client_id="x y", access_token_lifetime="ten")
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'id="client_id-error"' in html and 'id="access_token_lifetime-error"' in html
    too_long = post(
        admin, "/admin/clients/new", dict(GOOD_FORM, client_id="new", access_token_lifetime="5")
    )
    assert too_long.status_code == 400
    assert 'id="access_token_lifetime-error"' in too_long.get_data(as_text=True)
    assert (count(svc, Client), len(audit_actions(svc))) == before


# --- edit, enable / disable, delete ----------------------------------------------------------


def test_edit_changes_the_metadata_through_the_validator(admin, svc):
    make_client(svc, "shop", name="Shop")
    form = admin.get("/admin/clients/shop/edit").get_data(as_text=True)
    assert "https://shop.example.org/cb" in form
    changed = dict(
        GOOD_FORM,
        name="Shop 2",
        redirect_uris="https://shop.example.org/cb2",
        post_logout_redirect_uris="",
        logo_uri="",
        access_token_lifetime="900",
    )
    response = post(admin, "/admin/clients/shop/edit", changed)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    row = client_row(svc, "shop")
    assert row.name == "Shop 2" and row.meta["redirect_uris"] == ["https://shop.example.org/cb2"]
    assert "post_logout_redirect_uris" not in row.meta and row.meta["access_token_lifetime"] == 900
    before = dict(row.meta)
    refused = post(admin, "/admin/clients/shop/edit", dict(changed, redirect_uris="ftp://x"))
    assert refused.status_code == 400
    assert 'id="redirect_uris-error"' in refused.get_data(as_text=True)
    emptied = post(admin, "/admin/clients/shop/edit", dict(changed, redirect_uris=""))
    assert emptied.status_code in (400, 409)
    assert 'id="redirect_uris-error"' in emptied.get_data(as_text=True)
    assert client_row(svc, "shop").meta == before


def test_disable_enable_and_delete_with_confirmation(admin, svc):
    make_client(svc, "shop")
    assert post(admin, "/admin/clients/shop/enabled", {"enabled": "0"}).status_code == 302
    assert client_row(svc, "shop").enabled is False
    assert "Disabled" in admin.get("/admin/clients/shop").get_data(as_text=True)
    post(admin, "/admin/clients/shop/enabled", {"enabled": "1"})
    assert client_row(svc, "shop").enabled is True
    page = admin.get("/admin/clients/shop/delete").get_data(as_text=True)
    assert "cannot be undone" in page
    wrong = post(admin, "/admin/clients/shop/delete", {"confirm": "shops"})
    assert wrong.status_code == 400 and client_row(svc, "shop") is not None
    done = post(admin, "/admin/clients/shop/delete", {"confirm": "shop"})
    assert done.status_code == 302 and client_row(svc, "shop") is None
    assert "client.deleted" in audit_actions(svc)
    assert admin.get("/admin/clients/shop").status_code == 404


# --- secret rotation -----------------------------------------------------------------------


def test_rotation_shows_the_new_secret_once_with_the_grace_period(admin, svc):
    old = make_client(svc, "shop")
    response = post(admin, "/admin/clients/shop/secret", {"grace_seconds": "3600"})
    assert response.status_code == 302
    show = response.headers["Location"]
    html = admin.get(show).get_data(as_text=True)
    secret = re.search(r'id="client_secret" readonly value="([^"]+)"', html).group(1)
    assert secret != old and "keeps working until" in html
    assert svc.hasher.verify(secret, client_row(svc, "shop").secret_hash)
    assert admin.get(show).status_code == 410
    # Another administrator cannot open the ticket either.
    make_admin(svc, "other")
    other = signed_in(admin.application, "other")
    assert other.get(show).status_code == 410
    assert "client.secret_rotated" in audit_actions(svc)


def test_rotation_refuses_a_bad_grace_period_and_a_public_client(admin, svc):
    old_hash = (make_client(svc, "shop"), client_row(svc, "shop").secret_hash)[1]
    before = len(audit_actions(svc))
    response = post(
        admin, "/admin/clients/shop/secret", {"grace_seconds": "99999999"}, follow_redirects=True
    )
    assert "grace_seconds" in response.get_data(as_text=True)
    assert client_row(svc, "shop").secret_hash == old_hash
    make_client(svc, "spa", auth_method="none")
    refused = post(
        admin, "/admin/clients/spa/secret", {"grace_seconds": "0"}, follow_redirects=True
    )
    assert "has no secret" in refused.get_data(as_text=True)
    assert len(audit_actions(svc)) == before + 1  # only the spa's creation


# --- service roles and claim rules ---------------------------------------------------------


def test_service_roles_are_set_from_the_checkboxes(admin, svc):
    make_client(svc, "robot", grant_types=["client_credentials"], redirect_uris=[])
    html = admin.get("/admin/clients/robot").get_data(as_text=True)
    assert 'name="roles" value="Auditor"' in html
    post(admin, "/admin/clients/robot/roles", {"roles": ["Auditor", "Helpdesk"]})
    assert count(svc, ClientServiceRole) == 2
    post(admin, "/admin/clients/robot/roles", {"roles": ["Auditor"]})
    assert count(svc, ClientServiceRole) == 1
    before = len(audit_actions(svc))
    unknown = post(admin, "/admin/clients/robot/roles", {"roles": ["Auditor", "Nobody"]})
    assert unknown.status_code == 302
    assert "no role" in admin.get(unknown.headers["Location"]).get_data(as_text=True)
    assert count(svc, ClientServiceRole) == 1 and len(audit_actions(svc)) == before
    with transaction(svc, Actor.operator()) as ctx:
        assert manage_clients.service_roles(ctx, "robot") == ["Auditor"]


def test_claim_rules_of_a_client_are_added_and_removed(admin, svc):
    make_client(svc, "shop")
    realm = count(svc, ClaimRule)
    added = post(
        admin,
        "/admin/clients/shop/rules",
        {"target": "dept", "source_type": "department", "scope": "profile", "enabled": "1"},
    )
    assert added.status_code == 302
    advanced = post(
        admin,
        "/admin/clients/shop/rules",
        {
            "rule_json": '{"target": "tier", "source": {"type": "static", "value": "gold"}}',
            "enabled": "1",
        },
    )
    assert advanced.status_code == 302
    assert count(svc, ClaimRule) == realm + 2
    html = admin.get("/admin/clients/shop").get_data(as_text=True)
    assert "<code>dept</code>" in html and "static: value=gold" in html
    assert 'Remove<span class="visually-hidden"> the rule for dept</span>' in html
    with svc.sessions() as db:
        rule_id = db.scalar(select(ClaimRule.id).where(ClaimRule.client_id == "shop"))
        realm_rule = db.scalar(select(ClaimRule.id).where(ClaimRule.client_id.is_(None)))
    # A realm rule cannot be removed through a client's page.
    assert post(admin, f"/admin/clients/shop/rules/{realm_rule}/delete").status_code == 404
    assert post(admin, f"/admin/clients/shop/rules/{rule_id}/delete").status_code == 302
    assert count(svc, ClaimRule) == realm + 1


def test_a_bad_claim_rule_is_refused_beside_the_field(admin, svc):
    make_client(svc, "shop")
    before = (count(svc, ClaimRule), len(audit_actions(svc)))
    for data, field in (
        ({"target": "x", "source_type": "attribute", "source_value": "password_hash"}, "form"),
        ({"target": "", "source_type": "groups"}, "target"),
        ({"rule_json": "{not json"}, "rule_json"),
        ({"rule_json": '{"target": "sub", "source": {"type": "groups"}}'}, "rule_json"),
    ):
        response = post(admin, "/admin/clients/shop/rules", data)
        assert response.status_code == 400, data
        html = response.get_data(as_text=True)
        assert (f'id="{field}-error"' in html) or (
            field == "form" and 'class="alert error"' in html
        )
    assert (count(svc, ClaimRule), len(audit_actions(svc))) == before


# --- who may ---------------------------------------------------------------------------------


def test_changes_need_the_csrf_token(admin, svc):
    make_client(svc, "shop")
    before = len(audit_actions(svc))
    response = admin.post("/admin/clients/shop/enabled", data={"enabled": "0"})
    assert response.status_code == 400
    new = admin.post("/admin/clients/new", data=GOOD_FORM)
    assert new.status_code == 400
    assert client_row(svc, "shop").enabled is True and client_row(svc, "portal") is None
    assert len(audit_actions(svc)) == before


def test_an_auditor_cannot_open_or_change_clients(app, svc):
    make_client(svc, "shop")
    make_admin(svc, "auditor", role="Auditor")
    auditor = signed_in(app, "auditor")
    auditor.csrf = console_csrf(auditor, "/account/")
    before = (count(svc, Client), len(audit_actions(svc)))
    assert auditor.get("/admin/clients").status_code == 403
    assert post(auditor, "/admin/clients/new", GOOD_FORM).status_code == 403
    assert post(auditor, "/admin/clients/shop/enabled", {"enabled": "0"}).status_code == 403
    assert post(auditor, "/admin/clients/shop/secret", {"grace_seconds": "0"}).status_code == 403
    assert post(auditor, "/admin/clients/shop/delete", {"confirm": "shop"}).status_code == 403
    assert (count(svc, Client), len(audit_actions(svc))) == before
    assert client_row(svc, "shop").enabled is True


def test_read_only_sees_but_cannot_change(app, svc):
    make_client(svc, "shop")
    make_admin(svc, "reader", role="Read-only")
    reader = signed_in(app, "reader")
    reader.csrf = console_csrf(reader, "/account/")
    html = reader.get("/admin/clients/shop").get_data(as_text=True)
    assert "Rotate secret" not in html and "/admin/clients/shop/edit" not in html
    assert reader.get("/admin/clients/shop/edit").status_code == 403
    assert post(reader, "/admin/clients/shop/secret", {"grace_seconds": "0"}).status_code == 403


def test_rules_between_members_are_shown_beside_the_field_they_name(admin, svc):
    before = count(svc, Client)
    no_keys = post(admin, "/admin/clients/new", dict(GOOD_FORM, auth_method="private_key_jwt"))
    assert no_keys.status_code == 400
    assert "needs jwks_uri or jwks" in no_keys.get_data(as_text=True)
    assert 'id="auth_method-error"' in no_keys.get_data(as_text=True)
    public_robot = post(
        admin,
        "/admin/clients/new",
        dict(GOOD_FORM, auth_method="none", grant_types=["client_credentials"], redirect_uris=""),
    )
    assert public_robot.status_code == 400
    assert "cannot use client_credentials" in public_robot.get_data(as_text=True)
    assert count(svc, Client) == before


def test_the_device_grant_is_offered_and_needs_no_redirect_uri(admin, svc):
    device = "urn:ietf:params:oauth:grant-type:device_code"
    assert f'value="{device}"' in admin.get("/admin/clients/new").get_data(as_text=True)
    form = dict(GOOD_FORM, client_id="tv", auth_method="none", grant_types=[device],
                redirect_uris="", post_logout_redirect_uris="")
    response = post(admin, "/admin/clients/new", form)
    assert response.headers["Location"] == "/admin/clients/tv"
    assert client_row(svc, "tv").meta["grant_types"] == [device]


def test_the_fapi_profile_is_chosen_in_the_form(admin, svc):
    """The security profile select (docs/oidc.md "FAPI 2.0 profile"): a client the profile
    forbids is refused beside the field the validator names, nothing stored; a private key JWT
    client takes it, the detail page shows it, and choosing none takes it off."""
    assert 'value="fapi2-security"' in admin.get("/admin/clients/new").get_data(as_text=True)
    before = (count(svc, Client), len(audit_actions(svc)))
    secret_client = post(admin, "/admin/clients/new", dict(GOOD_FORM,
                                                           fapi_profile="fapi2-security"))
    assert secret_client.status_code == 400
    html = secret_client.get_data(as_text=True)
    assert 'id="auth_method-error"' in html and "FAPI 2.0" in html
    unknown = post(admin, "/admin/clients/new", dict(GOOD_FORM, fapi_profile="fapi1"))
    assert unknown.status_code == 400
    assert 'id="fapi_profile-error"' in unknown.get_data(as_text=True)
    assert (count(svc, Client), len(audit_actions(svc))) == before
    form = dict(GOOD_FORM, auth_method="private_key_jwt", fapi_profile="fapi2-security",
                jwks_uri="https://portal.example.org/jwks")
    made = post(admin, "/admin/clients/new", form)
    assert made.headers["Location"] == "/admin/clients/portal", made.get_data(as_text=True)[:500]
    assert client_row(svc, "portal").meta["fapi_profile"] == "fapi2-security"
    assert "FAPI 2.0 Security Profile" in admin.get("/admin/clients/portal").get_data(as_text=True)
    off = post(admin, "/admin/clients/portal/edit", dict(form, fapi_profile=""))
    assert off.status_code == 302
    assert "fapi_profile" not in client_row(svc, "portal").meta


def test_an_mtls_client_is_created_from_the_form(admin, svc):
    """The dropdown offers both RFC 8705 methods; tls_client_auth needs the subject DN field
    (refused beside the method without it) and makes no secret."""
    page = admin.get("/admin/clients/new").get_data(as_text=True)
    assert 'value="tls_client_auth"' in page and 'value="self_signed_tls_client_auth"' in page
    form = dict(GOOD_FORM, client_id="robot", auth_method="tls_client_auth",
                grant_types=["client_credentials"], redirect_uris="",
                post_logout_redirect_uris="")
    before = count(svc, Client)
    refused = post(admin, "/admin/clients/new", form)
    assert refused.status_code == 400
    assert 'id="auth_method-error"' in refused.get_data(as_text=True)
    assert count(svc, Client) == before
    made = post(admin, "/admin/clients/new", dict(form, tls_client_auth_subject_dn="CN=robot"))
    assert made.headers["Location"] == "/admin/clients/robot", made.get_data(as_text=True)[:500]
    row = client_row(svc, "robot")
    assert row.meta["tls_client_auth_subject_dn"] == "CN=robot" and row.secret_hash is None
