"""``id_token_hint`` accepts only our ID tokens (OIDC Core 1.0 §3.1.2.1 at the authorization
endpoint; RP-Initiated Logout 1.0 §2 at the end-session endpoint). Every JWT this IdP signs
(RFC 9068 access tokens, Back-Channel Logout tokens) verifies against the same keys, so the
signature alone proves nothing: a hint must have the ID token's type and shape. The logout
endpoint may take an expired ID token (RP-Initiated Logout §2), never another kind of token.
"""

from __future__ import annotations

import jwt as pyjwt
import pytest
from oidc_support import RP, authorize, query, token
from support import clock_swapped, store_keys


def _sign_in(env):
    """alice signed in at ``web``: her browser, its tokens and the session's public sid."""
    c = env.client()
    got = authorize(c, scope="openid profile")
    tokens = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    sid = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
    return c, tokens, sid


def _logout_token(env, sid: str, sub: str) -> str:
    from idp.oidc.logout import logout_token

    return logout_token(env.svc, "web", sub, sid)


def _alive(env, sid: str) -> bool:
    from idp.oidc.server import engine

    with env.app.test_request_context("/"):
        return engine(env.svc).session_alive(sid)


def _codes(env) -> int:
    return len(store_keys(env.svc, "code:"))


@pytest.mark.parametrize("kind", ["access_token", "logout_token"])
@pytest.mark.parametrize("prompt", ["none", None])
def test_authorize_refuses_other_tokens_as_hint(env, kind, prompt):
    """An access token or a logout token of the signed-in user, for this very client, is not an
    ID token: the request goes back with invalid_request and no code is issued."""
    c, tokens, sid = _sign_in(env)
    sub = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    hint = tokens["access_token"] if kind == "access_token" else _logout_token(env, sid, sub)
    assert pyjwt.decode(hint, options={"verify_signature": False})["sub"] == sub
    before = _codes(env)
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": RP,
        "scope": "openid",
        "state": "h1",
        "id_token_hint": hint,
    }
    if prompt:
        params["prompt"] = prompt
    resp = c.get("/oauth2/authorize", query_string=params)
    assert resp.status_code == 302
    got = query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(RP + "?")
    assert got["error"] == "invalid_request" and got["state"] == "h1" and "code" not in got
    assert "ID token" in got["error_description"]
    assert _codes(env) == before
    # The real ID token of the same login is still accepted as the hint.
    ok = c.get(
        "/oauth2/authorize",
        query_string=dict(params, id_token_hint=tokens["id_token"], prompt="none"),
    )
    assert "code" in query(ok.headers["Location"])


@pytest.mark.parametrize("kind", ["access_token", "logout_token"])
def test_end_session_refuses_other_tokens_as_hint_and_keeps_the_session(env, kind):
    c, tokens, sid = _sign_in(env)
    sub = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    hint = tokens["access_token"] if kind == "access_token" else _logout_token(env, sid, sub)
    resp = c.get(
        "/oauth2/logout",
        query_string={
            "id_token_hint": hint,
            "post_logout_redirect_uri": "https://rp.example.org/bye",
            "state": "s",
        },
    )
    assert resp.status_code == 400 and "Location" not in resp.headers
    page = resp.get_data(as_text=True)
    assert "The sign-out request carries an invalid ID token." in page
    assert 'class="ref"' in page
    assert _alive(env, sid)
    # ...and the refresh token of that session still works.
    again = token(
        c,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=("web", env.secrets["web"]),
    )
    assert again.status_code == 200, again.json


def test_end_session_accepts_an_expired_id_token(env):
    """RP-Initiated Logout §2: the hint may have expired; it is still an ID token."""
    from idp.clock import FrozenClock

    c, tokens, sid = _sign_in(env)
    exp = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})["exp"]
    with clock_swapped(env.svc, FrozenClock(exp + 5)):
        assert _alive(env, sid)
        resp = c.get(
            "/oauth2/logout",
            query_string={
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "https://rp.example.org/bye",
                "state": "s",
            },
        )
    assert resp.status_code == 303
    assert resp.headers["Location"] == "https://rp.example.org/bye?state=s"
    assert not _alive(env, sid)


def test_signer_tells_id_tokens_from_other_jwts(env):
    """The shape check on its own: signed userinfo answers (no exp/iat) and tokens of another
    issuer are refused too."""
    from idp.oidc.server import engine
    from idp.oidc.tokens import InvalidToken

    eng = engine(env.svc)
    now = eng.now()
    base = {
        "iss": eng.issuer,
        "sub": "u-1",
        "aud": "web",
        "azp": "web",
        "iat": now,
        "exp": now + 60,
    }
    assert eng.signer.verify_id_token(eng.signer.sign(base), eng.issuer)["sub"] == "u-1"
    bad = [
        eng.signer.sign(dict(base, client_id="web", scope="openid", jti="j"), typ="at+jwt"),
        eng.signer.sign(dict(base, client_id="web", scope="openid")),  # AT claims, typ JWT
        eng.signer.sign(dict(base, events={"x": {}}), typ="logout+jwt"),
        eng.signer.sign(dict(base, events={"x": {}})),
        eng.signer.sign({"iss": eng.issuer, "sub": "u-1", "aud": "web"}),  # signed userinfo
        eng.signer.sign(dict(base, iss="https://other.example")),
        eng.signer.sign(dict(base, aud=[])),
    ]
    for value in bad:
        with pytest.raises(InvalidToken):
            eng.signer.verify_id_token(value, eng.issuer)
