"""Sign-in through an upstream OIDC provider, end to end: a second instance of this IdP serves
as the upstream for real (loopback HTTP), our broker is its client, and a downstream RP's ID
token from the broker is verified with PyJWT (not our code)."""

from __future__ import annotations

import base64

import jwt
import pytest
import requests
from broker_kit import (
    BROKER,
    RP,
    authorize,
    back,
    broker_idp,
    choose,
    follow_to_rp,
    upstream_idp,
    upstream_login,
)
from sqlalchemy import func, select


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with upstream_idp(tmp_path_factory) as up:
        yield up


@pytest.fixture(scope="module")
def broker(tmp_path_factory, upstream):
    with broker_idp(tmp_path_factory, upstream) as b:
        yield b


def _redeem(broker, client, code: str, verifier: str) -> dict:
    raw = base64.b64encode(f"rp:{broker.rp_secret}".encode()).decode()
    resp = client.post("/oauth2/token", headers={"Authorization": f"Basic {raw}"}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": RP,
        "code_verifier": verifier})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _verified_id_token(broker, client, token: str) -> dict:
    jwks = client.get("/jwks").get_json() if client.get("/jwks").status_code == 200 else \
        client.get(client.get("/.well-known/openid-configuration").get_json()["jwks_uri"]
                   .replace(BROKER, "")).get_json()
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, jwt.PyJWK(key).key, algorithms=[header["alg"]], audience="rp",
                      issuer=BROKER)


def _users(broker) -> int:
    from idp.storage.models import User

    with broker.svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(User))


def _links(broker) -> list[tuple[str, str]]:
    from idp.storage.models import User
    from idp.storage.models_broker import UpstreamLink

    with broker.svc.sessions() as db:
        return sorted(db.execute(select(User.username, UpstreamLink.subject).join(
            User, User.id == UpstreamLink.user_id)).all())


def test_jit_sign_in_through_the_upstream_reaches_the_rp(broker, upstream):
    client = broker.client()
    resp, verifier = authorize(client)
    started = choose(client, resp.headers["Location"], "corp")
    assert started.status_code == 303
    assert started.headers["Location"].startswith(upstream.url + "/oauth2/authorize")
    browser = requests.Session()
    returned = upstream_login(browser, started.headers["Location"], "uma")
    before = _users(broker)
    answer = follow_to_rp(client, back(client, returned))
    assert "code" in answer, answer
    tokens = _redeem(broker, client, answer["code"], verifier)
    claims = _verified_id_token(broker, client, tokens["id_token"])
    assert claims["amr"] == ["fed"]
    assert claims["email"] == "uma@corp.example"
    assert _users(broker) == before + 1
    assert ("uma", ) == tuple(u for u, _s in _links(broker) if u == "uma")
