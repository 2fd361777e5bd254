"""SSO session ids are kept hashed (issue 22, "Secrets … tokens hashed"; docs/security.md
"Secrets at rest and in output").

The browser's cookie is the session's only bearer secret: the server keeps and shows a SHA-256
of it (the session id: the store key ``ssoh:<sid>``, the per-user index, known-device links,
refresh tokens, the OIDC ``sid`` claim, the admin's session lists). After a sign-in, an OIDC
code flow and the session pages, the cookie value is nowhere in the database or the store;
every id read from them fails as a cookie; logout by the published id still ends the session;
and a session of a version that stored the cookie itself is signed out once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import jwt as pyjwt
import pytest
import secret_watch
from api_kit import service_token
from oidc_support import PASSWORD, RP, Env, authorize, build_env, login, query, token
from sqlalchemy import func, select
from support import database_dump, store_items, store_keys

from idp.sso.sessions import COOKIE, session_id_of

PREFIX = "ssoh:"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, {"allow_http": True}) as built:
        yield built


def _uuid(env: Env, username: str = "alice") -> str:
    from idp.storage.models import User

    with env.svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == username))


def _api(env: Env, method: str, path: str):
    headers = {"Authorization": "Bearer " + service_token(env.app)}
    return env.client().open(f"/api/v1{path}", method=method, headers=headers)


def _listed_ids(env: Env, username: str = "alice") -> list[str]:
    resp = _api(env, "GET", f"/users/{_uuid(env, username)}/sessions")
    assert resp.status_code == 200
    return [item["id"] for item in resp.json["items"]]


def _signed_in(env: Env, browser) -> bool:
    return browser.get("/account/").status_code == 200


def _signed_in_with_tokens(env: Env):
    """alice signed in, with an OIDC code flow (an ID token, a refresh token) and the account's
    session page read: the browser, its cookie, the ID token's claims (``raw``: the token)."""
    browser = env.client()
    assert login(browser).status_code in (302, 303)
    got = authorize(browser, client_id="web", redirect_uri=RP, scope="openid offline_access")
    tokens = token(
        browser,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    assert tokens.get("refresh_token"), tokens
    assert browser.get("/account/sessions").status_code == 200
    cookie = browser.get_cookie(COOKIE).value
    secret_watch.register(cookie)
    claims = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
    return browser, cookie, dict(claims, raw=tokens["id_token"])


def _persisted_ids(env: Env) -> dict[str, set[str]]:
    """Every session id the server keeps, by where it keeps it."""
    from idp.storage.models_auth import SsoSessionIndex
    from idp.storage.models_devices import KnownDeviceSession
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        return {
            "store key": {k.removeprefix(PREFIX) for k in store_keys(env.svc, PREFIX)},
            "index": set(db.scalars(select(SsoSessionIndex.sid))),
            "known device": set(db.scalars(select(KnownDeviceSession.sid))),
            "refresh token": set(
                db.scalars(select(RefreshToken.sid).where(RefreshToken.sid.is_not(None)))
            ),
        }


def test_the_cookie_value_is_kept_nowhere_in_the_database_or_the_store(env):
    browser, cookie, claims = _signed_in_with_tokens(env)
    sid = session_id_of(cookie)
    assert sid != cookie and cookie not in sid
    # Positive control: the session is kept, under its hash, in every place that names it.
    kept = _persisted_ids(env)
    assert all(sid in ids for ids in kept.values()), kept
    assert claims["sid"] == sid  # the published id is the hash too
    assert sid in _listed_ids(env)  # and so is the admin's
    # The database, every column of every table (the embedded store's table included).
    dump = database_dump(env.svc)
    assert sid in dump and "alice@example.org" in dump
    assert cookie not in dump
    # The store, whichever it is (Redis too): no key and no value holds the cookie.
    items = store_items(env.svc, "")
    assert f"{PREFIX}{sid}" in items
    assert not [k for k in items if cookie in k]
    assert not [k for k, v in items.items() if cookie in json.dumps(v)]
    # The cookie still works: it is the only thing that does.
    assert _signed_in(env, browser)


def test_an_id_read_from_the_database_or_the_store_is_no_cookie(env):
    from idp.storage.models_auth import SsoSessionIndex

    victim, cookie, claims = _signed_in_with_tokens(env)
    sid = session_id_of(cookie)
    stolen = {claims["sid"]} | {i for ids in _persisted_ids(env).values() for i in ids}
    assert sid in stolen
    keys_before = store_keys(env.svc, PREFIX)
    with env.svc.sessions() as db:
        rows_before = db.scalar(select(func.count()).select_from(SsoSessionIndex))
    for value in sorted(stolen):
        thief = env.client()
        thief.set_cookie(COOKIE, value)
        resp = thief.get("/account/")
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], value
        # Not at the protocols either: a prompt=none authorization needs a session.
        resp = thief.get(
            "/oauth2/authorize",
            query_string={
                "response_type": "code",
                "client_id": "web",
                "redirect_uri": RP,
                "scope": "openid",
                "prompt": "none",
                "state": "s",
            },
        )
        assert resp.status_code in (302, 303)
        assert "error=login_required" in resp.headers["Location"], resp.headers["Location"]
    # Nothing was made or ended by the attempts; the real session goes on.
    assert store_keys(env.svc, PREFIX) == keys_before
    with env.svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(SsoSessionIndex)) == rows_before
    assert _signed_in(env, victim)


def test_the_admin_ends_a_session_by_its_published_id_not_by_its_cookie(env):
    browser, cookie, claims = _signed_in_with_tokens(env)
    uuid = _uuid(env)
    # The cookie value is no session id: 404 problem+json, the session alive.
    resp = _api(env, "DELETE", f"/users/{uuid}/sessions/{cookie}")
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert _signed_in(env, browser)
    assert claims["sid"] in _listed_ids(env)
    # The id of the list (the ID token's sid) ends it.
    assert _api(env, "DELETE", f"/users/{uuid}/sessions/{claims['sid']}").status_code == 204
    assert not _signed_in(env, browser)
    assert claims["sid"] not in _listed_ids(env)
    assert f"{PREFIX}{claims['sid']}" not in store_keys(env.svc, PREFIX)


def test_rp_initiated_logout_with_the_id_token_ends_the_session_it_names(env):
    browser, _, claims = _signed_in_with_tokens(env)
    assert env.svc.sso_sessions.alive(claims["sid"])
    resp = browser.get(
        "/oauth2/logout",
        query_string={
            "id_token_hint": claims["raw"],
            "post_logout_redirect_uri": "https://rp.example.org/bye",
            "state": "st",
        },
    )
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
    assert resp.headers["Location"].startswith("https://rp.example.org/bye")
    assert query(resp.headers["Location"])["state"] == "st"
    assert not env.svc.sso_sessions.alive(claims["sid"])
    assert not _signed_in(env, browser)


def test_a_session_stored_by_an_older_version_is_signed_out_once(env):
    """Before hashing, the cookie value was the store key (``sso:<cookie>``, with a
    ``sidmap:`` entry) and the index row's sid. Such a browser is signed out once; its index
    row is pruned when read and never shown; signing in again works."""
    from idp.core.authn import public_sid
    from idp.storage.models import User
    from idp.storage.models_auth import SsoSessionIndex

    now_browser, now_cookie, _ = _signed_in_with_tokens(env)
    template = env.svc.store.get(PREFIX + session_id_of(now_cookie))
    old = secrets.token_urlsafe(32)
    secret_watch.register(old)
    record = dict(template, result=dict(template["result"], sid=old))
    env.svc.store.put("sso:" + old, record, 3600)
    env.svc.store.put("sidmap:" + public_sid(old), old, 3600)
    with env.svc.sessions.begin() as db:
        user_id = db.scalar(select(User.id).where(User.username == "alice"))
        db.add(SsoSessionIndex(sid=old, user_id=user_id, amr="pwd"))
    upgraded = env.client()
    upgraded.set_cookie(COOKIE, old)
    assert not _signed_in(env, upgraded)
    # Never listed: not to the administrator (the API) nor on the account page.
    listed = _api(env, "GET", f"/users/{_uuid(env)}/sessions")
    assert listed.status_code == 200 and old not in listed.get_data(as_text=True)
    assert session_id_of(now_cookie) in [i["id"] for i in listed.json["items"]]
    assert old not in now_browser.get("/account/sessions").get_data(as_text=True)
    with env.svc.sessions() as db:
        assert db.get(SsoSessionIndex, old) is None  # pruned on the way
    # Signing in again gives a session of the new kind.
    assert login(upgraded, "alice", PASSWORD).status_code in (302, 303)
    fresh = upgraded.get_cookie(COOKIE).value
    assert fresh != old and _signed_in(env, upgraded)
    assert PREFIX + session_id_of(fresh) in store_keys(env.svc, PREFIX)
