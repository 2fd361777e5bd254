"""Provisioning targets as admin operations (CLI, REST API, console): list, create, change and
remove downstream SCIM targets, their status (queue depth, failures, last success), retrying
failed items and a full sync. Every change is audited (``provisioning.target_*``); the bearer
token is sealed before it is stored and never returned, logged or audited.

The base URL is judged by the outbound guard's destination rules (``[outbound]``: https only,
no loopback or private address unless allowed) when it is given, so a URL the pusher would
refuse is never stored.

Permissions: ``provisioning:targets:read|create|update|delete`` and
``provisioning:queue:update`` (retry, full sync)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from ..delivery.outbound import OutboundRefused, outbound
from ..errors import Conflict, NotFound, ValidationError
from ..manage.context import Context
from ..storage import provisioning as queue
from ..storage.models import Group, GroupMember, User
from ..storage.models_provisioning import (
    ProvisioningObject,
    ProvisioningQueueItem,
    ProvisioningTarget,
)
from .payload import mapping_of, mapping_problem
from .worker import TOKEN_CONTEXT

MAX_URL = 500
MAX_TOKEN = 4000
FAILED_SHOWN = 100


@dataclass(frozen=True)
class TargetInput:
    """A create (every field but ``mapping`` given) or a change (None: keep)."""

    name: str | None = None
    base_url: str | None = None
    token: str | None = None
    enabled: bool | None = None
    all_users: bool | None = None
    groups: list[str] | None = None  # group paths
    push_groups: bool | None = None
    mapping: dict[str, Any] | None = None


def view(ctx: Context, target: ProvisioningTarget) -> dict[str, Any]:
    """A target as shown (never its token)."""
    paths = dict(
        ctx.db.execute(select(Group.id, Group.path).where(Group.id.in_(target.group_ids or [])))
        .all()
    )
    return {
        "id": target.id,
        "name": target.name,
        "base_url": target.base_url,
        "enabled": target.enabled,
        "all_users": target.all_users,
        "groups": sorted(paths[g] for g in target.group_ids or [] if g in paths),
        "push_groups": target.push_groups,
        "mapping": mapping_of(target),
        "token_set": bool(target.token_sealed),
        "last_success_at": _iso(target.last_success_at),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def list_targets(ctx: Context) -> list[ProvisioningTarget]:
    ctx.require("provisioning:targets:read")
    return list(ctx.db.scalars(select(ProvisioningTarget).order_by(ProvisioningTarget.name)))


def get(ctx: Context, target_id: int) -> ProvisioningTarget:
    ctx.require("provisioning:targets:read")
    target = ctx.db.get(ProvisioningTarget, target_id)
    if target is None:
        raise NotFound(f"no provisioning target {target_id}")
    return target


def _check_url(ctx: Context, url: str) -> str:
    url = url.strip()
    if not url or len(url) > MAX_URL:
        raise ValidationError(f"the base URL must be 1 to {MAX_URL} characters")
    try:
        outbound(ctx.svc).destination(url)
    except OutboundRefused as exc:
        # The request is well formed; the outbound policy ([outbound]) refuses the address.
        raise Conflict(f"the base URL is refused: {exc.reason}") from None
    return url.rstrip("/")


def _group_ids(ctx: Context, paths: list[str]) -> list[int]:
    found = dict(
        ctx.db.execute(select(Group.path, Group.id).where(Group.path.in_(paths))).all()
    )
    missing = [p for p in paths if p not in found]
    if missing:
        raise Conflict(f"no group {missing[0]}")
    return sorted({found[p] for p in paths})


def _apply(ctx: Context, target: ProvisioningTarget, data: TargetInput) -> list[str]:
    """Check and set what ``data`` gives; the names of the fields that changed."""
    changed = []
    if data.name is not None:
        name = data.name.strip()
        if not name or len(name) > 100:
            raise ValidationError("the name must be 1 to 100 characters")
        other = ctx.db.scalar(select(ProvisioningTarget.id).where(ProvisioningTarget.name == name))
        if other is not None and other != target.id:
            raise Conflict(f"a provisioning target named {name} exists")
        changed += ["name"] if name != target.name else []
        target.name = name
    if data.base_url is not None:
        url = _check_url(ctx, data.base_url)
        changed += ["base_url"] if url != target.base_url else []
        target.base_url = url
    if data.token is not None:
        token = data.token.strip()
        if not token or len(token) > MAX_TOKEN or not token.isprintable():
            raise ValidationError(f"the token must be 1 to {MAX_TOKEN} printable characters")
        target.token_sealed = ctx.svc.sealer.seal(token.encode(), TOKEN_CONTEXT)
        changed.append("token")
    if data.groups is not None:
        ids = _group_ids(ctx, [p.strip() for p in data.groups])
        changed += ["groups"] if ids != sorted(target.group_ids or []) else []
        target.group_ids = ids
    if data.mapping is not None:
        problem = mapping_problem(data.mapping)
        if problem:
            raise ValidationError(problem)
        changed += ["mapping"] if data.mapping != (target.mapping or {}) else []
        target.mapping = dict(data.mapping)
    for name in ("enabled", "all_users", "push_groups"):
        value = getattr(data, name)
        if value is not None:
            changed += [name] if value != getattr(target, name) else []
            setattr(target, name, value)
    return changed


def create(ctx: Context, data: TargetInput) -> ProvisioningTarget:
    """A new target (nothing is pushed until a change or a full sync queues it)."""
    ctx.require("provisioning:targets:create")
    if not data.name or not data.base_url or not data.token:
        raise ValidationError("a target needs a name, a base URL and a token")
    target = ProvisioningTarget(
        enabled=True, all_users=True, group_ids=[], push_groups=False, mapping={}
    )
    _apply(ctx, target, data)
    now = ctx.svc.clock.utcnow()
    target.created_at = target.updated_at = now
    ctx.db.add(target)
    ctx.db.flush()
    ctx.audit("provisioning.target_created", target.name, target_id=target.id,
              base_url=target.base_url)
    return target


def update(ctx: Context, target_id: int, data: TargetInput) -> ProvisioningTarget:
    ctx.require("provisioning:targets:update")
    target = get(ctx, target_id)
    changed = _apply(ctx, target, data)
    if changed:
        target.updated_at = ctx.svc.clock.utcnow()
        ctx.db.flush()
        ctx.audit("provisioning.target_updated", target.name, target_id=target.id,
                  fields=changed)
    return target


def delete(ctx: Context, target_id: int) -> None:
    """Remove the target with its queue and sync state (nothing is deleted downstream)."""
    ctx.require("provisioning:targets:delete")
    target = get(ctx, target_id)
    name = target.name
    ctx.db.delete(target)
    ctx.db.flush()
    ctx.audit("provisioning.target_deleted", name, target_id=target_id)


def status(ctx: Context, target_id: int) -> dict[str, Any]:
    """Queue depth, failed items with their errors, what the target holds, last success."""
    target = get(ctx, target_id)
    Q = ProvisioningQueueItem
    counts = dict(
        ctx.db.execute(
            select(Q.state, func.count()).where(Q.target_id == target.id).group_by(Q.state)
        ).all()
    )
    failed = ctx.db.scalars(
        select(Q).where(Q.target_id == target.id, Q.state == "failed").order_by(Q.id)
        .limit(FAILED_SHOWN)
    ).all()
    names = dict(
        ctx.db.execute(
            select(User.uuid, User.username).where(
                User.uuid.in_([f.object_id for f in failed if f.kind == "user"])
            )
        ).all()
    )
    held = ctx.db.scalar(
        select(func.count()).select_from(ProvisioningObject).where(
            ProvisioningObject.target_id == target.id,
            ProvisioningObject.remote_id.is_not(None),
        )
    )
    return {
        "target": view(ctx, target),
        "queue": {
            "pending": counts.get("pending", 0) + counts.get("running", 0),
            "failed": counts.get("failed", 0),
        },
        "objects": held or 0,
        "failed": [
            {
                "id": f.id,
                "kind": f.kind,
                "object_id": f.object_id,
                "name": names.get(f.object_id) if f.kind == "user" else f.object_id,
                "op": f.op,
                "attempts": f.attempts,
                "error": f.last_error,
            }
            for f in failed
        ],
    }


def retry(ctx: Context, target_id: int, item_id: int | None = None) -> int:
    """Queue failed items again (one, or all of the target's); how many."""
    ctx.require("provisioning:queue:update")
    target = get(ctx, target_id)
    Q = ProvisioningQueueItem
    where = [Q.target_id == target.id, Q.state == "failed"]
    if item_id is not None:
        where.append(Q.id == item_id)
    items = ctx.db.scalars(select(Q).where(*where)).all()
    if item_id is not None and not items:
        raise NotFound(f"no failed item {item_id} for this target")
    now = ctx.svc.clock.utcnow()
    for item in items:
        item.state, item.attempts, item.next_attempt_at = "pending", 0, now
    ctx.audit("provisioning.retried", target.name, target_id=target.id, items=len(items))
    return len(items)


def full_sync(ctx: Context, target_id: int) -> int:
    """Queue every object the target covers or holds; how many were queued."""
    ctx.require("provisioning:queue:update")
    target = get(ctx, target_id)
    if not target.enabled:
        raise Conflict("the target is disabled; enable it first")
    scope = target.group_ids or []
    users = select(User.uuid)
    if not target.all_users:
        members = select(GroupMember.user_id).where(GroupMember.group_id.in_(scope))
        held = select(ProvisioningObject.object_id).where(
            ProvisioningObject.target_id == target.id, ProvisioningObject.kind == "user"
        )
        users = users.where(or_(User.id.in_(members), User.uuid.in_(held)))
    objects = [("user", uuid) for uuid in ctx.db.scalars(users)]
    if target.push_groups:
        groups = select(Group.id)
        if not target.all_users:
            groups = groups.where(Group.id.in_(scope))
        objects += [("group", str(gid)) for gid in ctx.db.scalars(groups)]
    now = ctx.svc.clock.utcnow()
    conn = ctx.db.connection()
    for kind, object_id in objects:
        queue.upsert(conn, now, target.id, kind, object_id, "update")
    count = len(objects)
    ctx.audit("provisioning.full_sync", target.name, target_id=target.id, items=count)
    return count
