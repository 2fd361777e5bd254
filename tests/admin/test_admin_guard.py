"""Who may open /admin/: a signed-in user holding console:admin:access, from an allowed network,
with the CSRF token on every change (idp/web/admin/guard.py)."""

from __future__ import annotations

import pytest
from admin_kit import make_admin, signed_in
from login_kit import make_user

from idp.errors import ConfigError


@pytest.fixture
def admin_client(app):
    make_admin(app.extensions["idp"])
    return signed_in(app)


def test_signed_out_visitor_is_sent_to_the_login(app):
    response = app.test_client().get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/admin/")


def test_user_without_the_console_permission_is_refused(app):
    make_user(app.extensions["idp"], "plain")
    client = signed_in(app, "plain")
    response = client.get("/admin/")
    assert response.status_code == 403
    assert "Reference" in response.get_data(as_text=True)
    assert 'href="/admin/' not in client.get("/account/").get_data(as_text=True)


@pytest.mark.parametrize("template", ["Administrator", "Helpdesk", "Auditor", "Read-only"])
def test_every_administering_template_opens_the_console(app, template):
    make_admin(app.extensions["idp"], "op", role=template)
    response = signed_in(app, "op").get("/admin/")
    assert response.status_code == 200
    assert "Dashboard" in response.get_data(as_text=True)


def test_the_sidebar_shows_only_what_the_role_may_open(app):
    make_admin(app.extensions["idp"], "auditor", role="Auditor")
    html = signed_in(app, "auditor").get("/admin/").get_data(as_text=True)
    assert 'href="/admin/"' in html
    assert "/admin/settings" not in html
    assert "/admin/clients" not in html


def test_the_account_area_links_to_the_console_for_administrators(admin_client):
    assert 'href="/admin/"' in admin_client.get("/account/").get_data(as_text=True)


def test_networks_outside_the_allowlist_are_refused_before_sign_in(make_app):
    app = make_app(admin={"allowed_networks": ["10.0.0.0/8"]})
    make_admin(app.extensions["idp"])
    response = app.test_client().get("/admin/")  # the test client comes from 127.0.0.1
    assert response.status_code == 403
    inside = make_app(admin={"allowed_networks": ["127.0.0.0/8", "::1"]})
    make_admin(inside.extensions["idp"], "root2")
    assert signed_in(inside, "root2").get("/admin/").status_code == 200


def test_a_malformed_network_is_a_configuration_error(make_app):
    with pytest.raises(ConfigError, match="admin.allowed_networks"):
        make_app(admin={"allowed_networks": ["not-a-network"]})


@pytest.mark.parametrize(("error", "status"), [("Forbidden", 403), ("NotFound", 404)])
def test_a_refused_management_operation_on_a_page_is_a_human_error_page(app, error, status):
    from idp import errors

    def refuse():
        raise getattr(errors, error)("permission users:accounts:delete is required for this")

    app.add_url_rule("/x-refused", "x_refused", refuse)
    response = app.test_client().get("/x-refused")
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert "Reference" in html and "Traceback" not in html
