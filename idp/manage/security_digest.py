"""The administrators' security digest: account lockouts, escalations (permissions given to
someone) and the ``security.*`` events of the suspicious-activity detectors, read from the audit
log and mailed as one digest rather than one mail per event.

The digest keeps a watermark (``notification_marks``: the last audit row mailed and when). The
first event after a quiet period goes out at once; events within ``[notifications]
digest_minutes`` after a digest wait and go out together when the period ends, so a burst of
hundreds of events is one or two mails. The watermark moves with a compare-and-set in the same
transaction that reads the rows, so two workers (or a worker and ``idp notifications send``)
never mail the same rows: the loser's update matches nothing and it mails nothing.

Recipients: every active user with an e-mail address who holds ``audit:log:read`` everywhere,
plus ``[notifications] admin_emails``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..services import Services
from ..storage.models import AuditEvent, Group, GroupMember, GroupRole, Role, User, UserRole
from ..storage.models_devices import NotificationMark
from ..storage.rbac import grants_for, role_grants

MARK = "admin_digest"
READ_PERMISSION = "audit:log:read"
LOCKOUTS = ("login.lockout",)
# Audit actions that may give someone permissions: always an escalation when they add
# permissions to a role or an account, and when the assigned role / joined group carries any.
ALWAYS_ESCALATIONS = (
    "role.permissions_added",
    "role.composite_added",
    "role.permission_group_added",
    "client.service_roles_set",
)
ASSIGNMENTS = ("user.role_assigned", "group.member_added", "group.role_assigned")
SHOWN = 50  # events listed in one mail; the rest are counted


@dataclass(frozen=True)
class DigestEvent:
    id: int
    at: datetime
    kind: str  # "lockout", "escalation", "security"
    action: str
    actor: str | None
    target: str | None
    ip: str | None
    details: dict[str, Any]


@dataclass
class Digest:
    events: list[DigestEvent] = field(default_factory=list)  # the first SHOWN
    total: int = 0
    first_id: int = 0
    last_id: int = 0


@dataclass(frozen=True)
class Outcome:
    digest: Digest | None  # what to mail now, None when nothing is due
    due_at: datetime | None  # when held-back events may go out


def _notifiable():
    return or_(
        AuditEvent.action.like("security.%"),
        AuditEvent.action.in_(LOCKOUTS + ALWAYS_ESCALATIONS + ASSIGNMENTS),
    )


def _mark(db: Session) -> NotificationMark | None:
    """The digest's watermark row, made on first use (None: another worker made it at the same
    moment; it will do this round)."""
    mark = db.get(NotificationMark, MARK)
    if mark is None:
        mark = NotificationMark(name=MARK, last_id=0, sent_at=None)
        db.add(mark)
        try:
            db.flush()
        except IntegrityError:
            db.rollback()
            return None
    return mark


def pending_since(db: Session, last_id: int) -> bool:
    return (
        db.scalar(select(AuditEvent.id).where(AuditEvent.id > last_id, _notifiable()).limit(1))
        is not None
    )


def claim(db: Session, svc: Services, *, force: bool = False) -> Outcome:
    """Take the events due for a digest and move the watermark past them (the caller commits
    and then mails). ``force``: ignore the batching period (an operator's explicit run)."""
    now = svc.clock.utcnow()
    window = timedelta(minutes=svc.settings.notifications.digest_minutes)
    mark = _mark(db)
    if mark is None:
        return Outcome(None, None)
    last_id, sent_at = mark.last_id, mark.sent_at
    if not pending_since(db, last_id):
        return Outcome(None, None)
    if sent_at is not None and now < sent_at + window and not force:
        return Outcome(None, sent_at + window)
    rows = db.scalars(
        select(AuditEvent).where(AuditEvent.id > last_id, _notifiable()).order_by(AuditEvent.id)
    ).all()
    digest = Digest(first_id=rows[0].id, last_id=rows[-1].id)
    for row in rows:
        kind = _kind(db, svc, row)
        if kind is None:
            continue
        digest.total += 1
        if len(digest.events) < SHOWN:
            digest.events.append(
                DigestEvent(
                    row.id,
                    row.at,
                    kind,
                    row.action,
                    row.actor,
                    row.target,
                    row.ip,
                    dict(row.details or {}),
                )
            )
    # Rows that turned out not to matter (an ordinary role given) move the watermark but start
    # no batching period: no mail went out.
    moved = db.execute(
        update(NotificationMark)
        .where(NotificationMark.name == MARK, NotificationMark.last_id == last_id)
        .values(last_id=rows[-1].id, sent_at=now if digest.total else sent_at)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # another worker mailed these rows first
        db.rollback()
        return Outcome(None, None)
    return Outcome(digest if digest.total else None, None)


def _kind(db: Session, svc: Services, row: AuditEvent) -> str | None:
    if row.action.startswith("security."):
        return "security"
    if row.action in LOCKOUTS:
        return "lockout"
    if row.action in ALWAYS_ESCALATIONS:
        return "escalation"
    return "escalation" if _assignment_grants(db, svc, row) else None


def _assignment_grants(db: Session, svc: Services, row: AuditEvent) -> bool:
    """Did this role assignment / membership hand out IdP permissions (an ordinary
    application role or group does not)?"""
    details = row.details or {}
    if row.action == "group.member_added":
        # The group and its ancestors ("staff/it": "staff", "staff/it"), as manage.groups.
        parts = (details.get("group") or "").split("/")
        paths = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        role_ids = list(
            db.scalars(
                select(GroupRole.role_id)
                .join(Group, Group.id == GroupRole.group_id)
                .where(Group.path.in_(paths))
            )
        )
    else:
        query = select(Role.id).where(Role.name == details.get("role"))
        client = details.get("client_id")
        query = query.where(
            Role.client_id.is_(None) if client is None else Role.client_id == client
        )
        role_ids = list(db.scalars(query))
    return bool(role_ids) and bool(role_grants(db, role_ids, clock=svc.clock))


def recipients(db: Session, svc: Services) -> list[str]:
    """Who gets the digest: active holders of audit:log:read (everywhere) with an address, and
    the configured ``[notifications] admin_emails``; each address once."""
    holders = union(select(UserRole.user_id), select(GroupMember.user_id)).subquery()
    people = db.execute(
        select(User.id, User.email).where(
            User.id.in_(select(holders.c.user_id)),
            User.status == "active",
            User.email.is_not(None),
        )
    ).all()
    out: list[str] = []
    for user_id, address in people:
        if grants_for(db, svc.store, user_id, clock=svc.clock).allows(READ_PERMISSION):
            out.append(address.lower())
    out += [a.lower() for a in svc.settings.notifications.admin_emails]
    return sorted(set(out))
