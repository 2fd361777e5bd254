"""Pruning the audit log from the REST API and the console (``audit:log:prune``, held by the
built-in Administrator role only): the same manage operation as ``idp audit prune``; the chain
still verifies after it; refused callers and unconfirmed forms delete nothing."""

from __future__ import annotations

from datetime import timedelta

from admin_kit import make_admin, signed_in
from api_kit import api, service_token
from login_kit import post_form
from sqlalchemy import func, select

from idp.storage import audit as chain
from idp.storage.models import AuditEvent

PROBLEM = "application/problem+json"


def _count(svc) -> int:
    """The old events still there; -1 once anything was pruned (a checkpoint exists)."""
    with svc.sessions() as db:
        if db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "audit.pruned")
        ):
            return -1
        return (
            db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.old")
            )
            or 0
        )


def _old_rows(svc, clock) -> str:
    """Events written a day ago, then the clock moved on; the day to prune before (today)."""
    with svc.sessions.begin() as db:
        for n in range(3):
            chain.audit(db, "test.old", at=clock.utcnow(), target=f"t{n}")
    clock.advance(86400)
    return clock.utcnow().date().isoformat()


def _day(offset: int, clock) -> str:
    return (clock.utcnow() + timedelta(days=offset)).date().isoformat()


def test_api_prune_dry_run_counts_then_prunes_and_the_chain_verifies(app, clock):
    svc = app.extensions["idp"]
    client = app.test_client()
    today = _old_rows(svc, clock)
    token = service_token(app)  # Administrator
    total = _count(svc)
    dry = api(client, "POST", "/api/v1/audit/prune", token, json={"before": today, "dry_run": True})
    assert dry.status_code == 200, dry.get_data(as_text=True)
    assert dry.json["dry_run"] is True and dry.json["rows"] >= 3
    assert dry.json["before"].startswith(today)
    assert _count(svc) == total  # a dry run deletes nothing
    done = api(client, "POST", "/api/v1/audit/prune", token, json={"before": today})
    assert done.status_code == 200
    assert done.json["rows"] == dry.json["rows"] and done.json["last_seq"]
    with svc.sessions() as db:
        assert (
            db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.old")
            )
            == 0
        )
        pruned = db.scalars(select(AuditEvent).where(AuditEvent.action == "audit.pruned")).one()
    assert pruned.actor == "client:" + pruned.actor.removeprefix("client:")
    assert pruned.details["rows"] == done.json["rows"]
    report = chain.verify_chain(svc.engine)
    assert report.ok and report.checkpoint_seq == done.json["last_seq"]
    assert "/api/v1/audit/prune" in client.get("/api/v1/openapi.json").json["paths"]


def test_api_prune_is_refused_to_an_auditor_and_deletes_nothing(app, clock):
    svc = app.extensions["idp"]
    today = _old_rows(svc, clock)
    total = _count(svc)
    token = service_token(app, roles=("Auditor",))
    resp = api(app.test_client(), "POST", "/api/v1/audit/prune", token, json={"before": today})
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert "audit:log:prune" in resp.json["detail"]
    assert _count(svc) == total


def test_api_prune_refuses_bad_input_and_deletes_nothing(app, clock):
    svc = app.extensions["idp"]
    _old_rows(svc, clock)
    total = _count(svc)
    token = service_token(app)
    client = app.test_client()
    for body in (
        {"before": "yesterday"},
        {"before": "2026-02-30"},
        {"before": 20260101},
        {"before": "2026-01-01", "extra": 1},
    ):
        resp = api(client, "POST", "/api/v1/audit/prune", token, json=body)
        assert resp.status_code in (400, 422) and resp.mimetype == PROBLEM, body
    # No day and no retention period configured: nothing to prune, said clearly.
    resp = api(client, "POST", "/api/v1/audit/prune", token, json={})
    assert resp.status_code == 409 and "retention_days" in resp.json["detail"]
    assert _count(svc) == total


def test_console_prune_counts_asks_for_confirmation_then_prunes(app, clock):
    svc = app.extensions["idp"]
    make_admin(svc, "root")
    today = _old_rows(svc, clock)
    client = signed_in(app, "root")
    html = client.get("/admin/audit/verify").get_data(as_text=True)
    assert 'action="/admin/audit/prune"' in html and "Prune old events" in html
    total = _count(svc)
    counted = post_form(
        client,
        "/admin/audit/prune",
        page="/admin/audit/verify",
        data={"before": today, "action": "count"},
        follow_redirects=True,
    )
    assert counted.status_code == 200
    assert f"written before {today}" in counted.get_data(as_text=True)
    assert _count(svc) == total
    unconfirmed = post_form(
        client,
        "/admin/audit/prune",
        page="/admin/audit/verify",
        data={"before": today, "action": "prune"},
    )
    assert unconfirmed.status_code == 400
    assert "Tick the box to confirm the deletion." in unconfirmed.get_data(as_text=True)
    bad = post_form(
        client,
        "/admin/audit/prune",
        page="/admin/audit/verify",
        data={"before": "31.12.2026", "action": "prune", "confirm": "yes"},
    )
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)
    assert _count(svc) == total
    done = post_form(
        client,
        "/admin/audit/prune",
        page="/admin/audit/verify",
        data={"before": today, "action": "prune", "confirm": "yes"},
        follow_redirects=True,
    )
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "were deleted" in html
    assert "The audit chain is intact" in html and "retention checkpoint" in html
    with svc.sessions() as db:
        assert (
            db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.old")
            )
            == 0
        )
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "audit.pruned")).one()
    assert row.ip is not None and row.details["before"].startswith(today)


def test_console_prune_is_hidden_and_refused_for_an_auditor(app, clock):
    svc = app.extensions["idp"]
    make_admin(svc, "aud", role="Auditor")
    today = _old_rows(svc, clock)
    client = signed_in(app, "aud")
    html = client.get("/admin/audit/verify").get_data(as_text=True)
    assert "The audit chain is intact" in html and "admin/audit/prune" not in html
    total = _count(svc)
    resp = post_form(
        client,
        "/admin/audit/prune",
        page="/account/password",  # no prune box here: any token of the session
        data={"before": today, "action": "prune", "confirm": "yes"},
    )
    assert resp.status_code == 403
    assert _count(svc) == total


def test_only_the_administrator_template_holds_the_prune_permission():
    from idp.core.rbac import matches as covers
    from idp.storage.seed import ROLE_TEMPLATES

    holders = {
        name
        for name, (_d, perms) in ROLE_TEMPLATES.items()
        if any(covers(p, "audit:log:prune") for p in perms)
    }
    assert holders == {"Administrator"}
