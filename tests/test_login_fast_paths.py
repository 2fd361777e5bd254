"""The login's fast paths give the same answers as the slow ones they replace.

- Enrolled second factors come from one combined query; it agrees with every factor's own
  check after each enrolment and removal, also when another worker (a second app on the same
  database) made the change, and a user with any factor still gets the MFA step.
- wtforms' validation messages come from a per-process catalog cache: German and English
  requests served one after the other by the same worker each get their own language.
- MFA policies without group or role rules read no memberships; with them, memberships apply.
- The password check reads only the columns it needs and still upgrades old hashes.
"""

from __future__ import annotations

import re

import pytest
from login_kit import GOOD, csrf, login, make_user, user_row
from mfa_kit import add_channel, enrol_totp, step_page
from passlib.hash import pbkdf2_sha256
from sqlalchemy import delete, event, select

from idp.backends import backup_codes
from idp.core.steps import enrolled_factors, factors
from idp.storage.models import Group, GroupMember, User
from idp.storage.models_mfa import MfaBackupCode, MfaOtpChannel, MfaTotp
from idp.storage.models_webauthn import WebAuthnCredential
from idp.storage.store import SqlStore


def _ids(svc, user, db=None) -> list[str]:
    return sorted(f.id for f in enrolled_factors(svc, user, db))


def _one_by_one(svc, user) -> list[str]:
    return sorted(f.id for f in factors(svc).values() if f.enrolled(svc, user))


class _Statements:
    """SQL statements the engine runs while the block is open; with ``store``, also those the
    store runs on SQLite's DBAPI connections directly (which SQLAlchemy's events don't see)."""

    def __init__(self, engine, store=None) -> None:
        self.engine, self.store, self.seen = engine, store, []

    def _hook(self, _conn, _cur, statement, *_rest) -> None:
        self.seen.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._hook)
        if isinstance(self.store, SqlStore):
            run = self.store._sqlite_rows

            def recorded(text, args):
                self.seen.append(text)
                return run(text, args)

            self.store._sqlite_rows = recorded
        return self.seen

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)
        if isinstance(self.store, SqlStore):
            del self.store._sqlite_rows


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> dict[str, str]:
    """Overrides for the database under test (PostgreSQL from IDP_TEST_DATABASE_URL)."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}


@pytest.fixture
def two_workers(make_app, database):
    """Two apps (as two worker processes would be) on one database."""
    return make_app(**database), make_app(**database)


def test_enrolled_factors_follow_enrolment_and_removal_made_by_another_worker(two_workers):
    app_a, app_b = two_workers
    a, b = app_a.extensions["idp"], app_b.extensions["idp"]
    uid = make_user(a, "ann")
    ann = user_row(a, "ann")
    assert _ids(a, ann) == _one_by_one(a, ann) == []

    enrol_totp(b, uid)
    assert _ids(a, ann) == _one_by_one(a, ann) == ["totp"]

    with b.sessions.begin() as db:
        codes = backup_codes.regenerate(b, db, uid)
    add_channel(b, uid, "email", "ann@example.org")
    add_channel(b, uid, "sms", "+491701234567")
    with b.sessions.begin() as db:
        db.add(
            WebAuthnCredential(
                user_id=uid,
                credential_id="cred-1",
                public_key=b"k",
                name="Key",
                created_at=b.clock.utcnow(),
            )
        )
    every = ["backup", "email", "sms", "totp", "webauthn"]
    assert _ids(a, ann) == _one_by_one(a, ann) == every

    # Spending the last backup code ends that enrolment.
    for code in codes:
        assert backup_codes.spend(b, uid, code)
    assert _ids(a, ann) == _one_by_one(a, ann) == ["email", "sms", "totp", "webauthn"]

    with b.sessions.begin() as db:
        db.execute(delete(MfaTotp).where(MfaTotp.user_id == uid))
        db.execute(delete(MfaOtpChannel).where(MfaOtpChannel.kind == "sms"))
        db.execute(delete(WebAuthnCredential).where(WebAuthnCredential.user_id == uid))
    assert _ids(a, ann) == _one_by_one(a, ann) == ["email"]

    with b.sessions.begin() as db:
        db.execute(delete(MfaOtpChannel).where(MfaOtpChannel.user_id == uid))
        db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == uid))
    assert _ids(a, ann) == _one_by_one(a, ann) == []


def test_enrolled_factors_is_one_statement_and_sees_the_callers_unflushed_changes(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions() as db:
        ann = db.get(User, uid)
        with _Statements(svc.engine) as seen:
            assert _ids(svc, ann, db) == []
        assert len(seen) == 1 and "mfa_totp" in seen[0] and "webauthn_credentials" in seen[0]
        # Not yet flushed: the query autoflushes in the caller's transaction.
        db.add(
            MfaOtpChannel(
                user_id=uid,
                kind="email",
                destination="a@example.org",
                created_at=svc.clock.utcnow(),
            )
        )
        assert _ids(svc, ann, db) == ["email"]
        db.rollback()
    assert _ids(svc, user_row(svc, "ann")) == []


def test_switched_off_factors_are_not_enrolled(make_app):
    app = make_app(mfa={"backup_codes": 0}, webauthn={"enabled": False})
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        db.add(MfaBackupCode(user_id=uid, code_hash="h", created_at=svc.clock.utcnow()))
        db.add(
            WebAuthnCredential(
                user_id=uid,
                credential_id="cred-1",
                public_key=b"k",
                name="Key",
                created_at=svc.clock.utcnow(),
            )
        )
    ann = user_row(svc, "ann")
    assert _ids(svc, ann) == _one_by_one(svc, ann) == []


def test_a_factor_enrolled_by_another_worker_gets_the_mfa_step(two_workers):
    app_a, app_b = two_workers
    a, b = app_a.extensions["idp"], app_b.extensions["idp"]
    uid = make_user(a, "ann")
    client = app_a.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/account/"
    client = app_a.test_client()

    add_channel(b, uid, "email", "ann@example.org")
    resp = login(client, "ann", GOOD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/step")
    assert not any(c.startswith("idp_session=") for c in resp.headers.getlist("Set-Cookie"))
    assert "a***@example.org" in step_page(client)


@pytest.mark.parametrize(
    ("language", "required"),
    [("de", "Dieses Feld wird benötigt."), ("en", "This field is required.")],
)
def test_wtforms_messages_in_the_page_language_from_one_worker(make_app, language, required):
    app = make_app(branding={"languages": ["en", "de"]})
    other = "en" if language == "de" else "de"
    client = app.test_client()
    for lang in (other, language):  # the other language first: its catalog is cached by then
        page = client.get("/login", headers={"Accept-Language": lang}).get_data(as_text=True)
        resp = client.post(
            "/login",
            data={"csrf_token": csrf(page), "username": "", "password": ""},
            headers={"Accept-Language": lang},
        )
        assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert f'<html lang="{language}"' in html
    assert re.search(r'class="field-error"[^>]*>' + re.escape(required), html)


def test_group_policy_still_reads_memberships(make_app):
    app = make_app(mfa={"policies": ["group:admins"]})
    svc = app.extensions["idp"]
    ann_id, bob_id = make_user(svc, "ann"), make_user(svc, "bob")
    with svc.sessions.begin() as db:
        group = Group(name="admins", path="admins")
        db.add(group)
        db.flush()
        db.add(GroupMember(group_id=group.id, user_id=ann_id))
    enrol_totp(svc, ann_id)
    enrol_totp(svc, bob_id)
    # Both have a factor; only the group member is required to use it.
    from idp.web import mfa

    with app.test_request_context("/login"), svc.sessions() as db:
        assert mfa.requirement(db, db.get(User, ann_id), None).required
        assert not mfa.requirement(db, db.get(User, bob_id), None).required


def test_policy_without_group_or_role_rules_reads_no_memberships(make_app):
    app = make_app(mfa={"policies": ["user:ann"]})
    svc = app.extensions["idp"]
    ann_id = make_user(svc, "ann")
    from idp.web import mfa

    with app.test_request_context("/login"), svc.sessions() as db:
        ann = db.get(User, ann_id)
        with _Statements(svc.engine) as seen:
            assert mfa.requirement(db, ann, None).required
        assert seen == []


def test_imported_hash_upgraded_by_the_column_only_password_check(make_app, database):
    app = make_app(**database)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann", password=None)
    with svc.sessions.begin() as db:
        db.get(User, uid).password_hash = pbkdf2_sha256.hash(GOOD)
    assert login(app.test_client(), "ann", GOOD).headers["Location"] == "/account/"
    with svc.sessions() as db:
        stored = db.scalar(select(User.password_hash).where(User.id == uid))
    assert stored.startswith("$argon2id$")


def test_login_end_writes_index_audit_and_last_login(make_app, database):
    from idp.clock import FrozenClock
    from idp.sso.sessions import session_id_of
    from idp.storage.models import AuditEvent
    from idp.storage.models_auth import SsoSessionIndex

    clock = FrozenClock(1_800_000_000.0)
    app = make_app(clock=clock, **database)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    assert resp.headers["Location"] == "/account/"
    sid = session_id_of(client.get_cookie("idp_session").value)
    with svc.sessions() as db:
        row = db.get(SsoSessionIndex, sid)
        assert (row.user_id, row.amr, row.ip) == (uid, "pwd", "127.0.0.1")
        assert row.created_at == clock.utcnow()
        ann = db.get(User, uid)
        assert ann.last_login_at == clock.utcnow()
        (event_row,) = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "login.success")
        ).all()
        assert (event_row.actor, event_row.target) == (ann.uuid, ann.uuid)
        assert event_row.details == {"amr": ["pwd"]} and event_row.ip == "127.0.0.1"
        assert event_row.request_id
    # A second login of the same browser gets a fresh session id; the old one leaves the index.
    page = client.get("/login?prompt=login").get_data(as_text=True)
    resp = client.post(
        "/login", data={"csrf_token": csrf(page), "username": "ann", "password": GOOD}
    )
    assert resp.headers["Location"] == "/account/"
    new_sid = session_id_of(client.get_cookie("idp_session").value)
    assert new_sid != sid
    with svc.sessions() as db:
        assert db.get(SsoSessionIndex, sid) is None
        assert db.get(SsoSessionIndex, new_sid) is not None


@pytest.mark.parametrize("name", ["ann", "nobody"])
def test_known_and_unknown_users_cost_one_hash(make_app, monkeypatch, name):
    from idp.backends import passwords

    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    calls = []
    real = passwords._CONTEXT

    class Counting:
        def verify(self, *a):
            calls.append("verify")
            return real.verify(*a)

        def verify_and_update(self, *a):
            calls.append("verify")
            return real.verify_and_update(*a)

    monkeypatch.setattr(passwords, "_CONTEXT", Counting())
    resp = login(app.test_client(), name, "wrong-Password-1")
    assert resp.status_code == 401
    assert calls == ["verify"]


def test_release_write_lock_commits_writes_and_leaves_reads_open(make_app, database):
    from idp.storage.models import AuditEvent
    from idp.web.login import release_write_lock

    app = make_app(**database)
    svc = app.extensions["idp"]
    uid = make_user(svc, "ann")
    with svc.sessions() as db:
        db.get(User, uid)
        conn = db.connection()
        release_write_lock(db)
        # Only read: on SQLite the session keeps its connection (no commit, no new checkout).
        assert (db.connection() is conn) == (not database)
        db.add(AuditEvent(at=svc.clock.utcnow(), action="test.pending"))
        release_write_lock(db)
        db.execute(delete(AuditEvent).where(AuditEvent.action == "test.bulk"))
        db.add(AuditEvent(at=svc.clock.utcnow(), action="test.bulk"))
        db.flush()  # a write already sent: the driver's transaction is open
        release_write_lock(db)
        # Both writes are visible to another connection at once (the store's, say).
        with svc.engine.connect() as other:
            seen = other.execute(
                select(AuditEvent.action).where(AuditEvent.action.like("test.%"))
            ).scalars()
            assert sorted(seen) == ["test.bulk", "test.pending"]


def test_compiled_templates_are_reused_with_the_instance_override_loader(make_app, instance_dir):
    (instance_dir / "templates").mkdir(exist_ok=True)
    app = make_app()
    client = app.test_client()
    assert client.get("/login").status_code == 200
    first = app.jinja_env.get_template("login.html")
    assert client.get("/login").status_code == 200
    # No per-request up-to-date check or recompilation: the same compiled template object.
    assert app.jinja_env.auto_reload is False
    assert app.jinja_env.get_template("login.html") is first


def test_a_login_reads_the_user_row_once_and_the_store_three_times(make_app, database):
    """The password check takes the user the login found (no second lookup); the lockout state
    (lock and failure counter) is one store read; with no failure counted nothing is deleted.
    (The network rules' generation is read at most once per ``reload_poll_seconds``: a first
    sign-in of this worker reads it, the one measured here does not.)"""
    app = make_app(**database, server={"reload_poll_seconds": 60})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    first = app.test_client()
    page = first.get("/login").get_data(as_text=True)
    first.post("/login", data={"csrf_token": csrf(page), "username": "ann", "password": GOOD})
    client = app.test_client()
    token = csrf(client.get("/login").get_data(as_text=True))
    with _Statements(svc.engine, svc.store) as seen:
        resp = client.post("/login", data={"csrf_token": token, "username": "ann",
                                           "password": GOOD})
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    user_reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM users" in s]
    assert len(user_reads) == 1, user_reads
    store_reads = [s for s in seen if "FROM kv_store" in s and s.lstrip().startswith("SELECT")]
    assert len(store_reads) == 2, store_reads  # the IP throttle, then lock + failure counter
    deletes = [s for s in seen if s.lstrip().startswith("DELETE FROM kv_store")]
    assert not [s for s in deletes if re.search(r'kv_store\."?key"? =', s)]  # (purges aside)
