"""A refresh applies current policy, not what was granted once (RFC 6749 §6: the new scope never
exceeds the original grant; RFC 9700 §4.14 on refresh tokens; OIDC Core §12.2 for the ID token):
scopes the client lost, and admin/scim scopes the user's roles no longer allow
(``oauth:scope:<name>``), are dropped from the new access and refresh tokens; an account that
may no longer be used (disabled, locked, expired, past its end date) gets ``invalid_grant``
with no new token and its refresh token left unused. Runs on a frozen clock."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from oidc_support import PASSWORD, RP, Env, authorize, login, token
from sqlalchemy import func, select
from support import base_overrides, init_database

SCOPE = "openid profile email scim offline_access"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from idp.app import create_app
    from idp.backends.chain import password_hasher
    from idp.clock import FrozenClock
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    instance = tmp_path_factory.mktemp("refresh") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides, clock=FrozenClock(1_800_000_000.0))
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    hasher = password_hasher(svc)
    made: dict[str, str] = {}
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_role("scim-user", ["oauth:scope:scim"])
        for name in ("alice", "pat", "lee"):
            d.create_user(
                NewUser(
                    username=name,
                    email=f"{name}@example.org",
                    given_name=name.title(),
                    password_hash=hasher.hash(PASSWORD),
                ),
                roles=["scim-user"],
            )
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        for client_id, extra in (("rot", {}), ("keep", {"refresh_token_rotation": False})):
            _, made[client_id] = reg.create(
                client_id,
                name=client_id,
                redirect_uris=[RP],
                scope=SCOPE,
                first_party=True,
                grant_types=["authorization_code", "refresh_token"],
                extra=extra,
            )
    yield Env(app, svc, made, None)
    svc.engine.dispose()


def _set_client_scope(env, client_id: str, scope: str) -> None:
    from idp.oidc.clients import client_cache
    from idp.storage.models import Client

    with env.svc.sessions.begin() as db:
        row = db.get(Client, client_id)
        row.meta = dict(row.meta, scope=scope)
    client_cache(env.svc).bump()


def _tokens(env, client_id: str, username: str, scope: str) -> dict:
    c = env.client()
    login(c, username)
    got = authorize(c, client_id=client_id, scope=scope, login_first=False)
    resp = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=(client_id, env.secrets[client_id]),
    )
    assert resp.status_code == 200, resp.json
    assert set(resp.json["scope"].split()) == set(scope.split())
    return resp.json


def _refresh(env, client_id: str, refresh_token: str):
    return token(
        env.client(),
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client_id, env.secrets[client_id]),
    )


def _rows(env, client_id: str):
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        return db.execute(
            select(RefreshToken.scope, RefreshToken.used_at)
            .where(RefreshToken.client_id == client_id)
            .order_by(RefreshToken.created_at)
        ).all()


def _row(env, value: str):
    from idp.oidc.server import engine

    return engine(env.svc).find_refresh_token(value)


def _claims(value: str) -> dict:
    return pyjwt.decode(value, options={"verify_signature": False})


@pytest.mark.parametrize("client_id", ["rot", "keep"])
def test_scope_removed_from_client_is_dropped_on_refresh(env, client_id):
    first = _tokens(env, client_id, "alice", "openid email offline_access")
    _set_client_scope(env, client_id, "openid profile offline_access")
    try:
        resp = _refresh(env, client_id, first["refresh_token"])
        assert resp.status_code == 200, resp.json
        body = resp.json
        assert body["scope"].split() == ["openid", "offline_access"]
        assert _claims(body["access_token"])["scope"] == "openid offline_access"
        assert "email" not in _claims(body["id_token"])
        info = env.client().get(
            "/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert info.status_code == 200 and "email" not in info.json
        row = _row(env, body["refresh_token"])
        assert row.scope == "openid offline_access"  # the rotated or the kept token alike
        again = _refresh(env, client_id, body["refresh_token"])
        assert again.status_code == 200 and "email" not in again.json["scope"].split()
    finally:
        _set_client_scope(env, client_id, SCOPE)


def test_scope_the_users_roles_no_longer_allow_is_dropped_on_refresh(env):
    from idp.storage.directory import Directory
    from idp.storage.models import User
    from idp.storage.models_oauth import RefreshToken

    first = _tokens(env, "rot", "pat", "openid scim offline_access")
    with env.svc.sessions.begin() as db:
        d = Directory(db)
        user = db.scalar(select(User).where(User.username == "pat"))
        assert d.unassign_role(user, d.role_by_name("scim-user")) == 1
    resp = _refresh(env, "rot", first["refresh_token"])
    assert resp.status_code == 200, resp.json
    assert resp.json["scope"].split() == ["openid", "offline_access"]
    assert "scim" not in _claims(resp.json["access_token"])["scope"].split()
    assert _row(env, resp.json["refresh_token"]).scope == "openid offline_access"
    # Asking for it back is no use: the grant's scope is an upper bound, not a promise.
    with env.svc.sessions() as db:
        before = db.scalar(select(func.count()).select_from(RefreshToken))
    wider = token(
        env.client(),
        {
            "grant_type": "refresh_token",
            "scope": "openid scim",
            "refresh_token": resp.json["refresh_token"],
        },
        auth=("rot", env.secrets["rot"]),
    )
    assert wider.status_code == 400 and wider.json["error"] == "invalid_scope"
    with env.svc.sessions() as db:
        after = db.scalar(select(func.count()).select_from(RefreshToken))
    assert after == before
    assert _row(env, resp.json["refresh_token"]).used_at is None  # not used up by the refusal


@pytest.mark.parametrize("change", ["inactive", "locked", "expired", "end_date"])
def test_unusable_account_cannot_refresh_and_keeps_its_token_unused(env, change):
    from idp.storage.models import User

    first = _tokens(env, "rot", "lee", "openid profile offline_access")
    clock = env.svc.clock
    with env.svc.sessions.begin() as db:
        user = db.scalar(select(User).where(User.username == "lee"))
        if change == "end_date":
            user.end_date = clock.utcnow().date()  # the last day the account works...
        else:
            user.status = change
    if change == "end_date":
        ok = _refresh(env, "rot", first["refresh_token"])  # ...still today
        assert ok.status_code == 200
        first = ok.json
        clock.advance(2 * 86400)
    rows_before = _rows(env, "rot")
    try:
        resp = _refresh(env, "rot", first["refresh_token"])
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
        assert "access_token" not in resp.json and "refresh_token" not in resp.json
        assert _rows(env, "rot") == rows_before
        assert _row(env, first["refresh_token"]).used_at is None
        assert not _row(env, first["refresh_token"]).revoked
        with env.svc.sessions.begin() as db:
            user = db.scalar(select(User).where(User.username == "lee"))
            user.status, user.end_date = "active", None
        # Restored, the same refresh token works: the refusal used nothing up.
        resp = _refresh(env, "rot", first["refresh_token"])
        assert resp.status_code == 200, resp.json
    finally:
        with env.svc.sessions.begin() as db:
            user = db.scalar(select(User).where(User.username == "lee"))
            user.status, user.end_date = "active", None
        if change == "end_date":
            clock.advance(-2 * 86400)


def test_refreshed_id_token_and_userinfo_carry_current_data(env):
    from idp.storage.models import User

    first = _tokens(env, "rot", "alice", "openid profile email offline_access")
    assert _claims(first["id_token"])["given_name"] == "Alice"
    with env.svc.sessions.begin() as db:
        user = db.scalar(select(User).where(User.username == "alice"))
        user.given_name, user.email = "Alicia", "alicia@example.org"
    try:
        resp = _refresh(env, "rot", first["refresh_token"])
        claims = _claims(resp.json["id_token"])
        assert claims["given_name"] == "Alicia" and claims["email"] == "alicia@example.org"
        info = (
            env.client()
            .get(
                "/oauth2/userinfo", headers={"Authorization": f"Bearer {resp.json['access_token']}"}
            )
            .json
        )
        assert info["given_name"] == "Alicia" and info["email"] == "alicia@example.org"
    finally:
        with env.svc.sessions.begin() as db:
            user = db.scalar(select(User).where(User.username == "alice"))
            user.given_name, user.email = "Alice", "alice@example.org"
