"""WCAG 2.1 checks a machine can make on every hosted page, in English and in German: the page
declares its language (<html lang> = the selected locale, 3.1.1), every form control has a label
or an accessible name (1.3.1, 4.1.2), buttons have names, images have alt text, ids are unique
and aria references point somewhere. Pages come from a real app over its HTTP interface, with
form errors shown, plus the OIDC/SAML templates rendered as their views render them."""

from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import urlsplit

import lxml.html
import pytest
from login_kit import GOOD, link_in, login, make_user, outbox, post_form

from idp.storage.models import Company

LANGS = {"en": "en", "de": "de"}
NOT_LABELLED = {"hidden", "submit", "button", "reset", "image"}


def _text(el) -> str:
    return re.sub(r"\s+", " ", el.text_content() or "").strip()


def problems(html: str, lang: str) -> list[str]:
    """Everything on one page that breaks the checks above (empty when the page is fine)."""
    doc = lxml.html.document_fromstring(html)
    found: list[str] = []
    if doc.get("lang") != lang:
        found.append(f"<html lang={doc.get('lang')!r}>, expected {lang!r}")
    title = doc.find(".//title")
    if title is None or not _text(title):
        found.append("no <title>")
    ids = [el.get("id") for el in doc.iter() if isinstance(el.tag, str) and el.get("id")]
    found += [f"duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    by_id = {el.get("id"): el for el in doc.iter() if isinstance(el.tag, str) and el.get("id")}
    labels_for = {label.get("for"): _text(label) for label in doc.iter("label") if label.get("for")}
    for el in doc.iter("input", "select", "textarea"):
        kind = (el.get("type") or "text").lower() if el.tag == "input" else el.tag
        name = el.get("name") or el.get("id") or el.tag
        if kind in ("submit", "button", "reset"):
            if not (el.get("value") or el.get("aria-label")):
                found.append(f"button {name!r} without a name")
            continue
        if kind in NOT_LABELLED:
            continue
        named = (
            labels_for.get(el.get("id") or "\0")
            or any(_text(a) for a in el.iterancestors("label"))
            or (el.get("aria-label") or "").strip()
            or any(_text(by_id[i]) for i in (el.get("aria-labelledby") or "").split() if i in by_id)
        )
        if not named:
            found.append(f"{el.tag} {name!r} has no label")
    for el in doc.iter("button"):
        if not (_text(el) or el.get("aria-label")):
            found.append("<button> without text")
    for el in doc.iter("img"):
        if el.get("alt") is None:
            found.append(f"<img src={el.get('src')!r}> without alt")
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in ("aria-describedby", "aria-labelledby"):
            for ref in (el.get(attr) or "").split():
                if ref not in by_id:
                    found.append(f"{attr}={ref!r} points nowhere")
    for label in doc.iter("label"):
        target = label.get("for")
        if target and target not in by_id:
            found.append(f"<label for={target!r}> points nowhere")
    return found


def test_the_checker_finds_what_it_should():
    """The checker itself: each rule fires on a page that breaks it."""
    bad = """<!doctype html><html lang="en"><head><title>x</title></head><body>
      <label for="missing">Ghost</label>
      <input id="a" name="a"><input id="a" name="b" type="email" aria-describedby="nope">
      <select name="s"></select><input type="submit"><button></button><img src="/x.png">
      <label>Wrapped <input name="ok"></label><input name="t" aria-label="Fine">
    </body></html>"""
    got = problems(bad, "de")
    assert "<html lang='en'>, expected 'de'" in got
    assert "duplicate id 'a'" in got
    assert "input 'a' has no label" in got and "input 'b' has no label" in got
    assert "select 's' has no label" in got
    assert "button 'input' without a name" in got and "<button> without text" in got
    assert "<img src='/x.png'> without alt" in got
    assert "aria-describedby='nope' points nowhere" in got
    assert "<label for='missing'> points nowhere" in got
    assert not any("'ok'" in p or "'t'" in p for p in got)


# --- the pages ----------------------------------------------------------------------------------

NEW = "Fresh-Cactus-Lamp-42"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One app with every optional page switched on, and the links a visitor gets by mail."""
    from support import base_overrides, init_database

    from idp.app import create_app
    from idp.web.password import set_control_word

    instance = tmp_path_factory.mktemp("a11y") / "instance"
    instance.mkdir()
    overrides = base_overrides(
        instance,
        issuer="https://id.example.org",
        registration={
            "enabled": True,
            "require_approval": True,
            "require_email_verification": True,
            "admin_emails": ["boss@example.org"],
        },
        recovery={"security_questions": True},
    )
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    make_user(svc, "ann", given_name="Ann")
    make_user(svc, "forced", must_change_password=True)
    with svc.sessions.begin() as db:
        company = Company(slug="acme", name="Acme", names={})
        db.add(company)
        db.flush()
        with app.app_context():
            set_control_word(db, company, "Blue Harbour")
        cid = company.id
    make_user(svc, "newbie", password=None, company_id=cid)

    def path_of(link: str) -> str:
        return urlsplit(link).path

    client = app.test_client()
    post_form(client, "/password/reset", {"email": "ann@example.org"})
    reset = path_of(link_in(outbox(svc)[-1], "/password/reset/"))
    post_form(
        client, "/login/first", {"email": "newbie@example.org", "control_word": "blue harbour"}
    )
    magic = path_of(link_in(outbox(svc)[-1], "/login/magic/"))
    form = {"username": "reg1", "email": "reg1@example.org", "new_password": NEW, "confirm": NEW}
    post_form(client, "/register", form)
    verify = path_of(link_in(outbox(svc)[-1], "/verify-email/"))
    post_form(client, verify, {})
    approve = path_of(link_in(outbox(svc)[-1], "/register/approve/"))
    # A second registration whose confirmation link stays unused, for the confirmation page.
    post_form(client, "/register", dict(form, username="reg2", email="reg2@example.org"))
    verify = path_of(link_in(outbox(svc)[-1], "/verify-email/"))
    yield SimpleNamespace(app=app, svc=svc, links=[reset, magic, verify, approve])
    svc.engine.dispose()


ANONYMOUS = [
    "/login",
    "/password/reset",
    "/login/first",
    "/register",
    "/logout",
    "/no-such-page",
]
SIGNED_IN = [
    "/account/",
    "/account/password",
    "/account/sessions",
    "/account/activity",
    "/account/apps",
    "/account/mfa",
    "/account/security-questions",
    "/logout",
]


def _get(client, path: str, lang: str) -> str:
    resp = client.get(path, headers={"Accept-Language": lang})
    assert resp.status_code in (200, 404), (path, resp.status_code)
    assert resp.mimetype == "text/html"
    return resp.get_data(as_text=True)


@pytest.mark.parametrize("lang", LANGS)
def test_anonymous_and_mailed_link_pages(site, lang):
    client = site.app.test_client()
    pages = {path: _get(client, path, lang) for path in ANONYMOUS + site.links}
    for path, html in pages.items():
        assert problems(html, LANGS[lang]) == [], path
    assert len(pages) == len(ANONYMOUS) + 4


@pytest.mark.parametrize("lang", LANGS)
def test_pages_showing_form_errors(site, lang):
    """Error states add alerts and aria-describedby; they must keep every control labelled."""
    headers = {"Accept-Language": lang}
    client = site.app.test_client()
    failed_login = login(client, "ann", "wrong-password")
    assert failed_login.status_code == 401
    bad_register = post_form(
        client, "/register", {"username": "a b", "email": "not-an-address"}, headers=headers
    )
    # The reset takes a username or an address: only an empty entry is refused.
    bad_reset = post_form(client, "/password/reset", {"email": ""}, headers=headers)
    assert bad_register.status_code == 400 and bad_reset.status_code == 400
    assert 'aria-invalid="true"' in bad_register.get_data(as_text=True)
    for resp in (bad_register, bad_reset):
        assert problems(resp.get_data(as_text=True), LANGS[lang]) == []
    # The login page language follows the request, so ask for it in the wanted language.
    relogin = post_form(client, "/login", {"username": "ann", "password": "x"}, headers=headers)
    assert relogin.status_code == 401
    assert problems(relogin.get_data(as_text=True), LANGS[lang]) == []


@pytest.mark.parametrize("lang", LANGS)
def test_signed_in_pages(site, lang):
    # A second session, so the sessions page lists several rows (each with its own form).
    assert login(site.app.test_client(), "ann", GOOD).status_code == 302
    client = site.app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    for path in SIGNED_IN:
        assert problems(_get(client, path, lang), LANGS[lang]) == [], path


@pytest.mark.parametrize("lang", LANGS)
def test_login_step_pages(site, lang):
    client = site.app.test_client()
    assert login(client, "forced", GOOD).status_code == 302
    html = _get(client, "/login/step", lang)
    assert 'name="new_password"' in html
    assert problems(html, LANGS[lang]) == []


@pytest.mark.parametrize("lang", LANGS)
def test_oidc_and_saml_templates(site, lang):
    from flask import render_template

    from idp.web.oidc.consent import SCOPE_WORDS, ConsentForm
    from idp.web.oidc.logout import LogoutForm

    with site.app.test_request_context("/", headers={"Accept-Language": lang}):
        pages = {
            "consent": render_template(
                "consent.html",
                form=ConsentForm(),
                client=SimpleNamespace(name="Wiki"),
                logo="https://wiki.example/logo.png",
                policy_uri="https://wiki.example/privacy",
                tos_uri="https://wiki.example/terms",
                scopes=[(s, w) for s, w in SCOPE_WORDS.items()],
            ),
            "logout_confirm": render_template(
                "logout_confirm.html", form=LogoutForm(), client_name="Wiki"
            ),
            "logged_out": render_template(
                "logged_out.html", frames=["https://rp.example/fc"], target="https://rp.example/"
            ),
            "form_post": render_template(
                "form_post.html", action="https://rp.example/cb", fields=[("code", "x")]
            ),
            "saml_post": render_template(
                "saml_post.html", action="https://sp.example/acs", field="SAMLResponse", value="x"
            ),
            "saml_logout": render_template("saml_logout.html", done=False, token="t"),
            "saml_logged_out": render_template("saml_logout.html", done=True, partial=True),
        }
    for name, html in pages.items():
        assert problems(html, LANGS[lang]) == [], name


def test_mails_declare_their_language(site):
    """The HTML part of every mail sent while building the site carries the reader's language."""
    sent = outbox(site.svc)
    assert len(sent) >= 5  # reset, magic link, two confirmations, approval request
    for msg in sent:
        html = msg.get_body(preferencelist=("html",)).get_content()
        assert re.search(r'<html lang="(en|de)"', html), msg["Subject"]
