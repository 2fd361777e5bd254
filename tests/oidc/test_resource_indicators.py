"""RFC 8707 resource indicators are bounded: a client may name only the resource servers
registered for it (its ``resources`` metadata) or configured for every client
(``oidc.resource_servers``). Anything else is ``invalid_target`` (RFC 8707 §2): at the
authorization endpoint as an error redirect with no code stored, at the token endpoint as a
400 JSON error with no token issued. At the token endpoint a code or refresh token may only
narrow the audience to resources of its own grant (RFC 8707 §2.2)."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from oidc_support import RP, authorize, query, token
from sqlalchemy import func, select
from support import store_keys

API = "https://api.example.org/"
OTHER = "https://other-api.example.org/"
GLOBAL = "https://shared.example.org/api"


@pytest.fixture(scope="module", autouse=True)
def _resources(env):
    """``web`` may use API and OTHER; every client may use GLOBAL (the setting, applied to this
    module's app by swapping the engine's settings)."""
    from idp.oidc.clients import client_cache
    from idp.oidc.server import engine
    from idp.settings import Section
    from idp.storage.models import Client

    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web")
        row.meta = dict(row.meta, resources=[API, OTHER])
    client_cache(env.svc).bump()
    eng = engine(env.svc)
    saved = eng.settings
    data = dict(saved.as_dict(), resource_servers=(GLOBAL,))
    eng.settings = Section("oidc.", data)
    yield
    eng.settings = saved


def _codes(env) -> int:
    return len(store_keys(env.svc, "code:"))


def _refresh_rows(env) -> int:
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(RefreshToken))


def _aud(access_token: str):
    return pyjwt.decode(access_token, options={"verify_signature": False})["aud"]


@pytest.mark.parametrize(
    "resource",
    [
        "https://evil.example.org/",  # a well-formed URI nobody registered
        "https://api.example.org",  # not the registered string (exact match)
        "https://api.example.org/#frag",
    ],
)
def test_authorize_refuses_unknown_resource_without_storing_a_code(env, resource):
    c = env.client()
    authorize(c)  # signed in and consented, so only the resource check stands in the way
    before = _codes(env)
    resp = c.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": RP,
            "scope": "openid",
            "state": "r1",
            "resource": resource,
        },
    )
    assert resp.status_code == 302 and resp.headers["Location"].startswith(RP + "?")
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_target" and got["state"] == "r1" and "code" not in got
    assert _codes(env) == before


def test_registered_and_configured_resources_become_the_audience(env):
    c = env.client()
    got = authorize(c, scope="openid", resource=API)
    body = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    assert _aud(body["access_token"]) == API
    got = authorize(c, scope="openid", resource=GLOBAL)
    body = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    assert _aud(body["access_token"]) == GLOBAL


def test_several_resources_at_authorize_become_the_audience(env):
    """RFC 8707 §2: "Multiple resource parameters MAY be used". /authorize refused a repeated
    ``resource`` as a duplicated parameter (found by the refresh mutation target); one of them
    unknown is still invalid_target, with no code stored."""
    c = env.client()
    got = authorize(c, scope="openid", resource=[API, OTHER])
    assert "code" in got, got
    body = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    assert _aud(body["access_token"]) == [API, OTHER]
    before = _codes(env)
    bad = authorize(c, scope="openid", resource=[API, "https://evil.example.org/"])
    assert bad["error"] == "invalid_target" and "code" not in bad
    assert _codes(env) == before


def test_client_credentials_refuses_unknown_resource_with_no_token(env):
    c = env.client()
    before = store_keys(env.svc)
    for resource in ("https://evil.example.org/", OTHER):  # OTHER is web's, not svc's
        bad = token(
            c,
            {"grant_type": "client_credentials", "scope": "api", "resource": resource},
            auth=("svc", env.secrets["svc"]),
        )
        assert bad.status_code == 400 and bad.mimetype == "application/json"
        assert bad.json["error"] == "invalid_target" and "access_token" not in bad.json
    assert store_keys(env.svc) == before
    ok = token(
        c,
        {"grant_type": "client_credentials", "scope": "api", "resource": GLOBAL},
        auth=("svc", env.secrets["svc"]),
    )
    assert ok.status_code == 200 and _aud(ok.json["access_token"]) == GLOBAL


def test_code_exchange_refuses_resource_outside_the_grant(env):
    """RFC 8707 §2.2: at the token endpoint, resource may only pick among the grant's."""
    c = env.client()
    got = authorize(c, scope="openid", resource=API)
    before = _refresh_rows(env)
    bad = token(
        c,
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": RP,
            "resource": "https://evil.example.org/",
        },
        auth=("web", env.secrets["web"]),
    )
    assert bad.status_code == 400 and bad.json["error"] == "invalid_target"
    assert "access_token" not in bad.json and _refresh_rows(env) == before
    got = authorize(c, scope="openid", resource=API)
    bad = token(
        c,
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": RP,
            "resource": OTHER,
        },  # allowed, but not granted
        auth=("web", env.secrets["web"]),
    )
    assert bad.status_code == 400 and bad.json["error"] == "invalid_target"
    assert _refresh_rows(env) == before


def test_refresh_refuses_unknown_resource_and_keeps_the_refresh_token(env):
    c = env.client()
    got = authorize(c, scope="openid", resource=API)
    body = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    before = _refresh_rows(env)
    bad = token(
        c,
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "resource": "https://evil.example.org/",
        },
        auth=("web", env.secrets["web"]),
    )
    assert bad.status_code == 400 and bad.json["error"] == "invalid_target"
    assert _refresh_rows(env) == before
    # Not used up by the refused request: it still refreshes, with the grant's audience.
    ok = token(
        c,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "resource": API},
        auth=("web", env.secrets["web"]),
    )
    assert ok.status_code == 200, ok.json
    assert _aud(ok.json["access_token"]) == API
