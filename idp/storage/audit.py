"""Audit rows: who did what to whom, from where. Written in the caller's unit of work, so a row
is committed with the change it records (or not at all)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, update
from sqlalchemy.orm import Session

from .models import AuditEvent

_AUDIT_INSERT = insert(AuditEvent.__table__)


def audit_values(
    action: str,
    *,
    at: datetime,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit row."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "ip": ip,
        "request_id": request_id,
        "details": details if details is not None else {},
    }


def audit(
    db: Session,
    action: str,
    *,
    at: datetime,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    **details: Any,
) -> None:
    """Add an audit row to ``db``'s unit of work (committed with the change it records)."""
    values = audit_values(
        action, at=at, actor=actor, target=target, ip=ip, request_id=request_id, details=details
    )
    db.add(AuditEvent(**values))


def audit_now(
    db: Session,
    action: str,
    *,
    at: datetime,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    **details: Any,
) -> None:
    """:func:`audit` as a plain INSERT on the session's connection, sent at once: no unit of
    work to flush at the commit (for hot paths). It takes SQLite's write lock, so call it when
    the transaction is about to commit, after any store write."""
    values = audit_values(
        action, at=at, actor=actor, target=target, ip=ip, request_id=request_id, details=details
    )
    db.connection().execute(_AUDIT_INSERT, [values])


def erase_subject(db: Session, subject_uuid: str, *, at: datetime) -> int:
    """Blank the personal fields (ip, details) of the audit rows whose actor or target is this
    user (GDPR erasure); the rows themselves stay, so the record of what happened remains.
    Returns how many rows were blanked. ``at`` is when the erasure happened."""
    result = db.execute(
        update(AuditEvent)
        .where(or_(AuditEvent.actor == subject_uuid, AuditEvent.target == subject_uuid))
        .values(ip=None, details={})
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
