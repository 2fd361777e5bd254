"""The design system's frame (idp/web/assets.py, idp/web/ui.py, idp/web/devices.py): files served
versioned and cached, branding colours laid over the light theme without a way to inject CSS,
the signed-in person in the header, readable device names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from login_kit import GOOD, login, make_user

from idp.web.devices import describe
from idp.web.ui import branding_css


def test_pages_link_the_versioned_stylesheet_script_and_favicon(app):
    html = app.test_client().get("/login").get_data(as_text=True)
    for name in ("idp.css", "idp.js", "favicon.svg"):
        assert f"/assets/{name}?v=" in html


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("idp.css", "text/css"), ("idp.js", "text/javascript"), ("favicon.svg", "image/svg+xml")],
)
def test_assets_are_served_with_a_long_cache_lifetime(app, name, mimetype):
    response = app.test_client().get(f"/assets/{name}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "max-age=86400" in response.headers["Cache-Control"]


@pytest.mark.parametrize("name", ["../app.py", "webauthn.js", "idp.css.map", "%2e%2e%2fapp.py"])
def test_only_the_listed_assets_are_served(app, name):
    assert app.test_client().get(f"/assets/{name}").status_code == 404


def test_favicon_ico_answers_with_the_svg(app):
    response = app.test_client().get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"


def test_branding_colours_override_the_light_theme_only():
    css = branding_css(
        SimpleNamespace(primary_color="#aa0000", background_color="#f5f6f8", text_color="")
    )
    assert "--primary: #aa0000;" in css
    assert "--bg" not in css  # the design system's own value changes nothing
    assert "prefers-color-scheme: dark" in css  # scoped away from the dark theme
    assert branding_css(SimpleNamespace(primary_color="#1d4ed8")) == ""


@pytest.mark.parametrize(
    "value",
    ["red; } body { display:none", "#12345g", "url(javascript:x)", "#1234567", "</style><script>"],
)
def test_a_branding_colour_that_is_not_hex_is_ignored(value):
    assert branding_css(SimpleNamespace(primary_color=value)) == ""


def test_the_branding_block_reaches_the_page(make_app):
    app = make_app(branding={"primary_color": "#7c2d12"})
    assert "--primary: #7c2d12;" in app.test_client().get("/login").get_data(as_text=True)


def test_the_header_names_the_signed_in_person(app):
    make_user(app.extensions["idp"], "ada", given_name="Ada", family_name="Lovelace")
    client = app.test_client()
    assert "Ada Lovelace" not in client.get("/login").get_data(as_text=True)
    login(client, "ada", GOOD)
    html = client.get("/account/").get_data(as_text=True)
    assert "Signed in as" in html and "Ada Lovelace" in html and ">AL<" in html


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome 120 on Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mobile Safari 17 on iPhone",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox 121 on Windows 10",
        ),
        ("", "Unknown device"),
        ("\x00\x01garbage", "Unknown device"),
    ],
)
def test_device_names_are_readable(app, agent, name):
    with app.test_request_context():
        assert describe(agent).name == name
