"""``idp users create --email-verified``: the operator vouches for the address, so relying
applications get ``email_verified`` true (in userinfo) for that user; without the flag, false."""

from __future__ import annotations

import json

from api_kit import code_flow_token
from sqlalchemy import select

from idp.cli import main
from idp.storage.models import AuditEvent, User

PASSWORD = "Vouched-For-Address-42"


def _create(monkeypatch, instance_dir, capsys, username: str, *flags: str) -> dict:
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    args = ["users", "create", "--username", username, "--email", f"{username}@example.org"]
    code = main([*args, "--password", PASSWORD, *flags, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _userinfo(app, username: str) -> dict:
    token = code_flow_token(app, username, PASSWORD, scope="openid email")
    resp = app.test_client().get("/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json


def test_email_verified_flag_reaches_userinfo(app, instance_dir, monkeypatch, capsys):
    vera = _create(monkeypatch, instance_dir, capsys, "vera", "--email-verified")
    nils = _create(monkeypatch, instance_dir, capsys, "nils")
    svc = app.extensions["idp"]
    with svc.sessions() as db:
        flags = dict(db.execute(select(User.username, User.email_verified)).all())
        created = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.created", AuditEvent.actor == "cli")
        ).all()
    assert flags["vera"] is True and flags["nils"] is False
    assert {e.target: e.details["email_verified"] for e in created} == {
        vera["id"]: True,
        nils["id"]: False,
    }
    got = _userinfo(app, "vera")
    assert got["sub"] == vera["id"] and got["email"] == "vera@example.org"
    assert got["email_verified"] is True
    assert _userinfo(app, "nils")["email_verified"] is False
