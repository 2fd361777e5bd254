"""A refresh token presented again after rotation, or after its family was revoked, through the
real token endpoint raises ``security.refresh_token_replay`` (docs/risk.md) naming the user,
the client and the address; a normal refresh raises nothing."""

from __future__ import annotations

from oidc_support import RP, authorize, token
from sqlalchemy import select

from idp.storage.models import AuditEvent, User


def _replays(env) -> list[AuditEvent]:
    with env.svc.sessions() as db:
        rows = list(db.scalars(select(AuditEvent).where(
            AuditEvent.action == "security.refresh_token_replay").order_by(AuditEvent.id)))
        for row in rows:
            db.expunge(row)
        return rows


def _alice(env) -> str:
    with env.svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == "alice"))


def _refresh(c, env, value):
    return token(c, {"grant_type": "refresh_token", "refresh_token": value},
                 auth=("web", env.secrets["web"]))


def test_replayed_and_revoked_refresh_tokens_raise_the_event(env):
    c = env.client()
    c.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    got = authorize(c, client_id="web", scope="openid offline_access")
    first = token(c, {"grant_type": "authorization_code", "code": got["code"],
                      "redirect_uri": RP}, auth=("web", env.secrets["web"])).json
    before = len(_replays(env))
    second = _refresh(c, env, first["refresh_token"])
    assert second.status_code == 200
    assert len(_replays(env)) == before  # a normal rotation is no replay
    reuse = _refresh(c, env, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    rows = _replays(env)[before:]
    assert len(rows) == 1
    assert rows[0].target == _alice(env) and rows[0].ip == "203.0.113.7"
    assert rows[0].details["kind"] == "rotated" and rows[0].details["client_id"] == "web"
    # The family is revoked now: its newest token presented again is a replay of a revoked one.
    again = _refresh(c, env, second.json["refresh_token"])
    assert again.status_code == 400
    rows = _replays(env)[before:]
    assert [r.details["kind"] for r in rows] == ["rotated", "revoked"]


def test_unknown_refresh_token_is_no_replay(env):
    c = env.client()
    before = len(_replays(env))
    assert _refresh(c, env, "not-a-token").status_code == 400
    assert len(_replays(env)) == before
