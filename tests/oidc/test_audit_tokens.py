"""Token issuance and revocation are audited (issue 19): one ``token.issued`` row per
authorization_code or client_credentials grant (a refresh is not audited), written with the
refresh token it starts; ``token.revoked`` on RFC 7009 revocation and when a reused refresh
token revokes its family. No row holds a token."""

from __future__ import annotations

import base64

from oidc_support import RP, authorize, token
from sqlalchemy import func, select

from idp.storage import audit as chain
from idp.storage.models import AuditEvent, User
from idp.storage.models_oauth import RefreshToken

UA = "AuditTest/1.0"


def _rows(env, action: str) -> list[AuditEvent]:
    with env.svc.sessions() as db:
        rows = list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )
        db.expunge_all()
        return rows


def _alice(env) -> str:
    with env.svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == "alice"))


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _code_tokens(env, c, scope="openid offline_access"):
    got = authorize(c, client_id="web", scope=scope)
    reply = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    )
    assert reply.status_code == 200
    return reply.json


def test_code_grant_writes_one_issued_row_with_its_refresh_token(env):
    c = env.client()
    c.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    c.environ_base["HTTP_USER_AGENT"] = UA
    before = len(_rows(env, "token.issued"))
    body = _code_tokens(env, c)
    rows = _rows(env, "token.issued")[before:]
    assert len(rows) == 1
    row = rows[0]
    assert row.actor == row.target == _alice(env)
    assert row.ip == "203.0.113.9" and row.user_agent == UA and row.request_id
    d = row.details
    assert d["grant_type"] == "authorization_code" and d["client_id"] == "web"
    assert d["scopes"] == ["openid", "offline_access"]
    assert d["refresh_token"] is True and d["offline"] is True and d["jti"]
    with env.svc.sessions() as db:
        family = db.scalar(
            select(RefreshToken.grant_id).where(
                RefreshToken.token_hash == env.svc.hasher.hash(body["refresh_token"])
            )
        )
    assert d["grant"] == family
    assert body["refresh_token"] not in str(d) and body["access_token"] not in str(d)
    # A refresh is not audited (too frequent): the family's first issue was.
    again = token(
        c,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=("web", env.secrets["web"]),
    )
    assert again.status_code == 200
    assert len(_rows(env, "token.issued")) == before + 1
    assert chain.verify_chain(env.svc.engine).ok


def test_client_credentials_writes_one_issued_row(env):
    c = env.client()
    c.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    before = len(_rows(env, "token.issued"))
    reply = token(
        c,
        {"grant_type": "client_credentials", "scope": "api"},
        auth=("plain", env.secrets["plain"]),
    )
    assert reply.status_code == 200
    rows = _rows(env, "token.issued")[before:]
    assert len(rows) == 1
    assert rows[0].actor == rows[0].target == "client:plain"
    assert rows[0].ip == "198.51.100.4"
    assert rows[0].details["grant_type"] == "client_credentials"
    assert rows[0].details["scopes"] == ["api"] and "refresh_token" not in rows[0].details


def test_a_refused_token_request_writes_no_issued_row(env):
    c = env.client()
    before = len(_rows(env, "token.issued"))
    reply = token(
        c, {"grant_type": "client_credentials", "scope": "api"}, auth=("plain", "wrong-secret")
    )
    assert reply.status_code == 401
    assert len(_rows(env, "token.issued")) == before


def test_rfc7009_revocation_is_audited_for_both_token_types(env):
    c = env.client()
    c.environ_base["REMOTE_ADDR"] = "203.0.113.10"
    body = _code_tokens(env, c)
    auth = _basic("web", env.secrets["web"])
    before = len(_rows(env, "token.revoked"))
    # Another client's revocation is a silent no-op, and audited as nothing.
    assert (
        c.post(
            "/oauth2/revoke",
            data={"token": body["access_token"]},
            headers=_basic("web2", env.secrets["web2"]),
        ).status_code
        == 200
    )
    assert len(_rows(env, "token.revoked")) == before
    assert (
        c.post("/oauth2/revoke", data={"token": body["access_token"]}, headers=auth).status_code
        == 200
    )
    assert (
        c.post(
            "/oauth2/revoke",
            data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
            headers=auth,
        ).status_code
        == 200
    )
    at_row, rt_row = _rows(env, "token.revoked")[before:]
    assert at_row.details["kind"] == "access_token" and at_row.details["jti"]
    assert at_row.actor == "client:web" and at_row.target == _alice(env)
    assert at_row.ip == "203.0.113.10" and at_row.details["reason"] == "revocation"
    assert rt_row.details["kind"] == "refresh_token"
    assert rt_row.details["reason"] == "revocation" and rt_row.details["client_id"] == "web"
    assert rt_row.target == _alice(env) and rt_row.details["grant"]
    with env.svc.sessions() as db:
        alive = db.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(
                RefreshToken.grant_id == rt_row.details["grant"], RefreshToken.revoked.is_(False)
            )
        )
    assert alive == 0


def test_reuse_of_a_rotated_refresh_token_audits_the_family_revocation(env):
    c = env.client()
    body = _code_tokens(env, c)
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    assert token(c, refresh, auth=("web", env.secrets["web"])).status_code == 200
    before = len(_rows(env, "token.revoked"))
    assert token(c, refresh, auth=("web", env.secrets["web"])).status_code == 400
    rows = _rows(env, "token.revoked")[before:]
    assert len(rows) == 1
    assert rows[0].details["reason"] == "refresh_token_reuse"
    assert rows[0].details["client_id"] == "web" and rows[0].target == _alice(env)
    assert chain.verify_chain(env.svc.engine).ok


def test_consent_granted_and_revoked_are_audited_with_their_scopes(env):
    from oidc_support import _csrf

    from idp.storage.models_oauth import Consent

    c = env.client()
    c.environ_base["REMOTE_ADDR"] = "203.0.113.11"
    before = len(_rows(env, "consent.granted"))
    got = authorize(
        c, client_id="web2", redirect_uri="https://other.example.org/cb", scope="openid email"
    )
    assert "code" in got
    rows = _rows(env, "consent.granted")[before:]
    assert len(rows) == 1
    assert rows[0].actor == rows[0].target == _alice(env) and rows[0].ip == "203.0.113.11"
    assert rows[0].details["client_id"] == "web2"
    assert set(rows[0].details["scopes"]) == {"openid", "email"}
    # Withdrawn on the account page: the row names the client and what it held.
    gone = len(_rows(env, "consent.revoked"))
    page = c.get("/account/apps").get_data(as_text=True)
    resp = c.post("/account/apps", data={"csrf_token": _csrf(page), "app": "web2"})
    assert resp.status_code == 302
    revoked = _rows(env, "consent.revoked")[gone:]
    assert len(revoked) == 1 and revoked[0].details["app"] == "web2"
    assert set(revoked[0].details["scopes"]) >= {"openid", "email"}
    with env.svc.sessions() as db:
        assert (
            db.scalar(select(func.count()).select_from(Consent).where(Consent.client_id == "web2"))
            == 0
        )
