"""SSO session lifetimes on the frozen clock (issue 19), at their boundaries: idle expiry and
absolute expiry one second before and after, a "keep me signed in" session, online refresh
tokens of an expired session, and session cookies that must sign nobody in (made up, stolen
after the session ended, expired)."""

from __future__ import annotations

import pytest
from login_kit import GOOD, make_user, post_form
from oidc_support import PASSWORD, RP, authorize, token

from idp.sso.sessions import COOKIE, session_id_of

IDLE = 30 * 60
ABSOLUTE = 10 * 3600


@pytest.fixture
def app(make_app, clock):
    return make_app(clock=clock, session={"idle_minutes": 30, "max_hours": 10})


def signed_in(client) -> bool:
    return client.get("/account/").status_code == 200


def sign_in(app, remember: bool = False):
    client = app.test_client()
    data = {"username": "ann", "password": GOOD}
    if remember:
        data["remember_me"] = "y"
    assert post_form(client, "/login", data, page="/login").status_code == 302
    return client


@pytest.mark.parametrize(("after", "alive"), [(IDLE - 1, True), (IDLE + 1, False)])
def test_idle_expiry_at_its_boundary(app, clock, after, alive):
    make_user(app.extensions["idp"], "ann")
    client = sign_in(app)
    clock.advance(after)
    assert signed_in(client) is alive


@pytest.mark.parametrize(("after", "alive"), [(ABSOLUTE - 1, True), (ABSOLUTE + 1, False)])
def test_absolute_expiry_at_its_boundary_even_when_used(app, clock, after, alive):
    make_user(app.extensions["idp"], "ann")
    client = sign_in(app)
    used = 0
    while used + 20 * 60 < min(after, ABSOLUTE - 1):  # used every 20 minutes: never idle
        clock.advance(20 * 60)
        used += 20 * 60
        assert signed_in(client)
    clock.advance(after - used)
    assert signed_in(client) is alive


@pytest.mark.parametrize(("after", "alive"), [(30 * 86400 - 1, True), (30 * 86400 + 1, False)])
def test_keep_me_signed_in_lasts_its_days_unused(app, clock, after, alive):
    make_user(app.extensions["idp"], "ann")
    client = sign_in(app, remember=True)
    assert client.get_cookie(COOKIE).expires is not None  # a persistent cookie
    clock.advance(after)
    assert signed_in(client) is alive


def test_online_refresh_token_of_an_expired_session_is_refused(make_app, clock):
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    app = make_app(clock=clock, session={"idle_minutes": 30, "max_hours": 10})
    svc = app.extensions["idp"]
    make_user(svc, "alice", password=PASSWORD)
    with transaction(svc, Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx,
            "web",
            name="Web",
            redirect_uris=[RP],
            first_party=True,
            grant_types=["authorization_code", "refresh_token"],
            scope="openid offline_access",
        )
    browser = app.test_client()
    online = authorize(browser, client_id="web", scope="openid")
    offline = authorize(browser, client_id="web", scope="openid offline_access")
    issued = {}
    for name, got in (("online", online), ("offline", offline)):
        issued[name] = token(
            browser,
            {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
            auth=("web", secret),
        ).json["refresh_token"]
    clock.advance(IDLE + 1)  # the SSO session expired (idle)
    refused = token(
        app.test_client(),
        {"grant_type": "refresh_token", "refresh_token": issued["online"]},
        auth=("web", secret),
    )
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    kept = token(
        app.test_client(),
        {"grant_type": "refresh_token", "refresh_token": issued["offline"]},
        auth=("web", secret),
    )
    assert kept.status_code == 200  # offline access outlives the session by design


def test_made_up_stolen_and_expired_cookies_sign_nobody_in(app, clock):
    make_user(app.extensions["idp"], "ann")
    make_user(app.extensions["idp"], "bob")
    made_up = app.test_client()
    made_up.set_cookie(COOKIE, "x" * 43)
    assert not signed_in(made_up)
    # Bob's cookie, copied by someone before Bob signed out, is dead once he has.
    bob = app.test_client()
    assert post_form(bob, "/login", {"username": "bob", "password": GOOD}, page="/login")
    stolen = app.test_client()
    stolen.set_cookie(COOKIE, bob.get_cookie(COOKIE).value)
    assert signed_in(stolen)  # a live cookie is a bearer secret, as everywhere
    page = bob.get("/logout")
    from login_kit import csrf

    bob.post("/logout", data={"csrf_token": csrf(page.get_data(as_text=True))})
    assert not signed_in(stolen)
    # An expired session's cookie, replayed later.
    ann = sign_in(app)
    old = ann.get_cookie(COOKIE).value
    clock.advance(IDLE + 1)
    replay = app.test_client()
    replay.set_cookie(COOKIE, old)
    assert not signed_in(replay)
    assert app.extensions["idp"].sso_sessions.peek(session_id_of(old)) is None
