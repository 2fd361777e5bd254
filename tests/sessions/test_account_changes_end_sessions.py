"""A password change (admin set, reset by mail), an admin lock and a deactivation end every
session of the user and every refresh token, online and offline, the same way as "log out
everywhere" (issue 19); each also reaches the RP's back-channel logout listener. The account
page's own password change is in test_logout_everywhere_oidc.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from api_kit import service_token
from login_kit import csrf, link_in, outbox
from oidc_support import PASSWORD, Env, build_env, login
from sqlalchemy import select
from test_logout_everywhere_oidc import (
    LOCAL_RPS,
    backchannel_listener,
    refresh,
    signed_in,
    tokens,
    verified_logout,
)

NEW = "Brand-New-Lamp-Cactus-51"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, LOCAL_RPS) as built:
        yield built


def new_user(env: Env) -> tuple[str, str]:
    """A fresh user (username, uuid) with the shared password."""
    from idp.backends.chain import password_hasher
    from idp.storage.directory import Directory, NewUser

    name = "u" + secrets.token_hex(4)
    with env.svc.sessions.begin() as db:
        user = Directory(db).create_user(
            NewUser(
                username=name,
                email=f"{name}@example.org",
                password_hash=password_hasher(env.svc).hash(PASSWORD),
            )
        )
        # Changed yesterday: the policy's minimum age does not hold the reset back.
        user.password_changed_at = env.svc.clock.utcnow() - timedelta(days=1)
        return name, user.uuid


def signed_in_everywhere(env: Env, username: str):
    """A browser of the user holding an online (web2) and an offline (web) refresh token."""
    browser = env.client()
    assert login(browser, username).status_code == 302
    online = tokens(env, browser, "web2")
    offline = tokens(env, browser, "web", "openid offline_access")
    return browser, online, offline


def assert_everything_ended(env: Env, browser, online, offline, received) -> None:
    verified_logout(env, received, online["sid"])
    assert not signed_in(env, browser)
    assert refresh(env, "web2", online["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(env, "web", offline["refresh_token"]).json["error"] == "invalid_grant"


def api(env: Env, method: str, path: str, **kw):
    headers = {"Authorization": "Bearer " + service_token(env.app)}
    return env.client().open(f"/api/v1{path}", method=method, headers=headers, **kw)


def test_admin_lock_ends_every_session_and_token(env):
    name, uuid = new_user(env)
    with backchannel_listener(env) as received:
        browser, online, offline = signed_in_everywhere(env, name)
        assert api(env, "POST", f"/users/{uuid}/lock").status_code in (200, 204)
        assert_everything_ended(env, browser, online, offline, received)


def test_admin_setting_a_password_ends_every_session_and_token(env):
    name, uuid = new_user(env)
    with backchannel_listener(env) as received:
        browser, online, offline = signed_in_everywhere(env, name)
        resp = api(env, "POST", f"/users/{uuid}/password", json={"password": NEW})
        assert resp.status_code == 204, resp.get_data(as_text=True)
        assert_everything_ended(env, browser, online, offline, received)


def test_a_refused_admin_password_ends_nothing(env):
    name, uuid = new_user(env)
    browser, online, offline = signed_in_everywhere(env, name)
    resp = api(env, "POST", f"/users/{uuid}/password", json={"password": "short"})
    assert resp.status_code in (400, 409) and resp.mimetype == "application/problem+json"
    assert signed_in(env, browser)
    assert refresh(env, "web", offline["refresh_token"]).status_code == 200


def test_deactivation_ends_every_session_and_token(env):
    name, uuid = new_user(env)
    with backchannel_listener(env) as received:
        browser, online, offline = signed_in_everywhere(env, name)
        resp = api(env, "PATCH", f"/users/{uuid}", json={"active": False})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert_everything_ended(env, browser, online, offline, received)


def test_an_unchanged_patch_ends_nothing(env):
    name, uuid = new_user(env)
    browser, online, offline = signed_in_everywhere(env, name)
    resp = api(env, "PATCH", f"/users/{uuid}", json={"given_name": "Still"})
    assert resp.status_code == 200
    assert signed_in(env, browser)
    assert refresh(env, "web2", online["refresh_token"]).status_code == 200


def test_password_reset_by_mail_ends_every_session_and_token(env):
    from idp.storage.models import User

    name, _ = new_user(env)
    with env.svc.sessions.begin() as db:
        db.scalar(select(User).where(User.username == name)).email_verified = True
    with backchannel_listener(env) as received:
        browser, online, offline = signed_in_everywhere(env, name)
        other = env.client()
        page = other.get("/password/reset").get_data(as_text=True)
        other.post(
            "/password/reset", data={"csrf_token": csrf(page), "email": f"{name}@example.org"}
        )
        mail = [m for m in outbox(env.svc) if m["To"] == f"{name}@example.org"][-1]
        path = "/" + link_in(mail, "/password/reset/").split("/", 3)[3]
        form = other.get(path).get_data(as_text=True)
        done = other.post(
            path, data={"csrf_token": csrf(form), "new_password": NEW, "confirm": NEW}
        )
        assert done.status_code == 302, done.get_data(as_text=True)[:300]
        assert_everything_ended(env, browser, online, offline, received)
