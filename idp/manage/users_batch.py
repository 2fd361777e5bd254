"""One action over many selected users (the console's batch bar, ``POST /api/v1/users/batch``).

Actions: ``password_reset`` (mail each user a password-reset link), ``assign_role`` (a global
role), ``add_to_group`` / ``remove_from_group``, ``deactivate``, ``end_sessions``. Each user is
handled by the single-user operation (``users.assign_role``, ``groups.add_member``,
``sessions.end_all`` ...) in a transaction of their own, so every user gets the actor's own
permission check (a delegated administrator's out-of-scope users fail one by one, as "not
found": no existence leak) and their own audit row, and a failed user changes nothing while
the others are done. One more audit row, ``users.batch``, records the action and the counts.

Own transactions rather than SAVEPOINTs in one: ending sessions and issuing reset tokens write
to the short-lived store, which must not wait on a write lock this batch holds (SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import Conflict, IdPError, NotFound, ValidationError
from ..services import Services
from ..storage.models import Group, Role, User
from ..storage.session_index import SessionRecords
from . import groups as manage_groups
from . import sessions as manage_sessions
from . import users as manage_users
from .context import Actor, Context, transaction

# action -> the permission it needs over each user
ACTIONS: dict[str, str] = {
    "password_reset": "users:password:reset",
    "assign_role": "users:roles:assign",
    "add_to_group": "users:groups:assign",
    "remove_from_group": "users:groups:assign",
    "deactivate": "users:accounts:update",
    "end_sessions": "users:sessions:revoke",
}
MAX_USERS = 500

# send_reset(user): issue the reset token and queue the mail (the web layer knows the link).
SendReset = Callable[[User], Any]


@dataclass(frozen=True)
class BatchRequest:
    action: str
    user_ids: tuple[str, ...]  # uuids, in the order given, without repeats
    role: str | None = None  # a global role's name
    group: str | None = None  # a group path


@dataclass(frozen=True)
class UserOutcome:
    id: str
    username: str | None  # None: not found (or out of the actor's reach)
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class BatchResult:
    action: str
    results: list[UserOutcome]

    @property
    def done(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)


def request(
    action: str, user_ids: list[str], role: str | None = None, group: str | None = None
) -> BatchRequest:
    """A checked batch request: a known action with the role / group it needs, 1 to
    :data:`MAX_USERS` user ids (ValidationError naming the field otherwise)."""
    if action not in ACTIONS:
        raise ValidationError(f"action: one of {', '.join(ACTIONS)}")
    ids = tuple(dict.fromkeys(str(u).strip() for u in user_ids if str(u).strip()))
    if not ids:
        raise ValidationError("user_ids: select at least one user")
    if len(ids) > MAX_USERS:
        raise ValidationError(f"user_ids: at most {MAX_USERS} users at once")
    role = (role or "").strip() or None
    group = (group or "").strip() or None
    if action == "assign_role" and not role:
        raise ValidationError("role: choose the role to assign")
    if action in ("add_to_group", "remove_from_group") and not group:
        raise ValidationError("group: choose the group")
    return BatchRequest(
        action,
        ids,
        role if action == "assign_role" else None,
        group if action in ("add_to_group", "remove_from_group") else None,
    )


def _role(ctx: Context, name: str) -> Role:
    try:
        return ctx.directory.role_by_name(name, None)
    except NotFound:
        raise NotFound(f"role: there is no role {name!r}") from None


def _group(ctx: Context, path: str) -> Group:
    try:
        return ctx.directory.group_by_path(path)
    except NotFound:
        raise NotFound(f"group: there is no group {path!r}") from None


def check(ctx: Context, req: BatchRequest) -> list[User]:
    """Before asking for confirmation: the role or group exists, and the users of the request
    the actor may act on (the others will fail). Forbidden when the actor holds the action's
    permission nowhere."""
    permission = ACTIONS[req.action]
    if req.role:
        _role(ctx, req.role)
    if req.group:
        _group(ctx, req.group)
    reach = manage_users._reach(ctx, permission)
    ids = [u for u in req.user_ids if _plausible(u)]
    return list(
        ctx.db.scalars(select(User).where(User.uuid.in_(ids), reach).order_by(User.username))
    )


def _plausible(uuid: str) -> bool:
    """Could this be a user id at all? (PostgreSQL refuses a NUL in text: not a query.)"""
    return "\x00" not in uuid and len(uuid) <= 64


def _one(
    ctx: Context,
    req: BatchRequest,
    uuid: str,
    sessions: SessionRecords | None,
    send_reset: SendReset | None,
) -> str:
    """Do the action for one user in ``ctx``; their username."""
    if not _plausible(uuid):
        raise NotFound("no such user")
    user = manage_users.get(ctx, uuid, ACTIONS[req.action])
    action = req.action
    if action == "password_reset":
        if not user.email:
            raise Conflict("the user has no e-mail address")
        if user.source not in ("local", "scim"):
            raise Conflict("the password is kept in an external directory")
        if user.status != "active":
            raise Conflict("the account is not active")
        if send_reset is None:
            raise ValidationError("password_reset: mail is not available here")
        send_reset(user)  # a store write: before this transaction writes anything
        ctx.audit("user.password_reset_sent", user.uuid, by_admin=True)
    elif action == "assign_role":
        manage_users.assign_role(ctx, user, _role(ctx, req.role or ""))
    elif action == "add_to_group":
        manage_groups.add_member(ctx, _group(ctx, req.group or ""), user)
    elif action == "remove_from_group":
        if not manage_groups.remove_member(ctx, _group(ctx, req.group or ""), user):
            raise Conflict("not a direct member of the group")
    elif action == "deactivate":
        if ctx.actor.kind == "user" and ctx.actor.user_id == user.id:
            raise Conflict("you cannot deactivate your own account")
        manage_users.update(ctx, user, {"active": False})
    elif action == "end_sessions":
        if sessions is None:
            raise ValidationError("end_sessions: the session store is not available here")
        manage_sessions.end_all(ctx, user, sessions)
    return user.username


def run(
    svc: Services,
    actor: Actor,
    req: BatchRequest,
    *,
    sessions: SessionRecords | None = None,
    send_reset: SendReset | None = None,
) -> BatchResult:
    """Do the action for every user of the request, each in a transaction of their own; the
    outcome per user (done, or failed with the reason). Refused as a whole (nothing done) when
    the role or group does not exist or the actor holds the permission nowhere."""
    with transaction(svc, actor) as ctx:
        check(ctx, req)
    outcomes: list[UserOutcome] = []
    for uuid in req.user_ids:
        try:
            with transaction(svc, actor) as ctx:
                username = _one(ctx, req, uuid, sessions, send_reset)
        except IdPError as exc:
            outcomes.append(UserOutcome(uuid, _username(svc, actor, uuid), False, str(exc)))
        else:
            outcomes.append(UserOutcome(uuid, username, True))
    result = BatchResult(req.action, outcomes)
    with transaction(svc, actor) as ctx:
        ctx.audit(
            "users.batch",
            None,
            batch_action=req.action,
            role=req.role,
            group=req.group,
            done=result.done,
            failed=result.failed,
        )
    return result


def _username(svc: Services, actor: Actor, uuid: str) -> str | None:
    """The username of a user who failed, if the actor may read them (else None: the reason
    is "not found", and so is the name)."""
    if not _plausible(uuid):
        return None
    with transaction(svc, actor) as ctx:
        try:
            return manage_users.get(ctx, uuid).username
        except IdPError:
            return None
