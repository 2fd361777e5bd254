"""Mailing the administrators' security digest (idp.manage.security_digest decides what is due).

Triggered in the web process after a request that committed a notifiable audit row (lockout,
escalation, ``security.*``): an engine hook notices such an INSERT into ``audit_events`` and
the request's teardown runs the digest. A worker that held events back for the batching period
remembers when they are due and runs the digest again on its first request after that. A store
key (``add``: one holder across workers) keeps two workers from building a digest at the same
time; the watermark's compare-and-set keeps them from mailing the same rows in any case.
``idp notifications send`` runs the same code from cron.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, timedelta
from typing import Any

from flask import Blueprint, current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import event, select
from sqlalchemy.sql.dml import Insert

from ..manage import security_digest
from ..services import Services
from ..storage.models import AuditEvent, User
from .mailing import queue_mail

log = logging.getLogger("idp.notifications")

bp = Blueprint("security_digest", __name__)

LOCK = "notify:digest"
LOCK_SECONDS = 60
_AUDIT_TABLE = AuditEvent.__table__
_noticed: ContextVar[bool] = ContextVar("idp_notifiable_audit", default=False)
KIND_LABELS = {
    "lockout": _l("Account locked out"),
    "escalation": _l("Permissions given"),
    "security": _l("Suspicious activity"),
}


def _notifiable(action: Any) -> bool:
    if not isinstance(action, str):
        return False
    return action.startswith("security.") or action in (
        security_digest.LOCKOUTS + security_digest.ALWAYS_ESCALATIONS + security_digest.ASSIGNMENTS
    )


def _watch(_conn, clauseelement, multiparams, params, _options) -> None:
    """Engine hook: note an INSERT of a notifiable audit row in this request."""
    if not isinstance(clauseelement, Insert) or clauseelement.table is not _AUDIT_TABLE:
        return
    rows = list(multiparams or []) + ([params] if params else [])
    for row in rows:
        for one in row if isinstance(row, list | tuple) else [row]:
            if isinstance(one, dict) and _notifiable(one.get("action")):
                _noticed.set(True)
                return


@bp.record_once
def _install(state) -> None:
    app = state.app
    svc: Services = app.extensions["idp"]
    event.listen(svc.engine, "before_execute", _watch)
    app.extensions["idp.digest_due"] = None

    @app.before_request
    def _reset() -> None:
        _noticed.set(False)

    @app.teardown_request
    def _after(_exc) -> None:
        due = app.extensions.get("idp.digest_due")
        if not _noticed.get() and (due is None or svc.clock.utcnow() < due):
            return
        _noticed.set(False)
        try:
            run(svc)
        except Exception:  # a failed digest must not fail the request that triggered it
            log.exception("security digest failed")


def run(svc: Services, *, force: bool = False) -> dict[str, Any]:
    """Mail a digest when one is due: ``{"sent", "events", "due_at"}`` (``sent``: mails
    queued; ``due_at``: when held-back events may go out)."""
    app = current_app._get_current_object()
    if not svc.store.add(LOCK, 1, LOCK_SECONDS):
        # Another worker is building one; look again a little later.
        app.extensions["idp.digest_due"] = svc.clock.utcnow() + timedelta(seconds=LOCK_SECONDS)
        return {"sent": 0, "events": 0, "due_at": None, "busy": True}
    try:
        with svc.sessions() as db:
            outcome = security_digest.claim(db, svc, force=force)
            db.commit()
            if outcome.digest is None:
                app.extensions["idp.digest_due"] = outcome.due_at
                return {"sent": 0, "events": 0, "due_at": outcome.due_at}
            app.extensions["idp.digest_due"] = None
            digest = outcome.digest
            to = security_digest.recipients(db, svc)
            names = _names(db, digest)
    finally:
        svc.store.delete(LOCK)
    for address in to:
        queue_mail(
            address,
            "admin_digest",
            _l("Security digest: %(n)s event(s)", n=digest.total),
            events=[_shown(e, names) for e in digest.events],
            total=digest.total,
            more=digest.total - len(digest.events),
            labels=KIND_LABELS,
            audit_url=svc.settings.issuer + "/admin/audit",
        )
    log.info("security digest of %s event(s) to %s recipient(s)", digest.total, len(to))
    return {"sent": len(to), "events": digest.total, "due_at": None}


def _names(db: Any, digest: security_digest.Digest) -> dict[str, str]:
    """Usernames of the accounts the events name (audit rows hold uuids)."""
    uuids = {x for e in digest.events for x in (e.actor, e.target) if x}
    if not uuids:
        return {}
    rows = db.execute(select(User.uuid, User.username).where(User.uuid.in_(uuids))).all()
    return {uuid: username for uuid, username in rows}


def _shown(e: security_digest.DigestEvent, names: dict[str, str]) -> dict[str, Any]:
    at = e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC)
    return {
        "kind": e.kind,
        "action": e.action,
        "at": at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "actor": names.get(e.actor or "", e.actor),
        "target": names.get(e.target or "", e.target),
        "ip": e.ip,
        "details": ", ".join(f"{k}={v}" for k, v in sorted(e.details.items()) if v is not None),
    }
