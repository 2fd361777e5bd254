"""The signed-out pages' behaviours (issue 23): "keep me signed in" by policy, the language
switcher and its cookie, "not you?" on the steps after the password, code fields, where the
passkey button shows, first-time vs create-an-account, every broken password rule at once
beside its field, and Cancel on the sign-out confirmation."""

from __future__ import annotations

import re

import pytest
from login_kit import GOOD, csrf, login, make_user, post_form, user_row

from idp.core.authn import AuthnRequest
from idp.sso.sessions import COOKIE, SessionManager


def _set_cookie(resp, name: str) -> str:
    return next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "="))


def _lang(html: str) -> str:
    return re.search(r'<html lang="([^"]+)"', html).group(1)


def _save_request(app, **kw) -> str:
    with app.test_request_context():
        req = AuthnRequest(protocol="oidc", resume_url="/oauth2/authorize/resume?r={rid}", **kw)
        return SessionManager(app.extensions["idp"]).save_request(req)


# --- keep me signed in --------------------------------------------------------------------------


def test_keep_me_signed_in_gives_a_persistent_cookie_and_a_session_that_outlives_idle(
    app, svc, clock
):
    make_user(svc, "ann")
    page = app.test_client().get("/login").get_data(as_text=True)
    assert 'name="remember_me"' in page and "30 days" in page
    client = app.test_client()
    resp = post_form(client, "/login", {"username": "ann", "password": GOOD, "remember_me": "y"})
    assert resp.status_code == 302
    cookie = _set_cookie(resp, COOKIE)
    assert f"Max-Age={30 * 86400}" in cookie and "HttpOnly" in cookie
    # Past the idle limit (30 min) and the absolute one (10 h), within the 30 days: still in.
    clock.advance(3 * 86400)
    assert client.get("/account/").status_code == 200
    clock.advance(28 * 86400)
    assert client.get("/account/").status_code == 302  # 31 days: gone


def test_without_the_choice_the_cookie_ends_with_the_browser_and_idle_applies(app, svc, clock):
    make_user(svc, "ann")
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    cookie = _set_cookie(resp, COOKIE)
    assert "Max-Age" not in cookie and "Expires" not in cookie
    clock.advance(31 * 60)
    assert client.get("/account/").status_code == 302  # idle limit: signed out


def test_remember_me_days_zero_hides_the_choice_and_ignores_a_forged_field(make_app, clock):
    app = make_app(clock=clock, session={"remember_me_days": 0})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    assert 'name="remember_me"' not in client.get("/login").get_data(as_text=True)
    resp = post_form(client, "/login", {"username": "ann", "password": GOOD, "remember_me": "y"})
    assert "Max-Age" not in _set_cookie(resp, COOKIE)
    clock.advance(31 * 60)
    assert client.get("/account/").status_code == 302


@pytest.mark.parametrize("days", [-1, 3651])
def test_remember_me_days_out_of_range_stops_start_up(make_app, days):
    from idp.settings import ConfigError

    with pytest.raises(ConfigError, match="remember_me_days"):
        make_app(session={"remember_me_days": days})


# --- language switcher --------------------------------------------------------------------------


def test_switcher_sets_a_year_long_lax_cookie_and_goes_back(app):
    client = app.test_client()
    page = client.get("/password/reset", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'name="lang"' in page and "data-autosubmit" in page and "Deutsch" in page
    assert 'name="next" value="/password/reset"' in page
    resp = client.get("/language", query_string={"lang": "de", "next": "/password/reset"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/password/reset"
    cookie = _set_cookie(resp, "idp_lang")
    assert "idp_lang=de" in cookie and "Max-Age=31536000" in cookie and "SameSite=Lax" in cookie
    html = client.get("/password/reset", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert _lang(html) == "de"


def test_the_switch_beats_ui_locales_and_keeps_the_pending_request(app):
    rid = _save_request(app, ui_locales=["en"])
    client = app.test_client()
    page = client.get(f"/login?r={rid}").get_data(as_text=True)
    assert f'name="next" value="/login?r={rid}"' in page  # the kept page's own way back
    resp = client.get("/language", query_string={"lang": "de", "next": f"/login?r={rid}"})
    assert resp.headers["Location"] == f"/login?r={rid}"
    assert _lang(client.get(f"/login?r={rid}").get_data(as_text=True)) == "de"


@pytest.mark.parametrize(
    "lang,next_url",
    [("xx", "/login"), ("de<script>", "/login"), ("de", "https://evil.example/"), ("de", "//evil")],
)
def test_hostile_switches_set_nothing_foreign_and_never_leave_the_site(app, lang, next_url):
    resp = app.test_client().get("/language", query_string={"lang": lang, "next": next_url})
    assert resp.status_code == 303 and resp.headers["Location"] in ("/login", next_url)
    assert resp.headers["Location"].startswith("/") and not resp.headers["Location"].startswith(
        "//"
    )
    cookies = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("idp_lang=")]
    assert cookies == [] if lang != "de" else cookies[0].startswith("idp_lang=de;")


def test_a_signed_in_users_profile_language_wins_on_their_own_pages(app, svc):
    make_user(svc, "ann", locale="en")
    client = app.test_client()
    client.get("/language", query_string={"lang": "de"})
    assert login(client, "ann", GOOD).status_code == 302
    assert _lang(client.get("/account/").get_data(as_text=True)) == "en"
    # Signed-in pages have no switcher; the profile page sets the language there.
    assert 'name="lang"' not in client.get("/account/").get_data(as_text=True)


# --- "not you?" ---------------------------------------------------------------------------------


def test_not_you_on_a_step_abandons_the_sign_in_and_keeps_the_request(app, svc):
    make_user(svc, "ann", must_change_password=True, given_name="Ann", family_name="Lee")
    rid = _save_request(app)
    client = app.test_client()
    assert login(client, "ann", GOOD, r=rid).headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    assert "Signed in as Ann Lee (ann)." in page and 'action="/login/restart"' in page
    # Without the CSRF token: refused, the half-finished sign-in stays.
    assert client.post("/login/restart").status_code == 400
    assert client.get("/login/step").status_code == 200
    resp = client.post("/login/restart", data={"csrf_token": csrf(page)})
    assert resp.status_code == 303 and resp.headers["Location"] == f"/login?r={rid}"
    assert client.get("/login/step").status_code == 400  # the pending login is gone
    assert client.get_cookie(COOKIE) is None
    assert user_row(svc, "ann").must_change_password is True  # nothing changed


def test_not_you_on_consent_ends_the_session_and_restarts_the_authorization(make_app):
    from idp.storage.clients import ClientRegistry

    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        ClientRegistry(db, svc.hasher, svc.sealer).create(
            "notes", name="Notes", redirect_uris=["https://rp.example.org/cb"]
        )
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    query = {
        "client_id": "notes",
        "redirect_uri": "https://rp.example.org/cb",
        "response_type": "code",
        "scope": "openid",
        "state": "s1",
    }
    resp = client.get("/oauth2/authorize", query_string=query)
    assert resp.headers["Location"].startswith("/oauth2/consent?r=")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Signed in as ann." in page
    consent_rid = re.search(r'name="r" value="([^"]+)"', page).group(1)
    resp = client.post("/login/restart", data={"csrf_token": csrf(page), "r": consent_rid})
    assert resp.status_code == 303
    again = resp.headers["Location"]
    assert again.startswith("/oauth2/authorize?") and "state=s1" in again
    assert client.get("/account/").status_code == 302  # signed out
    # The application's request starts over at the login page.
    assert client.get(again).headers["Location"].startswith("/login?r=")


# --- code fields, passkeys, paths ---------------------------------------------------------------


def test_enrolment_code_field_is_numeric_one_time_code(make_app):
    app = make_app(mfa={"required": True, "grace_days": 0})
    make_user(app.extensions["idp"], "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    field = re.search(r"<input[^>]*name=\"code\"[^>]*>", page).group(0)
    assert 'inputmode="numeric"' in field and 'autocomplete="one-time-code"' in field
    assert 'pattern="[0-9]*"' in field
    assert "Signed in as ann." in page


@pytest.mark.parametrize(
    "issuer,shown",
    [
        ("http://localhost:5000", True),
        ("https://idp.example.org", True),
        ("http://127.0.0.1:5000", False),
        ("https://10.1.2.3", False),
        ("https://[::1]:8443", False),
        ("http://idp.example.org", False),  # not a secure context
    ],
)
def test_passkey_button_only_where_webauthn_can_work(make_app, issuer, shown):
    page = make_app(issuer=issuer).test_client().get("/login").get_data(as_text=True)
    assert ('id="passkey-login"' in page) is shown
    assert ('autocomplete="username webauthn"' in page) is shown


def test_first_time_and_create_account_are_two_distinct_paths(make_app):
    page = make_app(registration={"enabled": True}).test_client().get("/login")
    html = page.get_data(as_text=True)
    assert 'href="/login/first"' in html and 'href="/register"' in html
    assert 'id="first-hint"' in html and 'id="register-hint"' in html
    closed = make_app(registration={"enabled": False}).test_client().get("/login")
    assert 'href="/register"' not in closed.get_data(as_text=True)


# --- passwords ----------------------------------------------------------------------------------


def _field_errors(html: str, field: str) -> list[str]:
    m = re.search(rf'<(ul|p) class="field-error" id="{field}-error">(.*?)</\1>', html, re.S)
    if not m:
        return []
    items = re.findall(r"<li>(.*?)</li>", m.group(2), re.S)
    return items or [m.group(2).strip()]


def test_register_reports_every_broken_rule_beside_the_field_and_creates_nothing(make_app):
    app = make_app(
        registration={"enabled": True},
        password_policy={"require_digit": True, "require_upper": True, "min_length": 12},
    )
    svc = app.extensions["idp"]
    client = app.test_client()
    page = client.get("/register").get_data(as_text=True)
    # The checklist of this form's rules, with no history rule for a new account.
    assert 'data-password-rules="new_password"' in page and 'data-rule="min_length"' in page
    assert 'data-n="12"' in page and "reuse" not in page
    assert "password-rules.js" in page
    with svc.sessions() as db:
        before = db.execute(__import__("sqlalchemy").text("select count(*) from users")).scalar()
    resp = client.post(
        "/register",
        data={
            "csrf_token": csrf(page),
            "username": "zed",
            "email": "zed@example.org",
            "new_password": "zedshort",
            "confirm": "zedshort",
        },
    )
    html = resp.get_data(as_text=True)
    errors = _field_errors(html, "new_password")
    assert resp.status_code == 400 and len(errors) >= 4, errors  # length, upper, digit, personal
    assert 'aria-describedby="password-rules new_password-error"' in html
    with svc.sessions() as db:
        after = db.execute(__import__("sqlalchemy").text("select count(*) from users")).scalar()
    assert after == before


def test_set_password_step_puts_rules_and_mismatch_beside_their_fields(app, svc):
    make_user(svc, "ann", must_change_password=True)
    client = app.test_client()
    login(client, "ann", GOOD)
    page = client.get("/login/step").get_data(as_text=True)
    assert 'data-username="ann"' in page and "reuse" in page  # history applies here
    resp = client.post(
        "/login/step",
        data={"csrf_token": csrf(page), "new_password": "ann", "confirm": "ann"},
    )
    errors = _field_errors(resp.get_data(as_text=True), "new_password")
    assert resp.status_code == 400 and len(errors) >= 2, errors
    page = resp.get_data(as_text=True)
    resp = client.post(
        "/login/step",
        data={"csrf_token": csrf(page), "new_password": "Fresh-Cactus-42", "confirm": "other"},
    )
    assert _field_errors(resp.get_data(as_text=True), "confirm")
    assert user_row(svc, "ann").must_change_password is True


def test_the_checklist_script_is_served_same_origin(app):
    resp = app.test_client().get("/assets/password-rules.js")
    assert resp.status_code == 200 and resp.mimetype == "text/javascript"
    assert b"data-password-rules" in resp.data


# --- sign-out confirmation ----------------------------------------------------------------------


def test_sign_out_confirmation_has_cancel_back_to_the_account(app, svc):
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    html = client.get("/logout").get_data(as_text=True)
    assert re.search(r'<a class="button secondary" href="/account/">Cancel</a>', html)
    html = client.get("/logout?next=/account/sessions").get_data(as_text=True)
    assert 'href="/account/sessions">Cancel' in html
