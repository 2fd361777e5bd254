"""Pages attack suite (issue 22): the hosted login, consent, account and admin console pages
against CSRF, clickjacking, open redirects, reflected input, a forged Host header and caching
of personal data.

The pages are found, not listed by hand: a crawler signed in as an administrator follows every
same-site link from the account area and the console and reads every form it meets, so a new
page or form is attacked without anyone adding it here. Each hostile request asserts its
refusal and that nothing changed (every table, compared row by row, and the short-lived
store's keys).

Existing coverage this builds on: tests/test_csp.py (the policy itself),
tests/test_signin_pages.py (the language switcher's return URL, "Not you?" without a token),
tests/admin/test_admin_guard.py (the console's CSRF guard), tests/oidc/
test_authorize_error_pages.py (no redirect to an unverified redirect_uri).
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.slow

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from admin_kit import make_admin, signed_in  # noqa: E402
from login_kit import GOOD, make_user  # noqa: E402

ISSUER = "http://127.0.0.1:5000"
RP = "https://rp.example.org/cb"
FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)
ATTR_RE = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"', re.S)
FIELD_RE = re.compile(
    r"<(input|select|textarea)\b([^>]*)>(?:(.*?)</(?:select|textarea)>)?", re.I | re.S
)
OPTION_RE = re.compile(r"<option\b([^>]*)>", re.I)
LINK_RE = re.compile(r'href="(/(?:account|admin)[^"#]*)"')
# Links a crawler must not follow: downloads and pages that end the session.
NOT_FOLLOWED = ("/logout", "export", "download", ".csv", ".xlsx", "/photo")


def _attrs(text: str) -> dict[str, str]:
    return {k.lower(): html.unescape(v) for k, v in ATTR_RE.findall(text)}


BUTTON_RE = re.compile(r"<button\b([^>]*)>", re.I)


def post_forms(page: str, with_button: bool = False) -> list[tuple[str, dict[str, str]]]:
    """Every POST form of a page: (action, fields with their current values; ``with_button``:
    and the first named button's, as if it were clicked)."""
    out = []
    for fm in FORM_RE.finditer(page):
        attrs = _attrs(fm.group(1))
        if attrs.get("method", "get").lower() != "post":
            continue
        fields: dict[str, str] = {}
        for kind, raw, inner in FIELD_RE.findall(fm.group(2)):
            a = _attrs(raw)
            name = a.get("name")
            if not name:
                continue
            kind = kind.lower()
            if kind == "select":
                options = [_attrs(o) for o in OPTION_RE.findall(inner or "")]
                chosen = [o for o in options if "selected" in o] or options
                fields[name] = chosen[0].get("value", "") if chosen else ""
            elif kind == "textarea":
                fields[name] = html.unescape(inner or "")
            elif a.get("type", "text").lower() in ("submit", "button", "image", "reset"):
                continue  # a browser sends only the button clicked
            elif a.get("type", "text").lower() in ("checkbox", "radio"):
                if "checked" in a:
                    fields[name] = a.get("value", "on")
            else:
                fields[name] = a.get("value", "")
        if with_button:
            for raw in BUTTON_RE.findall(fm.group(2)):
                a = _attrs(raw)
                if a.get("name"):
                    fields.setdefault(a["name"], a.get("value", ""))
                    break
        out.append((attrs.get("action", ""), fields))
    return out


def fingerprint(svc) -> dict[str, str]:
    """Every table's rows (a hash per table) and the short-lived store's keys: what a refused
    request must leave exactly as it was."""
    from idp.storage.models import Base, KVEntry

    if svc.mail_queue is not None:  # mail sent in the background updates its outbox row
        assert svc.mail_queue.wait_idle(15)
    out = {}
    with svc.sessions() as db:
        for table in Base.metadata.sorted_tables:
            if table.name == KVEntry.__tablename__:
                keys = sorted(db.scalars(select(KVEntry.key)).all())
                out[table.name] = hashlib.sha256(repr(keys).encode()).hexdigest()
                continue
            rows = sorted(repr(tuple(r)) for r in db.execute(select(table)).all())
            out[table.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


class Site:
    def __init__(self, app) -> None:
        self.app = app
        self.svc = app.extensions["idp"]
        self._pages: dict[str, object] | None = None

    def admin(self):
        return signed_in(self.app, "root")

    def user(self):
        return signed_in(self.app, "mallory")

    def crawl(self, client, start=("/account/", "/admin/"), limit: int = 120) -> dict[str, object]:
        """Every same-site page reachable from ``start`` by links (GET only): path -> response."""
        seen: dict[str, object] = {}
        queue = list(start)
        while queue and len(seen) < limit:
            path = queue.pop(0)
            if path in seen or any(x in path for x in NOT_FOLLOWED):
                continue
            resp = client.get(path)
            seen[path] = resp
            if resp.status_code != 200 or resp.mimetype != "text/html":
                continue
            for link in LINK_RE.findall(resp.get_data(as_text=True)):
                link = html.unescape(link)
                if link not in seen:
                    queue.append(link)
        return seen

    def pages(self) -> dict[str, object]:
        if self._pages is None:
            self._pages = self.crawl(self.admin())
        return self._pages


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from support import base_overrides, init_database

    from idp.app import create_app

    instance = tmp_path_factory.mktemp("atk-pages") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance, issuer=ISSUER)
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    make_admin(svc, "root")
    make_user(svc, "mallory", given_name="Mallory")
    from idp.storage.clients import ClientRegistry

    with svc.sessions.begin() as db:
        registry = ClientRegistry(db, svc.hasher, svc.sealer)
        _, secret = registry.create(
            "svc", name="Service", grant_types=["client_credentials"], scope="profile"
        )
        registry.create(
            "web",
            name="Web App",
            redirect_uris=[RP],
            grant_types=["authorization_code"],
            scope="openid profile email",
            post_logout_redirect_uris=["https://rp.example.org/bye"],
        )
    site = Site(app)
    site.secret = secret
    yield site
    if svc.mail_queue is not None:
        svc.mail_queue.wait_idle(15)
        svc.mail_queue.stop()
    svc.engine.dispose()


# --- CSRF ----------------------------------------------------------------------------------------


def _token_of(client) -> str:
    page = client.get("/account/profile").get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, "no CSRF token on the profile page"
    return found.group(1)


def test_every_state_changing_form_refuses_a_missing_wrong_or_foreign_token(site):
    """Every POST form of the account area and the console (as the crawler finds them),
    sent as the page fills it but with no token, a wrong one, and the token of another
    person's session: refused (4xx, never 5xx, no redirect onward), and not one row changed.
    A form that is not checked would show up as a changed table."""
    admin = site.admin()
    foreign = _token_of(site.user())
    own = _token_of(admin)
    forms: dict[tuple, dict[str, str]] = {}
    for path, resp in site.pages().items():
        if resp.status_code != 200 or resp.mimetype != "text/html":
            continue
        for action, fields in post_forms(resp.get_data(as_text=True), with_button=True):
            target = urljoin(path, action or path)
            if not target.startswith(("/account", "/admin")) or "csrf_token" not in fields:
                continue
            forms.setdefault((target, tuple(sorted(fields))), fields)
    assert len(forms) >= 20, sorted(forms)  # the crawler reached the console's forms
    refused: set[str] = set()
    for (target, _), fields in sorted(forms.items()):
        for token in (None, "wrong-" + own[6:], foreign):
            # Empty fields get a plausible value, so the post would change something if taken.
            data = {k: v or "atk1" for k, v in fields.items() if k != "csrf_token"}
            if token is not None:
                data["csrf_token"] = token
            before = fingerprint(site.svc)
            resp = admin.post(target, data=data)
            # Refused (400 / 403), the form shown again, or back to the page with nothing done.
            assert resp.status_code in (200, 302, 303, 400, 403), (target, token, resp.status_code)
            assert "Traceback" not in resp.get_data(as_text=True)
            location = resp.headers.get("Location", "")
            assert not location.startswith("http") or location.startswith(ISSUER), location
            assert changed(before, fingerprint(site.svc)) == [], (target, token)
            refused.add(target)
    assert len(refused) == len({t for t, _ in forms})
    # The control: with the page's own token the same kind of post does change a row, so the
    # fingerprint would have seen a form that skipped its check.
    assert admin.get("/account/").status_code == 200
    before = fingerprint(site.svc)
    resp = admin.post("/account/verify-email", data={"csrf_token": own})
    assert resp.status_code in (302, 303)
    assert changed(before, fingerprint(site.svc)) != []


def test_login_logout_and_consent_forms_refuse_a_missing_or_foreign_token(site):
    """The sign-in, consent and sign-out forms: a sign-in with the right password but no / a
    wrong / a foreign token makes no session; "Allow" on the consent page without the right
    token gives no code and stores no consent; a sign-out without one ends no session."""
    foreign = _token_of(site.user())
    for token in (None, "wrong", foreign):
        client = site.app.test_client()
        client.get("/login")
        before = fingerprint(site.svc)
        data = {"username": "mallory", "password": GOOD}
        if token:
            data["csrf_token"] = token
        resp = client.post("/login", data=data)
        assert resp.status_code in (400, 403) or resp.status_code == 200, resp.status_code
        assert "Location" not in resp.headers
        assert changed(before, fingerprint(site.svc)) == [], token
    # Consent: the page of an authorization request, answered "Allow" without the right token.
    user = site.user()
    asked = user.get(
        "/oauth2/authorize",
        query_string={"response_type": "code", "client_id": "web", "redirect_uri": RP,
                      "scope": "openid email", "state": "s1"},
    )  # fmt: skip
    consent = asked.headers["Location"]
    assert consent.startswith("/oauth2/consent"), consent
    page = user.get(consent).get_data(as_text=True)
    fields = dict(post_forms(page)[0][1])
    for token in (None, "wrong", foreign):
        data = {k: v for k, v in fields.items() if k != "csrf_token"} | {"approve": "Allow"}
        if token:
            data["csrf_token"] = token
        before = fingerprint(site.svc)
        resp = user.post(consent, data=data)
        assert resp.status_code < 500
        assert not resp.headers.get("Location", "").startswith(RP), token
        assert changed(before, fingerprint(site.svc)) == [], token
    # The control: the page's own token gives the code.
    resp = user.post(consent, data=fields | {"approve": "Allow"})
    assert resp.headers.get("Location", "").startswith(RP + "?code="), resp.status_code
    for token in (None, "wrong", foreign):
        before = fingerprint(site.svc)
        resp = user.post("/logout", data={"csrf_token": token} if token else {})
        assert resp.status_code == 400, resp.status_code
        assert changed(before, fingerprint(site.svc)) == [], token
    assert user.get("/account/").status_code == 200


# --- clickjacking and caching --------------------------------------------------------------------

ANONYMOUS_PAGES = (
    "/login",
    "/password/reset",
    "/register",
    "/device",
    "/logout",
    "/nope-404",
    "/saml/sso?SAMLRequest=x",
    "/oauth2/authorize",
)


def _html_pages(site) -> dict[str, object]:
    pages = {p: r for p, r in site.pages().items() if r.mimetype == "text/html"}
    anonymous = site.app.test_client()
    for path in ANONYMOUS_PAGES:
        pages["anon:" + path] = anonymous.get(path)
    return pages


def test_no_page_can_be_framed(site):
    """Every page type (sign-in, errors, device, SAML and OAuth errors, every account and
    console page the crawler reached): CSP frame-ancestors 'none' and X-Frame-Options DENY."""
    pages = _html_pages(site)
    assert len(pages) >= 30
    for path, resp in pages.items():
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, path
        assert resp.headers.get("X-Frame-Options") == "DENY", path


def test_pages_with_personal_data_are_never_stored(site):
    """Every account and console page (names, addresses, sessions, audit rows), every page a
    signed-in person gets, the token and userinfo answers: Cache-Control no-store, so neither
    a shared cache nor the back button of a shared computer keeps them."""
    signed_in_pages = {p: r for p, r in site.pages().items() if r.status_code < 500}
    assert len(signed_in_pages) >= 30
    stored = [
        path
        for path, resp in signed_in_pages.items()
        if "no-store" not in resp.headers.get("Cache-Control", "")
    ]
    assert stored == []
    client = site.app.test_client()
    for path in ("/login", "/password/reset", "/register", "/device"):
        resp = client.get(path)
        assert "no-store" in resp.headers.get("Cache-Control", ""), path
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert token.status_code in (400, 401) and "no-store" in token.headers["Cache-Control"]
    info = client.get("/oauth2/userinfo", headers={"Authorization": "Bearer nope"})
    assert info.status_code == 401 and "no-store" in info.headers["Cache-Control"]
    issued = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=("svc", site.secret),
    )
    assert issued.status_code == 200, issued.get_json()
    assert "access_token" in issued.get_json()
    assert "no-store" in issued.headers["Cache-Control"]


# --- open redirects ------------------------------------------------------------------------------

FOREIGN = (
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "/\t/evil.example/",
    " //evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://127.0.0.1:5000@evil.example/",
    "http://127.0.0.1:5000.evil.example/",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "https%3A%2F%2Fevil.example",
)


def assert_stays_here(location: str | None, what: str) -> None:
    """A Location a browser follows to this site only (browsers read "\\" as "/" and skip
    tabs and newlines)."""
    if location is None:
        return
    loose = re.sub(r"[\t\r\n]", "", location).replace("\\", "/").strip()
    target = urlsplit(urljoin(ISSUER + "/", loose))
    assert (target.scheme, target.netloc) == ("http", "127.0.0.1:5000"), (what, location)
    assert not loose.lower().startswith(("javascript:", "data:")), (what, location)


@pytest.mark.parametrize("target", FOREIGN)
def test_no_return_parameter_leaves_the_site(site, target):
    """The parameters pages take a redirect from (grep of idp/web: ``next`` of /login,
    /logout, /language and the MFA re-authentication; ``then`` of /saml/logout/pending;
    ``post_logout_redirect_uri`` of /oauth2/logout): with each foreign spelling, the Location
    stays on this site (or there is none), and nothing is stored. (``next`` of /broker/start
    and of the passkey sign-in go through the same ``safe_next``.)"""
    user = site.user()
    before = fingerprint(site.svc)
    cases = [
        ("login next (signed in)", user.get("/login", query_string={"next": target})),
        ("language next", user.get("/language", query_string={"lang": "de", "next": target})),
        (
            "pending logout then",
            user.get("/saml/logout/pending", query_string={"then": target}),
        ),
        (
            "oauth2 logout",
            user.get("/oauth2/logout", query_string={"post_logout_redirect_uri": target}),
        ),
    ]
    for what, resp in cases:
        assert resp.status_code < 500, what
        assert_stays_here(resp.headers.get("Location"), what)
        if resp.status_code == 200:  # a page: none of its links leaves the site either
            for href in re.findall(r'href="([^"]*)"', resp.get_data(as_text=True)):
                assert_stays_here(html.unescape(href), what)
    keys = set(before) - {"kv_entries"}
    after = fingerprint(site.svc)
    assert {k for k in keys if before[k] != after[k]} <= {"users"}  # the language preference
    # The MFA page's password re-check, then on to ``next``.
    user = site.user()
    resp = user.post(
        "/account/mfa/reauth",
        data={"csrf_token": _token_of(user), "password": GOOD, "next": target},
    )
    assert resp.status_code in (302, 303), resp.status_code
    assert_stays_here(resp.headers.get("Location"), "mfa reauth next")
    # Signed out: the logged-out page's onward link, and the sign-in's own return.
    anon = site.app.test_client()
    page = anon.get("/logout", query_string={"next": target})
    for href in re.findall(r'href="([^"]*)"', page.get_data(as_text=True)):
        assert_stays_here(html.unescape(href), "logged-out link")
    page = anon.get("/login", query_string={"next": target}, follow_redirects=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    assert token
    resp = anon.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "username": "mallory",
            "password": GOOD,
            "next": target,
        },
    )
    assert resp.status_code in (302, 303), resp.status_code
    assert_stays_here(resp.headers.get("Location"), "after sign-in")
    signed = anon.get("/logout")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', signed.get_data(as_text=True))
    resp = anon.post("/logout", data={"csrf_token": token.group(1), "next": target})
    assert_stays_here(resp.headers.get("Location"), "after sign-out")


def test_a_link_to_a_logout_endpoint_signs_nobody_out(site):
    """Logout CSRF by a plain link (a top-level GET carries the SameSite=Lax cookie): the
    pending-logout page (meant for browsers whose session ended elsewhere) and /oauth2/logout
    without an ID token hint, opened by someone signed in. Found: the pending-logout page
    cleared the cookie of a live session (signed out by any link, the session left behind
    on the server). Now the person stays signed in, and nothing changes."""
    for path, query in (
        ("/saml/logout/pending", {"then": "/account/"}),
        ("/oauth2/logout", {}),
        ("/oauth2/logout", {"client_id": "web", "post_logout_redirect_uri": "https://rp.example.org/bye"}),
    ):  # fmt: skip
        user = site.user()
        before = fingerprint(site.svc)
        resp = user.get(path, query_string=query)
        assert resp.status_code < 500, path
        assert_stays_here(resp.headers.get("Location"), path)
        cleared = [c for c in resp.headers.getlist("Set-Cookie") if "Expires=Thu, 01 Jan 1970" in c]
        assert cleared == [], (path, cleared)
        assert changed(before, fingerprint(site.svc)) == [], path
        assert user.get("/account/profile").status_code == 200, path


# --- reflected input -----------------------------------------------------------------------------

PAYLOADS = (
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "</title><svg/onload=alert(1)>",
)
PARAMS = (
    "next", "r", "error", "error_description", "state", "client_id", "redirect_uri",
    "login_hint", "q", "query", "search", "lang", "then", "sp", "RelayState", "user_code",
    "username", "email", "page", "sort", "status", "filter", "token", "prompt", "scope",
    "ui_locales", "SAMLRequest", "response_type", "message", "kind", "group", "role",
)  # fmt: skip


def _reflected(text: str) -> list[str]:
    return [p for p in ("<script>alert(1)", "<img src=x onerror", "<svg/onload") if p in text]


def test_no_parameter_is_reflected_unescaped(site):
    """Each payload in each of the parameters pages read, on every page the crawler reached
    and the signed-out pages; the 404 page with a script in its path; the sign-in form
    re-rendered with a script as the username: escaped everywhere, never a 5xx."""
    admin = site.admin()
    anonymous = site.app.test_client()
    paths = [p for p, r in site.pages().items() if r.status_code == 200 and "?" not in p]
    targets = [(admin, p) for p in paths] + [(anonymous, p) for p in ANONYMOUS_PAGES]
    for payload in PAYLOADS:
        query = {name: payload for name in PARAMS}
        for client, path in targets:
            resp = client.get(path.split("?")[0], query_string=query)
            assert resp.status_code < 500, path
            assert _reflected(resp.get_data(as_text=True)) == [], (path, payload)
        resp = anonymous.get("/nope/" + payload)
        assert resp.status_code == 404 and _reflected(resp.get_data(as_text=True)) == []
        page = anonymous.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        resp = anonymous.post(
            "/login", data={"csrf_token": token, "username": payload, "password": "x"}
        )
        assert resp.status_code < 500 and _reflected(resp.get_data(as_text=True)) == []


# --- Host header ---------------------------------------------------------------------------------

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example",
          "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example;proto=https"}  # fmt: skip


def test_a_forged_host_changes_no_issuer_link_or_redirect(site):
    """A forged Host, X-Forwarded-Host / -Proto and Forwarded (no trusted proxy configured):
    discovery's issuer and endpoints, the SAML metadata, the redirect after signing in and
    the link in a reset mail all name the configured issuer, never the forged host."""
    _forged_host_changes_nothing(site.app, site.svc)


def test_a_trusted_proxy_forwarding_a_forged_host_changes_nothing_either(make_app):
    """Behind one trusted proxy (``[server] trusted_proxies = 1``) the forwarded Host is
    believed for the request, yet every issuer, link and redirect still comes from the
    configured issuer, never from the request's host."""
    app = make_app(issuer=ISSUER, server={"trusted_proxies": 1})
    svc = app.extensions["idp"]
    make_user(svc, "mallory", given_name="Mallory")
    _forged_host_changes_nothing(app, svc, {"X-Forwarded-For": "203.0.113.9"})


def _forged_host_changes_nothing(app, svc, extra: dict[str, str] | None = None) -> None:
    from login_kit import outbox

    forged = FORGED | (extra or {})

    client = app.test_client()
    disco = client.get("/.well-known/openid-configuration", headers=forged).get_json()
    assert disco["issuer"] == ISSUER
    assert all("evil" not in str(v) for v in disco.values())
    md = client.get("/saml/metadata", headers=forged).get_data(as_text=True)
    assert "evil.example" not in md and f"{ISSUER}/saml/sso" in md
    page = client.get("/login", headers=forged).get_data(as_text=True)
    assert "evil.example" not in page
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        page = client.get("/login", headers=forged, follow_redirects=True).get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    resp = client.post(
        "/login",
        headers=forged,
        data={"csrf_token": token.group(1), "username": "mallory", "password": GOOD},
    )
    assert resp.status_code in (302, 303)
    assert "evil" not in resp.headers["Location"]
    sent = len(outbox(svc))
    forgot = app.test_client()
    page = forgot.get("/password/reset", headers=forged).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, page[:300]
    forgot.post(
        "/password/reset",
        headers=forged,
        data={
            "csrf_token": token.group(1),
            "email": "mallory@example.org",
            "login": "mallory@example.org",
        },
    )
    mails = outbox(svc)[sent:]
    assert mails, "no reset mail"
    body = mails[-1].get_body(preferencelist=("plain",)).get_content()
    assert ISSUER in body and "evil.example" not in body
