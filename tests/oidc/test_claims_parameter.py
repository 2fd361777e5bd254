"""The ``claims`` request parameter (OIDC Core 1.0 §5.5) never widens what a client may get.

The rule (docs/oidc.md, "Claims"): a claim named in ``claims`` is released only when the rule
that produces it (the claims mapper, docs/claims.md) has no scope, has a scope granted in this
request, or has a scope the client may be granted (its registered ``scope``; admin/scim also
need the user's permission) — and then only after the user consented to that claim by name.
Anything else is dropped, as §5.5.1 lets the OP do even for essential claims. Keycloak draws the
same line: a claim comes from a client scope assigned to the client, whatever is asked for.

Tokens are read as a relying party would: the ID token is verified with PyJWT against the
published JWKS (signature, issuer, audience)."""

from __future__ import annotations

import json
import re

import jwt as pyjwt
import pytest
from oidc_support import RP, _csrf, login, query, token
from sqlalchemy import select

ISSUER = "http://127.0.0.1:5000"
GREEDY = json.dumps({"userinfo": {"email": None, "groups": None}, "id_token": {"roles": None}})


@pytest.fixture(scope="module", autouse=True)
def _clients(env):
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    with env.svc.sessions.begin() as db:
        reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
        _, env.secrets["only"] = reg.create(
            "only",
            name="Openid Only",
            redirect_uris=[RP],
            scope="openid",
            grant_types=["authorization_code"],
        )
        _, env.secrets["mail"] = reg.create(
            "mail",
            name="Mail App",
            redirect_uris=[RP],
            scope="openid email",
            grant_types=["authorization_code", "refresh_token"],
        )
    client_cache(env.svc).bump()


def _params(client_id: str, **extra: str) -> dict[str, str]:
    return dict(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": RP,
            "scope": "openid",
            "state": "cl-1",
            "nonce": "n-1",
        },
        **extra,
    )


def _verified(client, id_token: str, audience: str) -> dict:
    jwks = client.get("/jwks").json
    header = pyjwt.get_unverified_header(id_token)
    key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    return pyjwt.decode(
        id_token,
        key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub"]},
    )


def _consent_page(c, params: dict[str, str]):
    resp = c.get("/oauth2/authorize", query_string=params)
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/oauth2/consent")
    page = c.get(resp.headers["Location"])
    return resp.headers["Location"], page.get_data(as_text=True)


def _approve(c, location: str, html: str) -> dict[str, str]:
    resp = c.post(location, data={"csrf_token": _csrf(html), "approve": "Allow"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return query(resp.headers["Location"])


def _consented(env, client_id: str) -> list[str] | None:
    from idp.storage.models import User
    from idp.storage.models_oauth import Consent

    with env.svc.sessions() as db:
        uid = db.scalar(select(User.id).where(User.username == "alice"))
        return db.scalar(
            select(Consent.scopes).where(Consent.user_id == uid, Consent.client_id == client_id)
        )


def _exchange(env, c, client_id: str, code: str) -> dict:
    resp = token(
        c,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": RP},
        auth=(client_id, env.secrets[client_id]),
    )
    assert resp.status_code == 200, resp.json
    return resp.json


def _userinfo(c, access_token: str):
    return c.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def test_openid_only_client_gets_no_claims_by_naming_them(env):
    """alice has an e-mail address, groups and a role; a client allowed only ``openid`` that
    names them in ``claims`` gets none of them, and the consent page does not offer them."""
    c = env.client()
    login(c)
    location, html = _consent_page(c, _params("only", claims=GREEDY))
    assert re.findall(r'data-scope="([^"]+)"', html) == ["openid"]
    assert "data-claim" not in html and "also asks for" not in html
    got = _approve(c, location, html)
    assert got["state"] == "cl-1" and _consented(env, "only") == ["openid"]
    body = _exchange(env, c, "only", got["code"])
    claims = _verified(c, body["id_token"], "only")
    assert claims["nonce"] == "n-1"
    assert not {"email", "email_verified", "groups", "roles"} & set(claims)
    info = _userinfo(c, body["access_token"])
    assert info.status_code == 200
    assert set(info.json) == {"sub"} and info.json["sub"] == claims["sub"]


def test_claim_within_the_clients_scopes_is_released_after_consent_to_it(env):
    """A client allowed ``email`` asks for the e-mail address through ``claims`` without the
    email scope: the consent page names it in plain words, and after consent userinfo (the
    member it was asked in) carries it; groups, outside the client's scopes, stay out."""
    c = env.client()
    login(c)
    request = json.dumps({"userinfo": {"email": {"essential": True}, "groups": None}})
    location, html = _consent_page(c, _params("mail", claims=request))
    assert re.findall(r'data-scope="([^"]+)"', html) == ["openid"]
    assert re.findall(r'data-claim="([^"]+)"', html) == ["email"]
    assert "Mail App also asks for:" in html and "Your e-mail address" in html
    got = _approve(c, location, html)
    assert _consented(env, "mail") == ["claim:email", "openid"]  # not the whole email scope
    body = _exchange(env, c, "mail", got["code"])
    assert body["scope"] == "openid"
    claims = _verified(c, body["id_token"], "mail")
    assert "email" not in claims and "groups" not in claims  # asked for userinfo only
    info = _userinfo(c, body["access_token"]).json
    assert info["email"] == "alice@example.org"
    assert "groups" not in info and "email_verified" not in info

    # A later request for one more claim asks again: prompt=none cannot answer it...
    more = json.dumps({"userinfo": {"email": None}, "id_token": {"email_verified": None}})
    resp = c.get("/oauth2/authorize", query_string=_params("mail", claims=more, prompt="none"))
    silent = query(resp.headers["Location"])
    assert silent["error"] == "consent_required" and "code" not in silent
    assert _consented(env, "mail") == ["claim:email", "openid"]
    # ...and the page lists it; the same request as before goes through silently.
    location, html = _consent_page(c, _params("mail", claims=more))
    assert "email_verified" in re.findall(r'data-claim="([^"]+)"', html)
    assert "Whether your e-mail address is verified" in html
    same = c.get("/oauth2/authorize", query_string=_params("mail", claims=request, prompt="none"))
    assert "code" in query(same.headers["Location"])


def test_claim_released_by_claims_follows_the_clients_current_scopes(env):
    """The admin takes ``email`` away from the client: the access token issued before that
    no longer brings the e-mail address from userinfo (current policy, not the old grant)."""
    from idp.oidc.clients import client_cache
    from idp.storage.models import Client

    c = env.client()
    login(c)
    request = json.dumps({"userinfo": {"email": None}})
    resp = c.get("/oauth2/authorize", query_string=_params("mail", claims=request))
    if resp.headers["Location"].startswith("/oauth2/consent"):
        page = c.get(resp.headers["Location"]).get_data(as_text=True)
        got = _approve(c, resp.headers["Location"], page)
    else:
        got = query(resp.headers["Location"])
    body = _exchange(env, c, "mail", got["code"])
    assert _userinfo(c, body["access_token"]).json["email"] == "alice@example.org"
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "mail")
        row.meta = dict(row.meta, scope="openid")
    client_cache(env.svc).bump()
    try:
        info = _userinfo(c, body["access_token"])
        assert info.status_code == 200 and "email" not in info.json
        refreshed = token(
            c,
            {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            auth=("mail", env.secrets["mail"]),
        ).json
        assert "email" not in _verified(c, refreshed["id_token"], "mail")
        assert "email" not in _userinfo(c, refreshed["access_token"]).json
    finally:
        with env.svc.sessions.begin() as db:
            row = db.get(Client, "mail")
            row.meta = dict(row.meta, scope="openid email")
        client_cache(env.svc).bump()
