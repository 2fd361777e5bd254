"""Retention limits at their boundaries, one second either side on the frozen clock (the
hardening issue: every time limit): ``[audit] retention_days`` (what ``idp audit prune`` without
--before removes), ``[gdpr] request_retention_days`` (ended erasure requests the retention job
removes) and ``inactive_erase_days`` (inactive accounts erased), ``[risk] history_days`` (the
sign-ins the risk rules compare with), ``failure_window_minutes`` and the other rule windows,
``[notifications] digest_minutes`` (a digest's batching period) and ``[saml]
min_refresh_seconds`` (the soonest a federation aggregate is fetched again). Each run asserts
both what went and what stayed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import audit as manage_audit
from idp.manage import gdpr as manage_gdpr
from idp.storage import audit as chain
from idp.storage.models import AuditEvent
from idp.storage.models_gdpr import DeletionRequest

DAY = 86400


@pytest.mark.parametrize(("age_margin", "pruned"), [(1, True), (-1, False)])
def test_audit_rows_older_than_retention_days_are_pruned(make_app, clock, age_margin, pruned):
    app = make_app(clock=clock, audit={"retention_days": 30})
    svc = app.extensions["idp"]
    written = clock.utcnow()
    with svc.sessions.begin() as db:
        chain.audit(db, "test.edge", at=written, target="edge")
    clock.advance(30 * DAY + age_margin)  # the row is retention + margin seconds old
    with transaction(svc, Actor.operator("test")) as ctx:
        result = manage_audit.prune_before(ctx, None)
    assert result.before == clock.utcnow() - timedelta(days=30)
    with svc.sessions() as db:
        left = db.scalars(select(AuditEvent.action).where(AuditEvent.action == "test.edge")).all()
    assert (left == []) is pruned
    assert chain.verify_chain(svc.engine).ok


@pytest.mark.parametrize(("age_margin", "removed"), [(1, True), (-1, False)])
def test_ended_erasure_requests_older_than_request_retention_days_go(
    make_app, clock, age_margin, removed
):
    app = make_app(clock=clock, gdpr={"request_retention_days": 90})
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        db.add(DeletionRequest(user_uuid="u-ended", status="rejected", created_at=clock.utcnow()))
        db.add(DeletionRequest(user_uuid="u-open", status="pending", created_at=clock.utcnow()))
    clock.advance(90 * DAY + age_margin)
    with transaction(svc, Actor.operator("test")) as ctx:
        report = manage_gdpr.purge(ctx)
    with svc.sessions() as db:
        left = sorted(db.scalars(select(DeletionRequest.user_uuid)).all())
    assert report.requests_removed == (1 if removed else 0)
    # A pending request is never removed, however old.
    assert left == (["u-open"] if removed else ["u-ended", "u-open"])


@pytest.mark.parametrize(("age_margin", "erased"), [(1, True), (-1, False)])
def test_accounts_inactive_longer_than_inactive_erase_days_are_erased(
    make_app, clock, age_margin, erased
):
    from login_kit import make_user

    from idp.storage.models import User

    app = make_app(clock=clock, gdpr={"inactive_erase_days": 30})
    svc = app.extensions["idp"]
    make_user(svc, "root")  # an active account stays whatever its age
    uid = make_user(svc, "gone")
    with svc.sessions.begin() as db:
        user = db.get(User, uid)
        user.status, user.updated_at = "inactive", clock.utcnow()
    clock.advance(30 * DAY + age_margin)
    with transaction(svc, Actor.operator("test")) as ctx:
        report = manage_gdpr.purge(ctx)
    with svc.sessions() as db:
        left = sorted(db.scalars(select(User.username)).all())
    assert len(report.inactive_erased) == (1 if erased else 0)
    assert left == (["root"] if erased else ["gone", "root"])


# --- the risk rules' windows (idp.sso.risk.RiskEngine on the app's store and frozen clock) ---


def _engine(svc, **policy):
    from idp.core.risk import RiskPolicy
    from idp.sso.risk import RiskEngine

    return RiskEngine(svc.store, svc.clock, RiskPolicy(**policy), svc.geoip)


@pytest.mark.parametrize(("gap", "found"), [(5 * 60 - 1, True), (5 * 60 + 1, False)])
def test_credential_stuffing_counts_names_within_stuffing_window_minutes(app, clock, gap, found):
    """Three names failing from one address: found when the third comes within the window of
    the first, not when the first has left it."""
    engine = _engine(app.extensions["idp"], stuffing_accounts=3, stuffing_window_minutes=5)
    assert engine.password_failed("203.0.113.9", "ann", None) == []
    clock.advance(gap - 1)
    assert engine.password_failed("203.0.113.9", "bob", None) == []
    clock.advance(1)
    events = engine.password_failed("203.0.113.9", "cid", None)
    assert bool(events) is found
    block = app.extensions["idp"].store.get("risk:block:203.0.113.9")
    assert (block is not None) is found


@pytest.mark.parametrize(("after", "blocked"), [(15 * 60 - 1, True), (15 * 60 + 1, False)])
def test_a_stuffing_block_lasts_stuffing_block_minutes(app, clock, after, blocked):
    svc = app.extensions["idp"]
    engine = _engine(svc, stuffing_accounts=2, stuffing_block_minutes=15)
    engine.password_failed("203.0.113.7", "ann", None)
    assert engine.password_failed("203.0.113.7", "bob", None)  # found: blocked from now
    block_key = engine.block_key("203.0.113.7")
    assert engine.block_retry_after(svc.store.get(block_key)) == 15 * 60
    clock.advance(after)
    assert (svc.store.get(block_key) is not None) is blocked


@pytest.mark.parametrize(("gap", "found"), [(10 * 60 - 1, True), (10 * 60 + 1, False)])
def test_an_mfa_burst_counts_within_mfa_burst_window_minutes(app, clock, gap, found):
    engine = _engine(app.extensions["idp"], mfa_burst_failures=2, mfa_burst_window_minutes=10)
    assert engine.mfa_failed(42) == []
    clock.advance(gap)
    assert bool(engine.mfa_failed(42)) is found


@pytest.mark.parametrize(("side", "counted"), [(-1, True), (1, False)])
def test_a_failed_password_counts_for_failure_window_minutes(make_app, clock, side, counted):
    """``[risk] failure_window_minutes`` (7 here, not the default 60) from the app's settings:
    the account's and the address's failures still count just inside it, not just after."""
    from support import boundary_step

    from idp.core.risk import RiskPolicy
    from idp.sso.risk import RiskEngine

    app = make_app(clock=clock, risk={"adaptive": True, "failure_window_minutes": 7})
    svc = app.extensions["idp"]
    engine = RiskEngine(svc.store, svc.clock, RiskPolicy.from_settings(svc.settings.risk), None)
    engine.password_failed("203.0.113.5", "ann", 42)
    engine.password_failed("203.0.113.5", "ann", 42)
    clock.advance(7 * 60 + side * boundary_step(svc))
    assert engine._failures("203.0.113.5", 42) == ((2, 2) if counted else (0, 0))


# --- [notifications] digest_minutes: events after a digest wait for the period's end -------


@pytest.mark.parametrize(("after", "mailed"), [(9 * 60 - 1, False), (9 * 60 + 1, True)])
def test_a_security_digest_batches_events_for_digest_minutes(make_app, clock, after, mailed):
    from admin_kit import make_admin

    from idp.manage.security_digest import claim

    app = make_app(clock=clock, notifications={"digest_minutes": 9})
    svc = app.extensions["idp"]
    make_admin(svc, "root")

    def event_then_claim():
        with svc.sessions.begin() as db:
            chain.audit(db, "security.credential_stuffing", at=clock.utcnow(), ip="81.2.69.1")
        with svc.sessions.begin() as db:
            return claim(db, svc)

    first = event_then_claim()
    assert first.digest is not None and first.digest.total == 1  # the first goes out at once
    sent = clock.utcnow()
    clock.advance(after)
    later = event_then_claim()
    assert (later.digest is not None) is mailed
    assert later.due_at == (None if mailed else sent + timedelta(minutes=9))


# --- the SAML metadata's validity (a value: what we write) ----------------------------------


@pytest.mark.parametrize("valid", [3600, 86400 * 7])
def test_our_saml_metadata_is_valid_for_metadata_valid_seconds(make_app, valid):
    import time
    from datetime import UTC, datetime

    from lxml import etree

    app = make_app(saml={"metadata_valid_seconds": valid})
    before = time.time()
    body = app.test_client().get("/saml/metadata").get_data()
    after = time.time()
    root = etree.fromstring(body)
    until = datetime.strptime(root.get("validUntil")[:19], "%Y-%m-%dT%H:%M:%S")
    until = until.replace(tzinfo=UTC).timestamp()
    assert int(before) + valid - 1 <= until <= after + valid + 1
    assert root.get("cacheDuration") == f"PT{max(60, valid // 10)}S"


# --- [risk] history_days: the sign-ins a new one is compared with, and how long they are kept --

HISTORY = 40 * DAY
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(("age", "known"), [(HISTORY - 1, True), (HISTORY + 1, False)])
def test_a_device_is_known_from_sign_ins_within_history_days(make_app, clock, age, known):
    """The phone signed in ``age`` seconds ago, the laptop a minute after: within history_days
    the phone is a known device (score 0) and its row stays; past it the phone is a new device
    (the laptop's sign-in is still history) and its row is pruned."""
    from login_kit import GOOD, login, make_user
    from mfa_kit import audits

    from idp.storage.models_risk import RiskSignIn

    risk = {"adaptive": True, "history_days": 40, "notify_at": 50, "step_up_at": 50}
    app = make_app(clock=clock, risk=risk)
    svc = app.extensions["idp"]
    make_user(svc, "ann")

    def sign_in(user_agent: str) -> dict:
        client = app.test_client()
        client.environ_base.update(REMOTE_ADDR="81.2.69.10", HTTP_USER_AGENT=user_agent)
        assert login(client, "ann", GOOD).headers["Location"] == "/account/"
        return audits(svc, "login.success")[-1].details["risk"]

    def history() -> list:
        with svc.sessions() as db:
            return sorted(db.scalars(select(RiskSignIn.at)).all())

    sign_in(IPHONE)
    clock.advance(60)
    sign_in(FIREFOX)
    first, second = history()
    clock.advance(age - 60)
    assessed = sign_in(IPHONE)
    if known:
        assert assessed == {"score": 0, "reasons": []}
        assert history()[:2] == [first, second]
    else:
        assert assessed == {"score": 20, "reasons": [{"factor": "new_device", "points": 20}]}
        assert history()[:1] == [second]
    assert len(history()) == (3 if known else 2)


# --- [saml] min_refresh_seconds: the soonest a federation aggregate is fetched again ---------

MIN_REFRESH = 1234


@pytest.mark.parametrize("outcome", ["imported", "failed"])
@pytest.mark.parametrize(("after", "due_now"), [(MIN_REFRESH - 1, False), (MIN_REFRESH + 1, True)])
def test_a_federation_is_due_again_after_min_refresh_seconds(
    make_app, clock, tmp_path, monkeypatch, outcome, after, due_now
):
    """An aggregate asking to be fetched again after a second (cacheDuration PT1S), or a
    refresh that failed: the federation is not due before min_refresh_seconds, and due after."""
    from federation_kit import add_federation, aggregate, sp_entity

    from federation.aggregate import due
    from idp.manage import federations

    app = make_app(clock=clock, saml={"min_refresh_seconds": MIN_REFRESH})
    svc = app.extensions["idp"]
    key, cert = add_federation(svc, tmp_path)
    data = aggregate(
        [sp_entity("https://a.example/sp")],
        key,
        cert,
        valid_until=clock.utcnow() + timedelta(days=7),
        cache="PT1S",
    )
    if outcome == "imported":
        monkeypatch.setattr(federations, "_fetch", lambda ctx, url: data)
    with transaction(svc, Actor.operator("test")) as ctx:
        result = federations.refresh(ctx, "testfed")
    assert result.ok is (outcome == "imported")
    clock.advance(after)
    assert (due(svc.sessions, clock.utcnow()) == ["testfed"]) is due_now
