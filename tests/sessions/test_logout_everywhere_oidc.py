"""Log out everywhere means everywhere (issue 19), for OIDC: the account page's "sign out
everywhere", the admin API's DELETE .../sessions and a password change end the SSO sessions,
refuse the refresh tokens issued in them and the user's offline refresh tokens (unless the user
kept that app), and reach the RP's back-channel logout listener (a real HTTP server on loopback
whose logout token is verified with pyjwt against the IdP's JWKS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from api_kit import service_token
from oidc_support import PASSWORD, RP, Env, _csrf, authorize, build_env, login, token
from sqlalchemy import select

from idp.sso.sessions import COOKIE, session_id_of

LOCAL_RPS = {"allow_http": True, "allow_private_addresses": True}
OTHER = "https://other.example.org/cb"
ISSUER = "http://127.0.0.1:5000"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, LOCAL_RPS) as built:
        yield built


@contextmanager
def backchannel_listener(env: Env) -> Iterator[list[str]]:
    """A real RP back-channel endpoint for client web2; yields the logout tokens it received."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", 0))
            received.append(parse_qs(self.rfile.read(length).decode())["logout_token"][0])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from idp.oidc.clients import client_cache
    from idp.storage.models import Client

    with env.svc.sessions.begin() as db:
        row = db.get(Client, "web2")
        row.meta = dict(
            row.meta, backchannel_logout_uri=f"http://127.0.0.1:{server.server_address[1]}/bcl"
        )
    client_cache(env.svc).bump()
    try:
        yield received
    finally:
        with env.svc.sessions.begin() as db:  # later logouts of web2 send nothing
            row = db.get(Client, "web2")
            row.meta = {k: v for k, v in row.meta.items() if k != "backchannel_logout_uri"}
        client_cache(env.svc).bump()
        server.shutdown()


def verified_logout(env: Env, received: list[str], sid: str) -> dict:
    """The logout token for session ``sid``, verified as an RP would (signature, iss, aud)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for raw in list(received):
            header = pyjwt.get_unverified_header(raw)
            jwks = env.client().get("/jwks").json
            key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
            claims = pyjwt.decode(
                raw,
                pyjwt.PyJWK(key).key,
                algorithms=[header["alg"]],
                audience="web2",
                issuer=ISSUER,
            )
            assert header["typ"] == "logout+jwt"
            if claims.get("sid") == sid:
                return claims
        time.sleep(0.05)
    raise AssertionError(f"no logout token for sid {sid} arrived")


def tokens(env: Env, browser, client_id: str, scope: str = "openid") -> dict:
    redirect = OTHER if client_id == "web2" else RP
    got = authorize(browser, client_id=client_id, redirect_uri=redirect, scope=scope)
    body = token(
        browser,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": redirect},
        auth=(client_id, env.secrets[client_id]),
    ).json
    body["sid"] = pyjwt.decode(body["id_token"], options={"verify_signature": False})["sid"]
    return body


def refresh(env: Env, client_id: str, refresh_token: str):
    return token(
        env.client(),
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client_id, env.secrets[client_id]),
    )


def signed_in(env: Env, browser) -> bool:
    return env.svc.sso_sessions.peek(session_id_of(browser.get_cookie(COOKIE).value)) is not None


def live_offline_clients(env: Env, username: str) -> set[str]:
    from idp.storage.models import User
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        uid = db.scalar(select(User.id).where(User.username == username))
        return set(
            db.scalars(
                select(RefreshToken.client_id).where(
                    RefreshToken.user_id == uid,
                    RefreshToken.offline.is_(True),
                    RefreshToken.revoked.is_(False),
                )
            )
        )


def test_sign_out_everywhere_on_the_account_page_reaches_everything(env):
    here, phone = env.client(), env.client()
    login(here)
    online = tokens(env, phone, "web2")  # online token, RP with a back-channel listener
    offline = tokens(env, phone, "web", "openid offline_access")
    kept = tokens(env, phone, "fapi", "openid offline_access")
    mine = tokens(env, here, "web")  # this browser's own online token
    with backchannel_listener(env) as received:
        page = here.get("/account/sessions").get_data(as_text=True)
        assert "Keep Web App signed in" in page and "Keep No Rotation signed in" in page
        done = here.post(
            "/account/sessions",
            data={"csrf_token": _csrf(page), "session": "others", "keep": ["fapi", "spa"]},
        )
        assert done.status_code == 302
        claims = verified_logout(env, received, online["sid"])
    assert claims["sub"] and "nonce" not in claims
    assert not signed_in(env, phone) and signed_in(env, here)
    for client_id, body in (("web2", online), ("web", offline)):
        refused = refresh(env, client_id, body["refresh_token"])
        assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    assert refresh(env, "fapi", kept["refresh_token"]).status_code == 200  # the user kept it
    assert refresh(env, "web", mine["refresh_token"]).status_code == 200  # this browser's
    assert live_offline_clients(env, "alice") == {"fapi"}  # "spa" held none: nothing to keep


def test_a_forged_keep_value_keeps_nothing(env):
    here, phone = env.client(), env.client()
    login(here)
    offline = tokens(env, phone, "web", "openid offline_access")
    page = here.get("/account/sessions").get_data(as_text=True)
    here.post(
        "/account/sessions",
        data={"csrf_token": _csrf(page), "session": "others", "keep": ["web' OR 1=1", ""]},
    )
    assert refresh(env, "web", offline["refresh_token"]).json["error"] == "invalid_grant"


def test_the_form_without_csrf_ends_nothing(env):
    here, phone = env.client(), env.client()
    login(here)
    online = tokens(env, phone, "web2")
    resp = here.post("/account/sessions", data={"session": "others"})
    assert resp.status_code == 400
    assert signed_in(env, phone)
    assert refresh(env, "web2", online["refresh_token"]).status_code == 200


def test_refresh_tokens_of_a_session_that_expired_are_revoked_too(env):
    """A session that ended by itself leaves its online refresh token (the family outlives the
    store record); "everywhere" revokes it as well."""
    here, gone = env.client(), env.client()
    login(here)
    online = tokens(env, gone, "web2")
    env.svc.store.delete("ssoh:" + session_id_of(gone.get_cookie(COOKIE).value))  # expired
    page = here.get("/account/sessions").get_data(as_text=True)
    here.post("/account/sessions", data={"csrf_token": _csrf(page), "session": "others"})
    assert refresh(env, "web2", online["refresh_token"]).json["error"] == "invalid_grant"


def test_password_change_ends_other_sessions_and_every_token(env):
    from idp.backends.chain import password_hasher
    from idp.storage.models import User

    here, phone = env.client(), env.client()
    login(here, "bob")
    login(phone, "bob")
    with backchannel_listener(env) as received:
        online = tokens(env, phone, "web2")
        offline = tokens(env, phone, "web", "openid offline_access")
        page = here.get("/account/password").get_data(as_text=True)
        new = "Another-Horse-Battery-77"
        resp = here.post(
            "/account/password",
            data={
                "csrf_token": _csrf(page),
                "current_password": PASSWORD,
                "new_password": new,
                "confirm": new,
            },
        )
        assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
        verified_logout(env, received, online["sid"])
    assert not signed_in(env, phone) and signed_in(env, here)
    assert refresh(env, "web2", online["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(env, "web", offline["refresh_token"]).json["error"] == "invalid_grant"
    with env.svc.sessions.begin() as db:  # back to the shared password for other tests
        user = db.scalar(select(User).where(User.username == "bob"))
        user.password_hash = password_hasher(env.svc).hash(PASSWORD)


def test_admin_api_ends_everything_unless_keep_offline(env):
    headers = {"Authorization": "Bearer " + service_token(env.app)}
    for keep, expect_offline in (("true", 200), (None, 400)):
        phone = env.client()
        online = tokens(env, phone, "web2")
        offline = tokens(env, phone, "web", "openid offline_access")
        uuid = user_uuid(env, "alice")
        url = f"/api/v1/users/{uuid}/sessions" + (f"?keep_offline={keep}" if keep else "")
        resp = env.client().delete(url, headers=headers)
        assert resp.status_code == 200 and resp.json["ended"] >= 1
        assert not signed_in(env, phone)
        assert refresh(env, "web2", online["refresh_token"]).status_code == 400
        assert refresh(env, "web", offline["refresh_token"]).status_code == expect_offline


def test_admin_api_keep_offline_must_be_a_boolean(env):
    phone = env.client()
    tokens(env, phone, "web2")
    uuid = user_uuid(env, "alice")
    resp = env.client().delete(
        f"/api/v1/users/{uuid}/sessions?keep_offline=maybe",
        headers={"Authorization": "Bearer " + service_token(env.app)},
    )
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
    assert signed_in(env, phone)


def user_uuid(env: Env, username: str) -> str:
    from idp.storage.models import User

    with env.svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == username))
