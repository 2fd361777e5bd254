"""CSRF, where our own code checks it: the login form (idp/web/login.py, whose fast path reads
the token without building the form), every change in the admin console (idp/web/admin/
guard.py: the form field or the X-CSRFToken header, not on GET / HEAD / OPTIONS) and the
passkey JSON endpoints (idp/web/webauthn.py: the X-CSRFToken header, and an Origin that is the
issuer's). Each refusal asserts that nothing changed. Written against the surviving mutants
of tests/mutation_kit.py `csrf`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from instance_template import initialised
from login_kit import GOOD, audit_actions, counts, csrf, make_user
from sqlalchemy import func, select

from idp.clock import FrozenClock
from idp.manage import Actor, transaction, upstreams
from idp.sso.sessions import COOKIE
from idp.storage.models import Group

ORIGIN = "http://127.0.0.1:5000"  # the default issuer's origin
HUB = "https://hub.example.org"  # an upstream that claims corp.example (home-realm discovery)
BAD_PASSWORD = "Please fill in both fields and try again."


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator:
    """One app for the module (a mutant's run builds it once): ann, and root the admin."""
    from idp.app import create_app

    instance = tmp_path_factory.mktemp("csrf") / "instance"
    app = create_app(initialised(instance), clock=FrozenClock(1_800_000_000.0))
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    make_admin(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        upstreams.create(
            ctx,
            "hub",
            "oauth2",
            {
                "display_name": "Hub",
                "hrd_domains": ["corp.example"],
                "config": {
                    "client_id": "idp",
                    "scopes": "openid",
                    "authorization_endpoint": f"{HUB}/authorize",
                    "token_endpoint": f"{HUB}/token",
                    "userinfo_endpoint": f"{HUB}/userinfo",
                    "subject_claim": "sub",
                },
            },
            "s3cret",
        )
    yield app
    svc.engine.dispose()


@pytest.fixture(scope="module")
def svc(app):
    return app.extensions["idp"]


def _state(svc) -> tuple:
    with svc.sessions() as db:
        groups = db.scalar(select(func.count()).select_from(Group))
    return counts(svc), audit_actions(svc), groups


def _signed_in(client) -> bool:
    return client.get_cookie(COOKIE) is not None


# --- the login form -----------------------------------------------------------------------------


def test_a_login_without_the_right_token_is_refused_and_counts_nothing(app, svc):
    other = csrf(app.test_client().get("/login").get_data(as_text=True))  # another browser's
    for token in (None, "", "not-a-token", other):
        client = app.test_client()
        client.get("/login")
        before = _state(svc)
        data = {"username": "ann", "password": GOOD}
        if token is not None:
            data["csrf_token"] = token
        resp = client.post("/login", data=data)
        assert resp.status_code == 400, token
        assert BAD_PASSWORD in resp.get_data(as_text=True)
        assert not _signed_in(client) and _state(svc) == before
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"csrf_token": token, "username": "ann", "password": GOOD})
    assert resp.status_code == 302 and _signed_in(client)


@pytest.mark.parametrize(
    ("username", "password", "within"),
    [
        ("a" * 320, GOOD, True),
        ("a" * 321, GOOD, False),
        ("ann", "p" * 1024, True),
        ("ann", "p" * 1025, False),
        ("ann", " ", False),
        (" ", GOOD, False),
    ],
)
def test_the_fast_path_keeps_the_forms_lengths(app, svc, username, password, within):
    """A name up to 320 and a password up to 1024 characters are checked (and wrong); one more
    is the form's message, before any password is checked."""
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    resp = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert not _signed_in(client)
    body = resp.get_data(as_text=True)
    if within:
        assert resp.status_code != 400 and BAD_PASSWORD not in body
    else:
        assert resp.status_code == 400 and BAD_PASSWORD in body


def test_a_name_alone_is_looked_up_only_with_the_token(app, svc):
    """The home-realm step (an address without a password) sends the browser to the upstream
    that claims its domain only with the browser's token; without it, the form's message."""
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    before = _state(svc)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "x"}):
        resp = client.post("/login", data={"username": "someone@corp.example", **data})
        assert resp.status_code == 400 and "Location" not in resp.headers, data
        assert _state(svc) == before
    sent = client.post("/login", data={"username": "someone@corp.example", "csrf_token": token})
    assert sent.status_code == 303 and sent.headers["Location"].startswith(f"{HUB}/authorize")
    elsewhere = client.post("/login", data={"username": "a@else.example", "csrf_token": token})
    assert elsewhere.status_code == 400


# --- the admin console ----------------------------------------------------------------------


@pytest.fixture
def admin(app):
    return signed_in(app)


def test_a_console_change_needs_the_token_in_the_form_or_the_header(app, svc, admin):
    token = console_csrf(admin, "/admin/groups")
    stranger = console_csrf(signed_in(app), "/admin/groups")  # the same admin's other browser
    for headers, data in (
        ({}, {}),
        ({}, {"csrf_token": ""}),
        ({}, {"csrf_token": "x"}),
        ({"X-CSRFToken": "x"}, {}),
        ({}, {"csrf_token": stranger}),
        ({"X-CSRFToken": stranger}, {}),
    ):
        before = _state(svc)
        resp = admin.post("/admin/groups", data={"name": "g", **data}, headers=headers)
        assert resp.status_code == 400, (headers, data)
        assert _state(svc) == before
    resp = admin.post("/admin/groups", data={"name": "g1", "csrf_token": token})
    assert resp.status_code == 302
    resp = admin.post("/admin/groups", data={"name": "g2"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 302
    # The form's token wins over a wrong header, and a wrong form token is not saved by the
    # header (the form field is read first).
    resp = admin.post(
        "/admin/groups", data={"name": "g3", "csrf_token": token}, headers={"X-CSRFToken": "x"}
    )
    assert resp.status_code == 302
    with svc.sessions() as db:
        names = set(db.scalars(select(Group.name)))
    assert {"g1", "g2", "g3"} <= names and "g" not in names


def test_a_refused_console_change_says_why(admin, svc):
    """The 400 names what was wrong with the token (flask-wtf's reason), as JSON for a script."""
    console_csrf(admin, "/admin/groups")  # the session holds its token
    before = _state(svc)
    for data, why in (
        ({}, "The CSRF token is missing."),
        ({"csrf_token": "x"}, "The CSRF token is invalid."),
    ):
        resp = admin.post(
            "/admin/groups", data={"name": "g", **data}, headers={"Accept": "application/json"}
        )
        assert resp.status_code == 400
        assert resp.json["error_description"] == why and resp.json["reference"]
    assert _state(svc) == before


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reading_the_console_needs_no_token(admin, method):
    resp = admin.open("/admin/", method=method)
    assert resp.status_code == 200


# --- the passkey JSON endpoints -------------------------------------------------------------


def _login_options(client, token: str | None, origin: str | None):
    headers = {}
    if token is not None:
        headers["X-CSRFToken"] = token
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/webauthn/login/options", json={}, headers=headers)


def test_passkey_endpoints_need_the_token_and_our_origin(app, svc):
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    before = _state(svc)
    for bad_token, origin, status, error in (
        (None, ORIGIN, 400, "csrf"),
        ("", None, 400, "csrf"),
        ("x", ORIGIN, 400, "csrf"),
        (token, "http://127.0.0.1:5001", 403, "forbidden"),
        (token, "null", 403, "forbidden"),
        (token, "", 403, "forbidden"),
    ):
        resp = _login_options(client, bad_token, origin)
        assert resp.status_code == status, (bad_token, origin)
        assert resp.get_json()["error"] == error
        assert resp.get_json()["message"]
    assert _state(svc) == before
    assert _login_options(client, token, ORIGIN).status_code == 200
    assert _login_options(client, token, None).status_code == 200  # no Origin: same-origin
