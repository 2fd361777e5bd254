"""The console's client form sets the RFC 8693 token exchange policy with plain fields (lists
one per line, check boxes, a lifetime); the API's validation refuses a bad one beside its
field with nothing stored, and emptying every field removes the policy."""

from __future__ import annotations

import pytest
from admin_kit import console_csrf, make_admin, signed_in

from idp.core.client_metadata import TOKEN_EXCHANGE
from idp.storage.models import Client

FORM = {
    "client_id": "orders",
    "name": "Orders API",
    "auth_method": "client_secret_basic",
    "grant_types": [TOKEN_EXCHANGE, "client_credentials"],
    "scope": "openid email",
    "te_accept_from": "portal\nweb",
    "te_audiences": "https://orders.example.org/",
    "te_delegation": "1",
    "te_max_lifetime": "300",
}


@pytest.fixture
def svc(app):
    return app.extensions["idp"]


@pytest.fixture
def admin(app, svc):
    make_admin(svc)
    client = signed_in(app)
    client.csrf = console_csrf(client, "/admin/clients/new")
    return client


def _post(client, url, data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def _meta(svc, client_id="orders"):
    with svc.sessions() as db:
        row = db.get(Client, client_id)
        return None if row is None else dict(row.meta)


def test_the_form_sets_shows_and_removes_the_policy(admin, svc):
    assert _post(admin, "/admin/clients/new", FORM).status_code == 302
    assert _meta(svc)["token_exchange"] == {
        "accept_from": ["portal", "web"], "audiences": ["https://orders.example.org/"],
        "delegation": True, "max_lifetime": 300}
    page = admin.get("/admin/clients/orders").get_data(as_text=True)
    assert "Token exchange (RFC 8693)" in page and "portal, web" in page
    form = admin.get("/admin/clients/orders/edit").get_data(as_text=True)
    assert "portal\nweb</textarea>" in form
    edited = dict(FORM, te_delegation="", te_impersonation="1", te_max_lifetime="")
    assert _post(admin, "/admin/clients/orders/edit", edited).status_code == 302
    assert _meta(svc)["token_exchange"] == {
        "accept_from": ["portal", "web"], "audiences": ["https://orders.example.org/"],
        "impersonation": True}
    emptied = dict(FORM, te_accept_from="", te_audiences="", te_delegation="",
                   te_max_lifetime="")
    assert _post(admin, "/admin/clients/orders/edit", emptied).status_code == 302
    assert "token_exchange" not in _meta(svc)


@pytest.mark.parametrize("field, value", [
    ("te_max_lifetime", "5"),
    ("te_max_lifetime", "soon"),
    ("te_accept_from", "has space"),
])
def test_a_bad_policy_is_refused_beside_its_field(admin, svc, field, value):
    response = _post(admin, "/admin/clients/new", dict(FORM, **{field: value}))
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.get_data(as_text=True)
    assert _meta(svc) is None
