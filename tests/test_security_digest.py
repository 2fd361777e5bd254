"""The administrators' security digest over the audit log: a lockout mailed at once to the
holders of audit:log:read and [notifications] admin_emails, a burst of 500 events batched into
one more mail when the period ends, the watermark (nothing mailed twice, nothing lost), an
assignment of a permission-carrying role reported as an escalation (an ordinary one not), two
app instances on one database not double-sending, and ``idp notifications send``."""

from __future__ import annotations

import json
import threading

import pytest
from admin_kit import make_admin
from click.testing import CliRunner
from login_kit import GOOD, csrf, make_user, outbox, text_of
from sqlalchemy import func, select

from idp.storage.audit import audit
from idp.storage.models import AuditEvent, Role, User
from idp.storage.models_devices import NotificationMark


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}


def setup(svc):
    make_admin(svc, "root")  # Administrator: holds audit:log:read
    make_user(svc, "ann")


def digests(svc, to=None):
    return [
        m
        for m in outbox(svc)
        if m["Subject"].startswith("Security digest") and (to is None or m["To"] == to)
    ]


def lock_out(app, username="ann"):
    client = app.test_client()
    for _ in range(svc_of(app).settings.lockout.max_failures):
        page = client.get("/login").get_data(as_text=True)
        client.post(
            "/login",
            data={"csrf_token": csrf(page), "username": username, "password": "wrong-" + GOOD},
        )


def svc_of(app):
    return app.extensions["idp"]


def burst(svc, n, action="security.credential_stuffing"):
    with svc.sessions.begin() as db:
        for i in range(n):
            audit(db, action, at=svc.clock.utcnow(), ip=f"81.2.69.{i % 250}", accounts=12)


def mark(svc):
    with svc.sessions() as db:
        row = db.get(NotificationMark, "admin_digest")
        return (row.last_id, row.sent_at) if row else (0, None)


def max_audit_id(svc):
    with svc.sessions() as db:
        return db.scalar(select(func.max(AuditEvent.id)))


@pytest.fixture
def app(make_app, clock, database):
    app = make_app(clock=clock, notifications={"admin_emails": ["soc@example.org"]}, **database)
    setup(svc_of(app))
    return app


def test_lockout_mailed_at_once_then_a_burst_of_500_is_one_more_mail(app, clock):
    svc = svc_of(app)
    lock_out(app)
    first = digests(svc)
    assert sorted(m["To"] for m in first) == ["root@example.org", "soc@example.org"]
    body = text_of(first[0])
    assert "login.lockout" in body and "ann" in body and "Account locked out" in body
    assert "ann@example.org" not in [m["To"] for m in first]  # not an administrator

    # 500 events within the batching period: held back, nothing mailed yet.
    burst(svc, 499)
    lock_out(app, "nobody")  # one more notifiable event through a request: still held back
    assert len(digests(svc)) == 2
    clock.advance(14 * 60)
    app.test_client().get("/healthz")
    assert len(digests(svc)) == 2
    clock.advance(61)
    app.test_client().get("/healthz")  # the worker remembers when the batch is due
    batch = [m for m in digests(svc, "soc@example.org")]
    assert len(batch) == 2
    text = text_of(batch[1])
    assert "500 event" in batch[1]["Subject"]
    assert "security.credential_stuffing" in text and "… and 450 more." in text
    assert mark(svc)[0] == max_audit_id(svc)

    # The watermark holds: nothing new, nothing mailed; later events go in a new digest.
    clock.advance(3600)
    app.test_client().get("/healthz")
    assert len(digests(svc, "soc@example.org")) == 2


def test_escalation_reported_ordinary_role_not(app, clock):
    from idp.manage import Actor, transaction
    from idp.manage import roles as manage_roles
    from idp.manage import users as manage_users

    svc = svc_of(app)
    with transaction(svc, Actor.operator("test")) as ctx:
        plain = manage_roles.create(ctx, "reader-app", description="an app role")
        ann = ctx.db.scalar(select(User).where(User.username == "ann"))
        manage_users.assign_role(ctx, ann, plain)
    with app.test_request_context("/"):
        from idp.web import security_digest

        assert security_digest.run(svc)["sent"] == 0  # no permissions handed out
    with transaction(svc, Actor.operator("test")) as ctx:
        admin = ctx.db.scalar(select(Role).where(Role.name == "Administrator"))
        ann = ctx.db.scalar(select(User).where(User.username == "ann"))
        manage_users.assign_role(ctx, ann, admin)
    with app.test_request_context("/"):
        result = security_digest.run(svc)
    assert result["events"] == 1
    (mail,) = digests(svc, "soc@example.org")
    assert "user.role_assigned" in text_of(mail) and "Administrator" in text_of(mail)
    assert "Permissions given" in text_of(mail)


def test_two_app_instances_on_one_database_send_one_digest(make_app, clock, database):
    one = make_app(clock=clock, notifications={"admin_emails": ["soc@example.org"]}, **database)
    two = make_app(clock=clock, notifications={"admin_emails": ["soc@example.org"]}, **database)
    setup(svc_of(one))
    burst(svc_of(one), 20)
    from idp.web import security_digest

    results, gate = [], threading.Barrier(2)

    def worker(app):
        with app.test_request_context("/"):
            gate.wait()
            results.append(security_digest.run(svc_of(app)))

    threads = [threading.Thread(target=worker, args=(a,)) for a in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r["events"] for r in results) == [0, 20]
    # Even without the store lock, the watermark's compare-and-set lets only one mail.
    burst(svc_of(one), 5)
    clock.advance(16 * 60)
    for app in (one, two):
        svc_of(app).store.delete(security_digest.LOCK)
    results.clear()
    originals = {}
    for app in (one, two):
        store = svc_of(app).store
        originals[app] = store.add
        store.add = lambda *a, **k: True
    threads = [threading.Thread(target=worker, args=(a,)) for a in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for app in (one, two):
        svc_of(app).store.add = originals[app]
    assert sorted(r["events"] for r in results) == [0, 5]
    assert svc_of(two).mail_queue.wait_idle(15)
    # One outbox (one instance directory): one digest per round, each mailed once.
    assert len(digests(svc_of(one), "soc@example.org")) == 2


def test_cli_sends_when_due_and_says_so(app, clock, monkeypatch, instance_dir):
    from idp.cli import cli

    svc = svc_of(app)
    burst(svc, 3)
    for key, value in {
        "IDP_INSTANCE_DIR": str(instance_dir),
        "IDP_DATABASE_URL": svc.settings.database_url,
        "IDP_NOTIFICATIONS_ADMIN_EMAILS": '["soc@example.org"]',
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    first = runner.invoke(cli, ["notifications", "send", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output.strip().splitlines()[-1])["events"] == 3
    again = runner.invoke(cli, ["notifications", "send"])
    assert again.exit_code == 0 and "nothing to send" in again.output
    assert len(digests(svc, "soc@example.org")) == 1


def test_digest_period_setting_is_checked(make_app):
    from idp.errors import ConfigError

    with pytest.raises(ConfigError, match="digest_minutes"):
        make_app(notifications={"digest_minutes": 0})
    with pytest.raises(ConfigError, match="user_may_disable"):
        make_app(notifications={"user_may_disable": ["everything"]})
