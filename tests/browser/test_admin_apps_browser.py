"""The applications screens of the console in real headless Chromium against a real HTTP
server: create an OIDC client and see its secret once, rotate it (confirming the dialog), add a
SAML SP by uploading its metadata; every page checked with axe-core in light and dark, and at
390 px wide without sideways scrolling. One server and one browser for the whole module;
screenshots go to artifacts/browser/admin-apps-*.png."""

from __future__ import annotations

import pytest
from admin_kit import make_admin
from browser_kit import (
    NARROW,
    WIDE,
    axe_violations,
    chromium,
    running_server,
    scrolls_sideways,
    shot,
    sign_in,
)

from idp.web.api.saml_providers import provider_id

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SP = "https://wiki.example.org/shibboleth"
SP_METADATA = (
    f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{SP}">'
    '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
    '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
    'Location="https://wiki.example.org/Shibboleth.sso/SAML2/POST" index="1"/>'
    "</md:SPSSODescriptor></md:EntityDescriptor>"
).encode()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(app, base URL) served on a loopback port for the whole module."""
    with running_server(tmp_path_factory.mktemp("apps-instance")) as (app, base):
        make_admin(app.extensions["idp"])
        yield app, base


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def signed_in_state(site, chromium):
    """The cookies of an administrator who signed in through the login page."""
    _app, base = site
    context = chromium.new_context(locale="en-US")
    sign_in(context.new_page(), base, "root")
    state = context.storage_state()
    context.close()
    return state


def open_page(chromium, state, *, viewport=WIDE, dark=False):
    context = chromium.new_context(
        viewport=viewport,
        color_scheme="dark" if dark else "light",
        locale="en-US",
        storage_state=state,
    )
    return context.new_page()


def test_create_a_client_see_the_secret_once_and_rotate_it(site, chromium, signed_in_state):
    _app, base = site
    page = open_page(chromium, signed_in_state)
    page.goto(base + "/admin/clients")
    assert "No OIDC clients yet." in page.content()
    page.get_by_role("link", name="New client").first.click()
    page.get_by_label("Client ID (optional)").fill("portal")
    page.get_by_label("Name", exact=True).fill("Staff portal")
    # A bad redirect URI is refused beside the field first.
    page.get_by_label("Redirect URIs", exact=True).fill("javascript:alert(1)")
    page.get_by_role("button", name="Create client").click()
    error = page.locator("#redirect_uris-error")
    assert error.is_visible()
    assert page.get_by_label("Redirect URIs", exact=True).get_attribute("aria-invalid") == "true"
    shot(page, "admin-apps-client-form-error")
    assert axe_violations(page) == []
    page.get_by_label("Redirect URIs", exact=True).fill("https://portal.example.org/callback")
    page.get_by_role("button", name="Create client").click()
    page.wait_for_url("**/admin/clients/portal/secret/**")
    secret = page.get_by_label("Client secret").input_value()
    assert len(secret) > 30 and "shown this once" in page.content()
    shot(page, "admin-apps-client-secret-once")
    assert axe_violations(page) == []
    page.reload()
    assert secret not in page.content() and "already shown" in page.content()
    page.get_by_role("link", name="Back to the client").click()
    page.wait_for_url(base + "/admin/clients/portal")
    shot(page, "admin-apps-client-detail")
    assert axe_violations(page) == []
    page.get_by_label("Keep the old secret working for").select_option("3600")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate secret").click()
    page.wait_for_url("**/admin/clients/portal/secret/**")
    rotated = page.get_by_label("Client secret").input_value()
    assert rotated != secret and "keeps working until" in page.content()
    page.goto(base + "/admin/clients")
    assert "Staff portal" in page.content()
    shot(page, "admin-apps-clients-list")
    assert axe_violations(page) == []
    page.context.close()


def test_add_an_sp_by_uploading_its_metadata(site, chromium, signed_in_state):
    _app, base = site
    page = open_page(chromium, signed_in_state)
    page.goto(base + "/admin/saml/new")
    shot(page, "admin-apps-saml-new")
    assert axe_violations(page) == []
    page.get_by_label("Metadata file").set_input_files(
        {"name": "sp.xml", "mimeType": "application/xml", "buffer": b"<html/>"}
    )
    page.get_by_role("button", name="Add service provider").click()
    assert page.locator("#metadata_file-error").is_visible()
    page.get_by_label("Metadata file").set_input_files(
        {"name": "sp.xml", "mimeType": "application/xml", "buffer": SP_METADATA}
    )
    page.get_by_label("NameID format").select_option("email")
    page.get_by_role("button", name="Add service provider").click()
    page.wait_for_url(base + f"/admin/saml/sp/{provider_id(SP)}")
    assert SP in page.content()
    shot(page, "admin-apps-saml-detail")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Edit settings").click()
    page.get_by_label("Display name").fill("Team wiki")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url(base + f"/admin/saml/sp/{provider_id(SP)}")
    assert "Team wiki" in page.content()
    page.goto(base + "/admin/saml")
    shot(page, "admin-apps-saml-list")
    assert axe_violations(page) == []
    page.goto(base + "/admin/saml/federations")
    shot(page, "admin-apps-federations")
    assert axe_violations(page) == []
    page.context.close()


PAGES = (
    "/admin/clients",
    "/admin/clients/new",
    "/admin/clients/portal",
    "/admin/saml",
    f"/admin/saml/sp/{provider_id(SP)}",
    f"/admin/saml/sp/{provider_id(SP)}/settings",
)


def test_dark_mode_and_a_narrow_screen(site, chromium, signed_in_state):
    _app, base = site
    dark = open_page(chromium, signed_in_state, dark=True)
    narrow = open_page(chromium, signed_in_state, viewport=NARROW)
    for path in PAGES:
        dark.goto(base + path)
        assert dark.url.endswith(path), dark.url
        assert axe_violations(dark) == [], path
        narrow.goto(base + path)
        assert not scrolls_sideways(narrow), path
    shot(dark, "admin-apps-dark-saml-settings")
    narrow.goto(base + "/admin/clients/portal")
    shot(narrow, "admin-apps-narrow-client")
    narrow.goto(base + "/admin/saml")
    shot(narrow, "admin-apps-narrow-saml-list")
    dark.context.close()
    narrow.context.close()
