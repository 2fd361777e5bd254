"""Translations: the German catalog is complete, current with the sources and compiled; pages
follow the profile language, then the relying party's ui_locales, then Accept-Language (only
configured languages); mails go out in the recipient's language."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from login_kit import GOOD, csrf, login, make_user, outbox, post_form, text_of, user_row

from idp.core.authn import AuthnRequest
from idp.sso.sessions import SessionManager

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "idp" / "translations"
LANGUAGES = ["de"]


def _lang(html: str) -> str:
    m = re.search(r"<html[^>]*\blang=\"([^\"]*)\"", html)
    assert m, "page without <html lang>"
    return m.group(1)


def _read_po(lang: str):
    from babel.messages.pofile import read_po

    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f)


def _key(message) -> str | tuple[str, ...]:
    return message.id if isinstance(message.id, str) else tuple(message.id)


def _string(message) -> str | tuple[str, ...]:
    return message.string if isinstance(message.string, str) else tuple(message.string)


# --- the catalogs -------------------------------------------------------------------------------


def _extracted() -> set:
    """What pybabel extracts from the sources today, with the project's babel.cfg."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, msgid, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(msgid if isinstance(msgid, str) else tuple(msgid))
    return found


def test_sources_and_catalogs_agree():
    """Every wrapped string of idp/ and templates/ is in every catalog, nothing stale remains."""
    extracted = _extracted()
    assert len(extracted) > 200
    for lang in LANGUAGES:
        in_catalog = {_key(m) for m in _read_po(lang) if m.id}
        assert extracted - in_catalog == set(), f"{lang}: run pybabel update (docs/login.md)"
        assert in_catalog - extracted == set(), f"{lang}: obsolete messages, run pybabel update"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalog_complete_without_fuzzy_and_placeholders_kept(lang):
    catalog = _read_po(lang)
    untranslated, fuzzy = [], []
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if not all(strings):
            untranslated.append(m.id)
        if m.fuzzy:
            fuzzy.append(m.id)
        # Every %(name)s of the original survives the translation (a missing one is a KeyError
        # at render time only in that language).
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        wanted = set(re.findall(r"%\((\w+)\)s", " ".join(ids)))
        for s in strings:
            assert set(re.findall(r"%\((\w+)\)s", s)) == wanted, m.id
            assert s.count("%%") == ids[0].count("%%"), m.id
        # A copy of the English is a forgotten message, except words German shares.
        if m.string == m.id and m.id not in {"Code", "Name", "Position"}:
            untranslated.append(m.id)
    assert untranslated == [] and fuzzy == []
    assert not catalog.fuzzy


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_source(lang):
    """The committed .mo is what `pybabel compile` makes of the committed .po."""
    from babel.messages.mofile import read_mo

    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = {_key(m): _string(m) for m in read_mo(f) if m.id}
    source = {_key(m): _string(m) for m in _read_po(lang) if m.id}
    assert compiled == source, "run: pybabel compile -d idp/translations"


# --- page language ------------------------------------------------------------------------------


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.mark.parametrize(
    ("header", "lang", "words"),
    [
        ("de", "de", ["Anmelden", "Passwort vergessen?", "Benutzername oder E-Mail"]),
        ("de-CH,de;q=0.9,en;q=0.5", "de", ["Anmelden", "Zum Inhalt springen"]),
        ("en-GB,en;q=0.8,de;q=0.5", "en", ["Sign in", "Forgot password?"]),
        ("fr-FR,fr;q=0.9", "en", ["Sign in"]),  # not offered: the default language
    ],
)
def test_accept_language_picks_page_language(app, header, lang, words):
    resp = app.test_client().get("/login", headers={"Accept-Language": header})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and _lang(html) == lang
    for word in words:
        assert word in html


def test_only_configured_languages_are_used(make_app):
    app = make_app(branding={"languages": ["en"]})
    html = app.test_client().get("/login", headers={"Accept-Language": "de"}).get_data(True)
    assert _lang(html) == "en" and "Forgot password?" in html and "Anmelden" not in html


def test_default_language_is_the_first_configured(make_app):
    app = make_app(branding={"languages": ["de", "en"]})
    html = app.test_client().get("/login").get_data(as_text=True)
    assert _lang(html) == "de" and "Passwort vergessen?" in html


def test_german_profile_wins_over_an_english_browser(app, svc):
    make_user(svc, "greta", locale="de")
    client = app.test_client()
    english = {"Accept-Language": "en"}
    assert login(client, "greta", GOOD).status_code == 302
    html = client.get("/account/profile", headers=english).get_data(as_text=True)
    assert _lang(html) == "de" and "Ihr Profil" in html and "Profil speichern" in html
    html = client.get("/account/password", headers=english).get_data(as_text=True)
    assert _lang(html) == "de" and "Aktuelles Passwort" in html
    # Pages that do not load the user themselves still find the language through the session.
    html = client.get("/logout", headers=english).get_data(as_text=True)
    assert _lang(html) == "de" and "Abmelden?" in html


def test_english_profile_wins_over_a_german_browser(app, svc):
    make_user(svc, "eric", locale="en")
    client = app.test_client()
    login(client, "eric", GOOD)
    html = client.get("/account/profile", headers={"Accept-Language": "de"}).get_data(
        as_text=True
    )
    assert _lang(html) == "en" and "Your profile" in html


def test_profile_language_saved_on_the_account_page_applies_at_once(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    page = client.get("/account/profile").get_data(as_text=True)
    assert _lang(page) == "en"
    resp = client.post(
        "/account/profile",
        data={"csrf_token": csrf(page), "locale": "de", "timezone": "Europe/Berlin"},
    )
    assert resp.status_code in (200, 302)
    assert user_row(svc, "ann").locale == "de"
    html = client.get("/account/").get_data(as_text=True)
    assert _lang(html) == "de" and "Ihr Profil wurde gespeichert." in html


def _pending_request(app, ui_locales: list[str]) -> str:
    with app.test_request_context():
        req = AuthnRequest(
            protocol="oidc", resume_url="/oauth2/authorize/resume?r=X", ui_locales=ui_locales
        )
        return SessionManager(app.extensions["idp"]).save_request(req)


def test_ui_locales_of_the_pending_request_beat_the_browser(app):
    rid = _pending_request(app, ["fr-CA", "de"])  # first offered one in the RP's order wins
    resp = app.test_client().get(f"/login?r={rid}", headers={"Accept-Language": "en"})
    html = resp.get_data(as_text=True)
    assert _lang(html) == "de" and "Anmelden" in html


def test_unoffered_ui_locales_fall_back_to_the_browser(app):
    rid = _pending_request(app, ["ja", "fr"])
    html = (
        app.test_client().get(f"/login?r={rid}", headers={"Accept-Language": "de"}).get_data(True)
    )
    assert _lang(html) == "de"
    html = (
        app.test_client().get(f"/login?r={rid}", headers={"Accept-Language": "en"}).get_data(True)
    )
    assert _lang(html) == "en"


def test_profile_beats_ui_locales_in_the_login_steps(app, svc):
    """ui_locales only speaks for someone the IdP does not know yet (Keycloak's order)."""
    make_user(svc, "erin", locale="en", must_change_password=True)
    rid = _pending_request(app, ["de"])
    client = app.test_client()
    assert "Anmelden" in client.get(f"/login?r={rid}").get_data(as_text=True)
    resp = login(client, "erin", GOOD, r=rid)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/step")
    html = client.get("/login/step").get_data(as_text=True)
    assert _lang(html) == "en" and "Set password" in html


def test_error_page_in_german(app):
    resp = app.test_client().get("/no-such-page", headers={"Accept-Language": "de"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 404 and _lang(html) == "de"
    assert "Seite nicht gefunden" in html and "Referenz:" in html


def test_consent_page_in_german(app):
    """The OIDC consent template: scopes in plain German words, translated buttons."""
    from flask import render_template

    from idp.web.oidc.consent import SCOPE_WORDS, ConsentForm

    with app.test_request_context("/consent", headers={"Accept-Language": "de"}):
        html = render_template(
            "consent.html",
            form=ConsentForm(),
            client=SimpleNamespace(name="Wiki"),
            logo=None,
            policy_uri="https://wiki.example/privacy",
            tos_uri=None,
            scopes=[(s, SCOPE_WORDS[s]) for s in ("openid", "email")] + [("custom", "Custom")],
        )
    assert _lang(html) == "de"
    for text in (
        "Wiki möchte auf Ihr Konto zugreifen",
        "Sie mit Ihrem Konto anmelden",
        "Ihre E-Mail-Adresse sehen",
        'value="Erlauben"',
        'value="Ablehnen"',
        "Datenschutzerklärung",
    ):
        assert text in html
    assert ">Custom<" in html  # an unknown scope keeps the words it came with


# --- mail language ------------------------------------------------------------------------------


def test_reset_mail_in_the_recipients_language_not_the_browsers(app, svc):
    make_user(svc, "greta", locale="de")
    make_user(svc, "eric")
    english, german = {"Accept-Language": "en"}, {"Accept-Language": "de"}
    post_form(app.test_client(), "/password/reset", {"email": "greta@example.org"}, headers=english)
    post_form(app.test_client(), "/password/reset", {"email": "eric@example.org"}, headers=german)
    to_greta, to_eric = outbox(svc)
    assert to_greta["To"] == "greta@example.org" and to_greta["Subject"] == "Passwort zurücksetzen"
    assert "Hallo greta," in text_of(to_greta)
    html = to_greta.get_body(preferencelist=("html",)).get_content()
    assert _lang(html) == "de" and "Neues Passwort wählen" in html
    # Eric has no profile language: he is the one at the (German) browser, so German it is...
    assert to_eric["Subject"] == "Passwort zurücksetzen"
    # ...until he sets English in his profile.
    with svc.sessions.begin() as db:
        from idp.storage.models import User

        db.get(User, user_row(svc, "eric").id).locale = "en"
    post_form(app.test_client(), "/password/reset", {"email": "eric@example.org"}, headers=german)
    last = outbox(svc)[-1]
    assert last["Subject"] == "Reset your password" and "Hello eric," in text_of(last)


def test_registration_mails_each_in_their_readers_language(make_app):
    app = make_app(
        registration={
            "enabled": True,
            "require_approval": True,
            "require_email_verification": False,
            "admin_emails": ["boss@example.org"],
        },
    )
    svc = app.extensions["idp"]
    german = {"Accept-Language": "de"}
    form = {
        "username": "reg1",
        "email": "reg1@example.org",
        "new_password": "Fresh-Cactus-Lamp-42",
        "confirm": "Fresh-Cactus-Lamp-42",
    }
    client = app.test_client()
    resp = post_form(client, "/register", form, headers=german)
    assert resp.status_code == 200 and "Ihr Konto wurde erstellt" in resp.get_data(as_text=True)
    assert user_row(svc, "reg1").locale == "de"  # the language they registered in
    (notice,) = outbox(svc)
    # The administrator is not the person at the browser: the default language.
    assert notice["To"] == "boss@example.org"
    assert notice["Subject"] == "New account waiting for approval: reg1"
    path = re.search(r"https?://\S+(/register/approve/\S+)", text_of(notice)).group(1)
    admin = app.test_client()
    page = admin.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    admin.post(
        path,
        data={"csrf_token": csrf(page), "approve": "Approve"},
        headers={"Accept-Language": "en"},
    )
    approval = outbox(svc)[-1]
    assert approval["To"] == "reg1@example.org"
    assert approval["Subject"] == "Ihr Konto wurde freigegeben"
    assert "Sie können sich jetzt anmelden" in text_of(approval)


def test_lockout_mail_in_the_users_language(make_app):
    app = make_app(lockout={"max_failures": 2, "notify_user": True})
    svc = app.extensions["idp"]
    make_user(svc, "greta", locale="de")
    for _ in range(2):
        login(app.test_client(), "greta", "wrong-password")
    (mail,) = outbox(svc)
    assert mail["Subject"] == "Ihr Konto wurde nach fehlgeschlagenen Anmeldeversuchen gesperrt"
    assert "Passwort zurücksetzen" in mail.get_body(preferencelist=("html",)).get_content()


@pytest.mark.slow
def test_wheel_carries_the_compiled_catalogs(tmp_path):
    """`pip install .` gets working catalogs where the app looks for them (idp/translations
    beside idp/web/i18n.py); no build-time compile step is needed."""
    import subprocess
    import sys
    import zipfile

    from babel.support import Translations

    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("idp-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / "idp"
    assert (unpacked / "web" / "i18n.py").is_file()
    for lang in LANGUAGES:
        mo = unpacked / "translations" / lang / "LC_MESSAGES" / "messages.mo"
        assert mo.read_bytes() == (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").read_bytes()
    german = Translations.load(str(unpacked / "translations"), ["de"])
    assert german.gettext("Sign in") == "Anmelden"


def test_operator_adds_a_language_in_the_instance_dir(make_app, instance_dir):
    """A compiled catalog in <instance>/translations adds a language without a package change;
    messages it does not cover stay English."""
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo

    catalog = Catalog(locale="fr")
    catalog.add("Sign in", "Se connecter")
    target = instance_dir / "translations" / "fr" / "LC_MESSAGES"
    target.mkdir(parents=True)
    with open(target / "messages.mo", "wb") as f:
        write_mo(f, catalog)
    app = make_app(branding={"languages": ["en", "de", "fr"]})
    html = app.test_client().get("/login", headers={"Accept-Language": "fr"}).get_data(True)
    assert _lang(html) == "fr" and "Se connecter" in html and "Forgot password?" in html
    html = app.test_client().get("/login", headers={"Accept-Language": "de"}).get_data(True)
    assert "Anmelden" in html and "Se connecter" not in html
