"""``idp gdpr purge [--dry-run] [--json]``: accounts inactive for longer than
``[gdpr] inactive_erase_days`` are erased (never the last administrator, never with 0), ended
deletion requests older than ``request_retention_days`` go, expired refresh tokens go; the dry
run counts the same and changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

from admin_kit import make_admin
from directory_api_kit import snapshot
from login_kit import make_user
from sqlalchemy import func, select, update

from idp.cli import main
from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients
from idp.storage.models import AuditEvent, User
from idp.storage.models_gdpr import DeletionRequest
from idp.storage.models_oauth import RefreshToken


def _setup(svc):
    now = svc.clock.utcnow()
    old = now - timedelta(days=400)
    make_user(svc, "gone", status="inactive")
    make_user(svc, "recent", status="inactive")
    make_user(svc, "active")
    make_admin(svc, "solo", status="inactive")  # the only administrator, inactive
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_clients.create(
            ctx,
            "shop",
            name="Shop",
            grant_types=["authorization_code"],
            redirect_uris=["https://shop.example/cb"],
        )
    with svc.sessions.begin() as db:
        ids = dict(db.execute(select(User.username, User.id)).all())
        db.execute(update(User).where(User.username.in_(["gone", "solo"])).values(updated_at=old))
        for n, (when, status) in enumerate(
            [(old, "rejected"), (old, "withdrawn"), (old, "pending"), (now, "rejected")]
        ):
            db.add(
                DeletionRequest(
                    user_id=ids["active"], user_uuid=f"u-{n}", status=status, created_at=when
                )
            )
        for name, end in (("dead", now - timedelta(days=1)), ("live", now + timedelta(days=1))):
            db.add(
                RefreshToken(
                    token_hash=name,
                    grant_id=name,
                    client_id="shop",
                    user_id=ids["active"],
                    scope="openid",
                    expires_at=end,
                )
            )


def _run(capsys, *args):
    code = main(["gdpr", "purge", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_dry_run_then_purge(make_app, monkeypatch, capsys, instance_dir):
    # The real clock: the command line runs on it.
    app = make_app(gdpr={"inactive_erase_days": 365})
    svc = app.extensions["idp"]
    _setup(svc)
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    monkeypatch.setenv("IDP_GDPR_INACTIVE_ERASE_DAYS", "365")
    before = snapshot(svc)
    dry = _run(capsys, "--dry-run")
    assert dry == {
        "dry_run": True,
        "inactive_erased": 1,
        "inactive_kept_last_admin": 1,
        "requests_removed": 2,
        "refresh_tokens_removed": 1,
        "session_index_rows_removed": 0,
    }
    assert snapshot(svc) == before
    done = _run(capsys)
    assert {k: v for k, v in done.items() if k != "dry_run"} == {
        k: v for k, v in dry.items() if k != "dry_run"
    }
    with svc.sessions() as db:
        names = set(db.scalars(select(User.username)))
        assert names == {"recent", "active", "solo"}
        assert sorted(db.scalars(select(DeletionRequest.user_uuid))) == ["u-2", "u-3"]
        assert list(db.scalars(select(RefreshToken.token_hash))) == ["live"]
        assert (
            db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "user.erased")
            )
            == 1
        )
        assert (
            db.scalar(select(AuditEvent.details).where(AuditEvent.action == "gdpr.purged"))[
                "inactive_erased"
            ]
            == 1
        )
    # Once more: nothing left to do.
    again = _run(capsys)
    assert again["inactive_erased"] == 0 and again["requests_removed"] == 0


def test_zero_days_erases_nobody(make_app, monkeypatch, capsys, instance_dir):
    svc = make_app().extensions["idp"]
    _setup(svc)
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    report = _run(capsys)
    assert report["inactive_erased"] == 0
    with svc.sessions() as db:
        assert "gone" in set(db.scalars(select(User.username)))


def test_text_output_and_bad_option(app, svc, monkeypatch, capsys, instance_dir):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    assert main(["gdpr", "purge", "--dry-run"]) == 0
    out, _err = capsys.readouterr()
    assert out.startswith("would remove: 0 inactive account(s) erased")
    assert main(["gdpr", "purge", "--days", "3"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and "--days" in err
