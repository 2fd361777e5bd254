"""Pages kept rendered (idp.web.kept): the login form and the SAML POST page are rendered once per
language and shape, and each request's values are put in escaped. Each browser still gets its
own CSRF token, hostile values come back escaped, flashed messages are still shown, and an
operator's template that uses a value where a marker cannot stand is rendered every time."""

from __future__ import annotations

import re
from html import unescape

from login_kit import GOOD, csrf, make_user

from idp.core.authn import AuthnRequest
from idp.web.sso import sessions

HOSTILE = "\"'><script>alert(1)</script>&amp;"


def _pending_request(app, login_hint: str) -> str:
    with app.test_request_context("/"):
        req = AuthnRequest(protocol="oidc", resume_url="/resume?r={rid}", login_hint=login_hint)
        return sessions().save_request(req)


def _value(html: str, name: str) -> str | None:
    m = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    return unescape(m.group(1)) if m else None


def test_each_browser_gets_its_own_token_and_can_sign_in(make_app):
    app = make_app()
    make_user(app.extensions["idp"], "ann")
    tokens = set()
    for _ in range(3):  # the first renders and keeps the page, the others fill it in
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = csrf(page)
        tokens.add(token)
        assert "\x00" not in page  # (the token is in the form and the passkey block)
        data = {"csrf_token": token, "username": "ann", "password": GOOD}
        resp = client.post("/login", data=data)
        assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert len(tokens) == 3
    # Another browser's token is refused: the kept page carries nobody's token.
    stranger = app.test_client()
    resp = stranger.post("/login", data={"csrf_token": tokens.pop(), "username": "ann",
                                         "password": GOOD})
    assert resp.status_code == 400


def test_hostile_login_hint_and_request_id_are_escaped(make_app):
    app = make_app()
    for _ in range(2):
        rid = _pending_request(app, HOSTILE)
        page = app.test_client().get(f"/login?r={rid}").get_data(as_text=True)
        assert "<script>alert" not in page
        assert _value(page, "username") == HOSTILE and _value(page, "r") == rid
    # Without a hint the field is empty and has the focus.
    page = app.test_client().get("/login").get_data(as_text=True)
    assert _value(page, "username") in (None, "")
    assert re.search(r'<input[^>]*autofocus[^>]*name="username"', page)


def test_flashed_messages_are_still_shown(make_app):
    app = make_app()
    client = app.test_client()
    client.get("/login")  # the kept page exists
    with client.session_transaction() as s:
        s["_flashes"] = [("success", "Your password was changed.")]
    page = client.get("/login").get_data(as_text=True)
    assert "Your password was changed." in page
    assert "Your password was changed." not in client.get("/login").get_data(as_text=True)


def test_pages_are_kept_per_language(make_app):
    app = make_app(branding={"languages": ["en", "de"]})
    for _ in range(2):
        de = app.test_client().get("/login", headers={"Accept-Language": "de"})
        en = app.test_client().get("/login", headers={"Accept-Language": "en"})
        assert '<html lang="de"' in de.get_data(as_text=True)
        assert '<html lang="en"' in en.get_data(as_text=True)
        assert ">Anmelden<" in de.get_data(as_text=True)


def _app_with_login_override(make_app, instance_dir, html: str):
    """An app whose operator overrides login.html with ``html``, and the user "ann"."""
    override = instance_dir / "templates"
    override.mkdir(parents=True)
    (override / "login.html").write_text(html)
    app = make_app()
    make_user(app.extensions["idp"], "ann")
    return app


def test_an_override_using_a_value_in_a_url_is_rendered_every_time(make_app, instance_dir):
    """An operator's login.html that puts the request id into a link (URL-encoded: no marker
    can stand there) still gets correct pages: it is not kept."""
    app = _app_with_login_override(
        make_app,
        instance_dir,
        '<form method="post"><input name="csrf_token" type="hidden" value="{{ csrf_value }}">'
        "{{ form.r }}{{ form.username }}{{ form.password }}</form>"
        "<a href=\"{{ url_for('login.login', r=form.r.data) }}\">again</a>",
    )
    seen = []
    for _ in range(2):
        rid = _pending_request(app, "ann")
        client = app.test_client()
        page = client.get(f"/login?r={rid}").get_data(as_text=True)
        assert f"/login?r={rid}" in page and "%00" not in page and "\x00" not in page
        seen.append(csrf(page))
        resp = client.post(
            "/login", data={"csrf_token": seen[-1], "r": rid, "username": "ann", "password": GOOD}
        )
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/resume?r=")
    assert seen[0] != seen[1]
    assert app.extensions["idp"].kept_pages and not any(
        app.extensions["idp"].kept_pages.values()
    )


def test_an_override_with_the_forms_own_token_field_still_signs_in(make_app, instance_dir):
    """An operator's login.html written for ``{{ form.csrf_token }}`` (not ``csrf_value``) gets
    each browser's own token in that field, from the kept page too."""
    app = _app_with_login_override(
        make_app,
        instance_dir,
        '<form method="post">{{ form.csrf_token }}{{ form.r }}{{ form.next }}'
        "{{ form.username }}{{ form.password }}</form>",
    )
    tokens = []
    for _ in range(3):
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        tokens.append(csrf(page))
        resp = client.post(
            "/login", data={"csrf_token": tokens[-1], "username": "ann", "password": GOOD}
        )
        assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    assert len(set(tokens)) == 3


def test_pages_are_kept_per_mount_point(make_app):
    """Served under two prefixes (SCRIPT_NAME), each page links under its own."""
    app = make_app()
    for _ in range(2):
        for root in ("", "/idp"):
            page = app.test_client().get(
                "/login", base_url=f"http://localhost{root}"
            ).get_data(as_text=True)
            assert f'href="{root}/login/first"' in page
