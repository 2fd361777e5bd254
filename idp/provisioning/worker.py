"""The pusher: drains the provisioning queue (``idp.storage.provisioning`` fills it).

Claiming is one conditional UPDATE per row (``state='pending' AND next_attempt_at <= now``, or a
``running`` row whose lease ran out), so on SQLite and PostgreSQL alike two pushers, on one
node or several, never push the same row at once: the second UPDATE matches no row. The
lease (``[provisioning] lease_seconds``) returns a row whose pusher died to the others.

Each row is judged from the object's state at push time, not from the change that queued it:

- a user that is gone here is deleted on the target (RFC 7644 §3.6; 404 counts as done);
- a user the target has not got yet is looked for by ``userName eq`` (RFC 7644 §3.4.2) and
  adopted when found, else created with POST (§3.3); a 409 on create adopts by lookup;
- a user the target has is replaced with PATCH (§3.5.2, one ``replace`` of every mapped
  attribute, ``remove`` for those now empty), or PUT (§3.5.1) when its ServiceProviderConfig
  says it does not support PATCH; a 404 means it was deleted there: created again;
- a user out of the target's scope is sent ``active: false`` (only when the target has it);
- groups likewise by ``displayName``, their members by the target's user ids.

Failures retry with exponential backoff and jitter (``retry_base_seconds`` doubling up to
``retry_max_seconds``), or after the ``Retry-After`` a 429/503 asked for; after
``max_attempts`` (or at once for a failure that repeats unchanged, see ``client``) the row is
``failed`` with its error until someone retries it.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.orm import Session

from ..delivery.outbound import outbound
from ..services import Services
from ..storage import provisioning as queue
from ..storage.models import Group, GroupMember, User
from ..storage.models_provisioning import (
    ProvisioningObject,
    ProvisioningQueueItem,
    ProvisioningTarget,
)
from .client import PushError, ScimClient, patch_body
from .payload import group_payload, mapping_of, user_name, user_payload

log = logging.getLogger("idp.provisioning")

Q = ProvisioningQueueItem
TOKEN_CONTEXT = "provisioning-token"  # noqa: S105 - the sealing context, not a secret
# Attributes a PATCH replaces; those the payload leaves out are removed.
_USER_ATTRIBUTES = (
    "externalId",
    "name",
    "displayName",
    "locale",
    "timezone",
    "emails",
    "phoneNumbers",
)


@dataclass
class DrainReport:
    pushed: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"pushed": self.pushed, "retried": self.retried, "failed": self.failed}


def _due(now: datetime) -> Any:
    return or_(
        and_(Q.state == "pending", Q.next_attempt_at <= now),
        and_(Q.state == "running", Q.lease_until < now),
    )


def claim(svc: Services, worker: str, limit: int) -> list[int]:
    """Claim up to ``limit`` due rows for ``worker`` (users before groups, oldest first)."""
    cfg = svc.settings.provisioning
    now = svc.clock.utcnow()
    with svc.sessions.begin() as db:
        ids = db.scalars(
            select(Q.id)
            .where(_due(now))
            .order_by(case((Q.kind == "user", 0), else_=1), Q.next_attempt_at, Q.id)
            .limit(limit)
        ).all()
    claimed = []
    for item_id in ids:
        with svc.sessions.begin() as db:
            done = db.execute(
                update(Q)
                .where(Q.id == item_id, _due(now))
                .values(
                    state="running",
                    again=False,
                    claimed_by=worker,
                    lease_until=now + timedelta(seconds=cfg.lease_seconds),
                )
            )
            if done.rowcount == 1:
                claimed.append(item_id)
    return claimed


def drain(svc: Services) -> DrainReport:
    """Push what is due now, in batches of ``[provisioning] batch_size``, until nothing is."""
    worker = secrets.token_hex(8)
    report = DrainReport()
    pusher = Pusher(svc)
    while batch := claim(svc, worker, svc.settings.provisioning.batch_size):
        for item_id in batch:
            pusher.push(item_id, worker, report)
    return report


def run_forever(svc: Services, keep_going: Callable[[], bool]) -> None:
    """Drain every ``[provisioning] interval_seconds`` while ``keep_going()``; a drain that
    fails (the database away for a moment) is logged and tried again next time."""
    while keep_going():
        try:
            drain(svc)
        except Exception:  # the loop outlives a bad moment of the database
            log.exception("provisioning drain failed")
        time.sleep(float(svc.settings.provisioning.interval_seconds))


def start_in_thread(
    svc: Services, keep_going: Callable[[], bool] = lambda: True
) -> threading.Thread:
    """A pusher in a daemon thread of this process (each ``idp serve`` worker runs one when
    ``[provisioning] serve_drain``): it sleeps between drains and claims rows like any other
    pusher, so the workers of every node share the queue, with no process of its own."""
    thread = threading.Thread(
        target=run_forever, args=(svc, keep_going), name="idp-provisioning", daemon=True
    )
    thread.start()
    return thread


def backoff(svc: Services, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: doubling, capped, with jitter (half to all)."""
    cfg = svc.settings.provisioning
    delay = min(float(cfg.retry_max_seconds), cfg.retry_base_seconds * 2 ** (attempts - 1))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


class Pusher:
    """Pushes claimed rows; knows each target's PATCH support for the length of a drain."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.patch: dict[int, bool] = {}

    def push(self, item_id: int, worker: str, report: DrainReport) -> None:
        svc = self.svc
        with svc.sessions() as db:
            item = db.get(Q, item_id)
            target = db.get(ProvisioningTarget, item.target_id) if item else None
            if item is None or target is None:
                return
            try:
                token = svc.sealer.open(target.token_sealed, TOKEN_CONTEXT).decode()
            except ValueError:
                self._failed(item_id, worker, PushError("the token cannot be opened"), report)
                return
            try:
                if not target.enabled:
                    raise PushError("the target is disabled")
                client = ScimClient(outbound(svc), target.base_url, token, svc.clock.now())
                if item.kind == "user":
                    remote_id, gone = self._user(db, client, target, item.object_id)
                else:
                    remote_id, gone = self._group(db, client, target, item.object_id)
            except PushError as exc:
                self._failed(item_id, worker, exc, report)
                return
            except Exception:  # a fault of ours must not stop the pusher: logged, retried
                log.exception("provisioning push crashed", extra={"queue_item": item_id})
                failure = PushError("an internal error (see the server log)", retry=True)
                self._failed(item_id, worker, failure, report)
                return
        self._done(item_id, worker, remote_id, gone, report)

    # --- users ----------------------------------------------------------------------------------

    def _user(
        self, db: Session, client: ScimClient, target: ProvisioningTarget, uuid: str
    ) -> tuple[str | None, bool]:
        remote = _remote_id(db, target.id, "user", uuid)
        user = db.scalar(select(User).where(User.uuid == uuid))
        if user is None:
            if remote:
                client.call("DELETE", f"/Users/{remote}", ok=(404,))
            return None, True
        covered = _covers(db, target, user)
        if not covered and not remote:
            return None, False
        if not covered:
            op = {"op": "replace", "path": "active", "value": False}
            client.call("PATCH", f"/Users/{remote}", patch_body([op]))
            return remote, False
        body = user_payload(db, user, target, covered=True)
        if remote and self._replace_user(client, target, remote, body):
            return remote, False
        name = user_name(user, mapping_of(target))
        if not name:
            raise PushError("the user has no value for the target's userName")
        found = client.find("Users", "userName", name)
        if found is None:
            reply = client.call("POST", "/Users", body, ok=(409,))
            if reply.status != 409:
                created = client.resource_id(reply, "POST /Users")
                self._queue_groups_of(db, target, user)
                return created, False
            found = client.find("Users", "userName", name)
            if found is None:
                raise PushError("POST /Users: HTTP 409, yet no user has that userName")
        self._replace_user(client, target, found, body)
        self._queue_groups_of(db, target, user)
        return found, False

    def _replace_user(
        self, client: ScimClient, target: ProvisioningTarget, remote: str, body: dict
    ) -> bool:
        """Bring the target's user in line; False when the target no longer has it."""
        if self._patch_supported(client, target):
            ops: list[dict[str, Any]] = [
                {"op": "replace", "value": {k: v for k, v in body.items() if k != "schemas"}}
            ]
            ops += [{"op": "remove", "path": name} for name in _USER_ATTRIBUTES if name not in body]
            reply = client.call("PATCH", f"/Users/{remote}", patch_body(ops), ok=(404,))
        else:
            reply = client.call("PUT", f"/Users/{remote}", {**body, "id": remote}, ok=(404,))
        return reply.status != 404

    def _patch_supported(self, client: ScimClient, target: ProvisioningTarget) -> bool:
        if target.id not in self.patch:
            self.patch[target.id] = client.patch_supported()
        return self.patch[target.id]

    def _queue_groups_of(self, db: Session, target: ProvisioningTarget, user: User) -> None:
        """A user the target just got: the groups it is pushed name them as members now."""
        if not target.push_groups:
            return
        scope = set(target.group_ids or [])
        gids = db.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user.id))
        now = self.svc.clock.utcnow()
        with self.svc.sessions.begin() as other:
            conn = other.connection()
            for gid in gids:
                if target.all_users or gid in scope:
                    queue.upsert(conn, now, target.id, "group", str(gid), "membership")

    # --- groups ---------------------------------------------------------------------------------

    def _group(
        self, db: Session, client: ScimClient, target: ProvisioningTarget, object_id: str
    ) -> tuple[str | None, bool]:
        remote = _remote_id(db, target.id, "group", object_id)
        group = db.get(Group, int(object_id))
        scope = set(target.group_ids or [])
        pushed = target.push_groups and (target.all_users or int(object_id) in scope)
        if group is None or not pushed:
            if remote:
                client.call("DELETE", f"/Groups/{remote}", ok=(404,))
            return None, True
        body = group_payload(db, group, target)
        if remote and self._replace_group(client, target, remote, body):
            return remote, False
        found = client.find("Groups", "displayName", group.path)
        if found is None:
            reply = client.call("POST", "/Groups", body, ok=(409,))
            if reply.status != 409:
                return client.resource_id(reply, "POST /Groups"), False
            found = client.find("Groups", "displayName", group.path)
            if found is None:
                raise PushError("POST /Groups: HTTP 409, yet no group has that displayName")
        self._replace_group(client, target, found, body)
        return found, False

    def _replace_group(
        self, client: ScimClient, target: ProvisioningTarget, remote: str, body: dict
    ) -> bool:
        if self._patch_supported(client, target):
            ops: list[dict[str, Any]] = [
                {"op": "replace", "path": "displayName", "value": body["displayName"]},
                {"op": "replace", "path": "externalId", "value": body["externalId"]},
            ]
            if body["members"]:
                ops.append({"op": "replace", "path": "members", "value": body["members"]})
            else:
                ops.append({"op": "remove", "path": "members"})
            reply = client.call("PATCH", f"/Groups/{remote}", patch_body(ops), ok=(404,))
        else:
            reply = client.call("PUT", f"/Groups/{remote}", {**body, "id": remote}, ok=(404,))
        return reply.status != 404

    # --- outcomes -------------------------------------------------------------------------------

    def _done(
        self, item_id: int, worker: str, remote_id: str | None, gone: bool, report: DrainReport
    ) -> None:
        now = self.svc.clock.utcnow()
        with self.svc.sessions.begin() as db:
            item = db.get(Q, item_id)
            if item is None or item.claimed_by != worker:
                return
            state = _state_row(db, item)
            if gone:
                if state is not None:
                    db.delete(state)
            elif remote_id is not None or state is not None:
                state = state or _new_state(db, item)
                state.remote_id = remote_id
                state.last_synced_at = now
                state.last_error = None
            db.execute(
                update(ProvisioningTarget)
                .where(ProvisioningTarget.id == item.target_id)
                .values(last_success_at=now)
            )
            if item.again:
                item.state, item.again, item.attempts = "pending", False, 0
                item.next_attempt_at, item.lease_until, item.last_error = now, None, None
            else:
                db.execute(delete(Q).where(Q.id == item_id))
        report.pushed += 1

    def _failed(self, item_id: int, worker: str, exc: PushError, report: DrainReport) -> None:
        cfg = self.svc.settings.provisioning
        now = self.svc.clock.utcnow()
        with self.svc.sessions.begin() as db:
            item = db.get(Q, item_id)
            if item is None or item.claimed_by != worker:
                return
            item.attempts += 1
            item.last_error = exc.reason[:1000]
            item.lease_until = None
            if exc.retry and item.attempts < cfg.max_attempts:
                wait = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else backoff(self.svc, item.attempts)
                )
                item.state = "pending"
                item.next_attempt_at = now + timedelta(seconds=wait)
                report.retried += 1
            else:
                item.state = "failed"
                report.failed += 1
            item.again = False
            state = _state_row(db, item)
            if state is not None:
                state.last_error = item.last_error
        log.info(
            "provisioning push failed",
            extra={"queue_item": item_id, "reason": exc.reason, "retry": exc.retry},
        )
        report.errors.append(exc.reason)


def _remote_id(db: Session, target_id: int, kind: str, object_id: str) -> str | None:
    return db.scalar(
        select(ProvisioningObject.remote_id).where(
            ProvisioningObject.target_id == target_id,
            ProvisioningObject.kind == kind,
            ProvisioningObject.object_id == object_id,
        )
    )


def _state_row(db: Session, item: ProvisioningQueueItem) -> ProvisioningObject | None:
    return db.scalar(
        select(ProvisioningObject).where(
            ProvisioningObject.target_id == item.target_id,
            ProvisioningObject.kind == item.kind,
            ProvisioningObject.object_id == item.object_id,
        )
    )


def _new_state(db: Session, item: ProvisioningQueueItem) -> ProvisioningObject:
    state = ProvisioningObject(target_id=item.target_id, kind=item.kind, object_id=item.object_id)
    db.add(state)
    return state


def _covers(db: Session, target: ProvisioningTarget, user: User) -> bool:
    if target.all_users:
        return True
    scope = set(target.group_ids or [])
    if not scope:
        return False
    found = db.scalar(
        select(GroupMember.group_id)
        .where(GroupMember.user_id == user.id, GroupMember.group_id.in_(scope))
        .limit(1)
    )
    return found is not None
