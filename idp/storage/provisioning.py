"""The one hook of outbound provisioning: every change to a user, a group or a membership,
wherever it is made (the management services, SCIM inbound, JIT and LDAP sync, imports,
self-service, GDPR erasure), queues the object for each enabled target that covers it, in the
transaction that makes the change.

It is a pair of session listeners, not calls sprinkled over the services: ``after_flush`` sees
the ORM unit of work (new, changed and deleted rows: only changes to attributes a target is sent
count, so a sign-in stamping ``last_login_at`` queues nothing), and ``do_orm_execute`` sees the
bulk ``delete(User)`` / ``delete(GroupMember)`` / ``update(Group)`` statements before they run
(the rows they touch are read first). What is pushed is decided later by the pusher
(``idp.provisioning.worker``) from the object's state then, so the queue is a set of
"look at this object" marks, coalesced to one row per target and object."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import case, event, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.orm.attributes import get_history

from ..clock import Clock
from .models import Group, GroupMember, User
from .models_provisioning import ProvisioningObject, ProvisioningQueueItem, ProvisioningTarget

# The user attributes a target is sent (idp.provisioning.payload); other changes queue nothing.
USER_FIELDS = (
    "username",
    "email",
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "phone",
    "locale",
    "timezone",
    "status",
    "external_id",
    "department_id",
    "manager_id",
    "custom",
)
GROUP_FIELDS = ("name", "path", "external_id")
# When two changes of one object meet in the queue, the stronger names the row.
_RANK = {"update": 0, "membership": 0, "deactivate": 1, "create": 2, "delete": 3}

Q = ProvisioningQueueItem.__table__


class Changes:
    """What one flush or statement changed: users by uuid, groups by id, membership pairs."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.groups: dict[int, str] = {}
        self.members: set[tuple[int, int]] = set()

    def user(self, uuid: str, op: str) -> None:
        self.users[uuid] = _stronger(self.users.get(uuid), op)

    def group(self, group_id: int, op: str) -> None:
        self.groups[group_id] = _stronger(self.groups.get(group_id), op)

    def __bool__(self) -> bool:
        return bool(self.users or self.groups or self.members)


def _stronger(old: str | None, new: str) -> str:
    return new if old is None or _RANK[new] >= _RANK[old] else old


def _changed(obj: Any, fields: Iterable[str]) -> bool:
    return any(get_history(obj, name).has_changes() for name in fields)


def _user_op(user: User) -> str:
    status = get_history(user, "status")
    if status.has_changes() and user.status != "active":
        return "deactivate"
    return "update"


def install(sessions: sessionmaker[Session], clock: Clock) -> None:
    """Listen on every session ``sessions`` makes."""

    def after_flush(session: Session, _context: Any) -> None:
        changes = Changes()
        for obj in session.new:
            if isinstance(obj, User):
                changes.user(obj.uuid, "create")
            elif isinstance(obj, Group):
                changes.group(obj.id, "create")
            elif isinstance(obj, GroupMember):
                changes.members.add((obj.group_id, obj.user_id))
        for obj in session.dirty:
            if isinstance(obj, User) and _changed(obj, USER_FIELDS):
                changes.user(obj.uuid, _user_op(obj))
            elif isinstance(obj, Group) and _changed(obj, GROUP_FIELDS):
                changes.group(obj.id, "update")
        for obj in session.deleted:
            if isinstance(obj, User):
                changes.user(obj.uuid, "delete")
            elif isinstance(obj, Group):
                changes.group(obj.id, "delete")
            elif isinstance(obj, GroupMember):
                changes.members.add((obj.group_id, obj.user_id))
        if changes:
            enqueue(session.connection(), clock.utcnow(), changes)

    def do_orm_execute(state: ORMExecuteState) -> None:
        if not (state.is_delete or state.is_update) or state.bind_mapper is None:
            return
        entity = state.bind_mapper.class_
        where = state.statement.whereclause  # type: ignore[attr-defined]
        if entity not in (User, Group, GroupMember) or where is None:
            return
        if state.is_update and not _sets_any(state.statement, USER_FIELDS + GROUP_FIELDS):
            return
        conn = state.session.connection()
        changes = Changes()
        if entity is User:
            rows = conn.execute(select(User.id, User.uuid).where(where)).all()
            op = "delete" if state.is_delete else "update"
            for row in rows:
                changes.user(row.uuid, op)
            if state.is_delete and rows:
                ids = [row.id for row in rows]
                for gid in conn.scalars(
                    select(GroupMember.group_id).where(GroupMember.user_id.in_(ids)).distinct()
                ):
                    changes.group(gid, "membership")
        elif entity is Group:
            for gid in conn.scalars(select(Group.id).where(where)):
                changes.group(gid, "delete" if state.is_delete else "update")
        else:
            pairs = conn.execute(select(GroupMember.group_id, GroupMember.user_id).where(where))
            changes.members.update((p.group_id, p.user_id) for p in pairs)
        if changes:
            enqueue(conn, clock.utcnow(), changes)

    event.listen(sessions, "after_flush", after_flush)
    event.listen(sessions, "do_orm_execute", do_orm_execute)


def _sets_any(stmt: Any, fields: tuple[str, ...]) -> bool:
    """Does a bulk UPDATE set any of ``fields`` (a sign-in stamp does not)?"""
    values = getattr(stmt, "_values", None) or {}
    return any(getattr(column, "key", column) in fields for column in values)


def enqueue(conn: Connection, now: datetime, changes: Changes) -> None:
    """Queue the changed objects for the enabled targets that cover them, or that hold them
    (an object leaving a target's scope is deactivated there; a deletion goes only to those
    that hold or have queued it)."""
    targets = conn.execute(
        select(ProvisioningTarget.__table__).where(ProvisioningTarget.enabled == true())
    ).all()
    if not targets:
        return
    if changes.members:
        user_ids = {uid for _gid, uid in changes.members}
        uuids = dict(conn.execute(select(User.id, User.uuid).where(User.id.in_(user_ids))).all())
        for gid, uid in changes.members:
            if uid in uuids:
                changes.user(uuids[uid], "update")
            changes.group(gid, "membership")
    groups_of = _groups_of(conn, list(changes.users))
    held = _held(conn, changes)
    for target in targets:
        scope = set(target.group_ids or [])
        for uuid, op in changes.users.items():
            covered = target.all_users or bool(scope & groups_of.get(uuid, set()))
            if (target.id, "user", uuid) in held or (covered and op != "delete"):
                upsert(conn, now, target.id, "user", uuid, op)
        if not target.push_groups:
            continue
        for gid, op in changes.groups.items():
            covered = target.all_users or gid in scope
            if (target.id, "group", str(gid)) in held or (covered and op != "delete"):
                upsert(conn, now, target.id, "group", str(gid), op)


def _groups_of(conn: Connection, uuids: list[str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    if not uuids:
        return out
    rows = conn.execute(
        select(User.uuid, GroupMember.group_id)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(User.uuid.in_(uuids))
    )
    for uuid, gid in rows:
        out.setdefault(uuid, set()).add(gid)
    return out


def _held(conn: Connection, changes: Changes) -> set[tuple[int, str, str]]:
    """(target, kind, object) of the changed objects some target holds or has queued: only
    those are told of a deletion."""
    ids = list(changes.users) + [str(g) for g in changes.groups]
    held: set[tuple[int, str, str]] = set()
    for table in (ProvisioningObject, ProvisioningQueueItem):
        rows = conn.execute(
            select(table.target_id, table.kind, table.object_id).where(table.object_id.in_(ids))
        )
        held.update((t, k, o) for t, k, o in rows)
    return held


def upsert(conn: Connection, now: datetime, target_id: int, kind: str, object_id: str,
           op: str) -> None:
    """Queue one object, or fold the change into its queued row: a pending row keeps its turn
    and takes the stronger operation; a row being pushed is marked ``again``; a failed one is
    pending again with a fresh count of attempts."""
    maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = maker(Q).values(
        target_id=target_id,
        kind=kind,
        object_id=object_id,
        op=op,
        state="pending",
        again=False,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    failed = Q.c.state == "failed"
    ranks = case(*((Q.c.op == name, rank) for name, rank in _RANK.items()), else_=0)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Q.c.target_id, Q.c.kind, Q.c.object_id],
        set_={
            "op": case((ranks > _RANK[op], Q.c.op), else_=stmt.excluded.op),
            "state": case((Q.c.state == "running", "running"), else_="pending"),
            "again": case((Q.c.state == "running", True), else_=Q.c.again),
            "attempts": case((failed, 0), else_=Q.c.attempts),
            "next_attempt_at": case((failed, stmt.excluded.next_attempt_at),
                                    else_=Q.c.next_attempt_at),
        },
    )
    conn.execute(stmt)
