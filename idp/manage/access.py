"""Access requests (a user asks for a role or a group, often for a while) and temporary grants
(role assignments and group memberships with an end, ``expires_at``).

Who sees what:

- access requests: ``users:access:read`` or ``users:access:approve`` over the requesting user
  (delegation scopes apply), or being that user's manager;
- temporary grants: ``users:roles:read`` over the user who holds them.

Deciding reuses ``Directory.may_decide`` / ``decide``: the user's manager, or someone with
``users:access:approve`` over the user (and, for a role, allowed to grant it); nobody decides
their own request (nor one they filed for someone else). A decision is a person's: service
accounts and the command-line operator are refused, since ``decided_by`` names a user.
Revoking a temporary grant needs what taking it away needs anywhere else:
``users:roles:assign`` (a role) or ``users:groups:assign`` (a membership) over the user.

No mail is sent here: the directory sends none on a decision, and the mail templates and the
queue live in ``idp.web`` (``idp.web.mailing.queue_mail``), so telling the requester is the
caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)

from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..storage.models import AccessRequest, Group, GroupMember, Role, User, UserRole
from ..storage.rbac import Authorizer
from . import groups as manage_groups
from . import users as manage_users
from .context import Context

READ = "users:access:read"
APPROVE = "users:access:approve"
GRANTS_READ = "users:roles:read"


# --- who may see which users ----------------------------------------------------------------


def _user_filter(ctx: Context, permission: str) -> ColumnElement[bool]:
    """The users (a WHERE clause on ``User``) over whom the actor holds ``permission``."""
    if ctx.actor.kind == "user" and ctx.actor.user_id is not None:
        return Authorizer(ctx.db, ctx.svc.store, ctx.svc.clock).user_filter(
            ctx.actor.user_id, permission
        )
    return true() if ctx.allowed(permission) else false()


def _holds_somewhere(ctx: Context, permission: str) -> bool:
    if ctx.actor.kind == "user" and ctx.actor.user_id is not None:
        grants = Authorizer(ctx.db, ctx.svc.store, ctx.svc.clock).grants(ctx.actor.user_id)
        return grants.allows(permission) or bool(grants.scopes_allowing(permission))
    return ctx.allowed(permission)


def _is_manager(ctx: Context) -> ColumnElement[bool]:
    if ctx.actor.kind != "user" or ctx.actor.user_id is None:
        return false()
    return User.manager_id == ctx.actor.user_id


def _request_visibility(ctx: Context) -> ColumnElement[bool]:
    """Permission check for reading requests: 403 for an actor who may read none at all."""
    manages = ctx.actor.kind == "user" and bool(
        ctx.db.scalar(select(exists().where(User.manager_id == ctx.actor.user_id)))
    )
    if not (manages or _holds_somewhere(ctx, READ) or _holds_somewhere(ctx, APPROVE)):
        raise Forbidden(f"permission {READ} is required for this")
    return or_(_user_filter(ctx, READ), _user_filter(ctx, APPROVE), _is_manager(ctx))


# --- access requests --------------------------------------------------------------------------

RequestStatus = Literal["pending", "approved", "rejected", "cancelled"]


@dataclass(frozen=True)
class AccessQuery:
    status: RequestStatus | None = None
    user_uuid: str | None = None
    kind: Literal["role", "group"] | None = None
    page: int = 1
    per_page: int = 25


@dataclass(frozen=True)
class Party:
    id: str  # the user's uuid
    username: str


@dataclass(frozen=True)
class RequestView:
    id: int
    user: Party
    kind: str
    role: str | None
    role_client_id: str | None
    group: str | None
    expires_at: datetime | None
    reason: str | None
    status: str
    requested_by: Party | None
    decided_by: Party | None
    decided_at: datetime | None
    created_at: datetime


def _party(ctx: Context, user_id: int | None) -> Party | None:
    if user_id is None:
        return None
    user = ctx.db.get(User, user_id)
    return Party(user.uuid, user.username) if user is not None else None


def _view(ctx: Context, req: AccessRequest) -> RequestView:
    role = ctx.db.get(Role, req.target_id) if req.kind == "role" else None
    group = ctx.db.get(Group, req.target_id) if req.kind == "group" else None
    return RequestView(
        id=req.id,
        user=_party(ctx, req.user_id) or Party("", ""),
        kind=req.kind,
        role=role.name if role else None,
        role_client_id=role.client_id if role else None,
        group=group.path if group else None,
        expires_at=req.expires_at,
        reason=req.reason,
        status=req.status,
        requested_by=_party(ctx, req.requested_by),
        decided_by=_party(ctx, req.decided_by),
        decided_at=req.decided_at,
        created_at=req.created_at,
    )


def list_requests(ctx: Context, query: AccessQuery) -> tuple[list[RequestView], int]:
    """One page of the requests the actor may see, newest first, and how many match."""
    where = [_request_visibility(ctx)]
    if query.status:
        where.append(AccessRequest.status == query.status)
    if query.kind:
        where.append(AccessRequest.kind == query.kind)
    if query.user_uuid:
        where.append(User.uuid == query.user_uuid)
    base = select(AccessRequest).join(User, User.id == AccessRequest.user_id).where(*where)
    total = ctx.db.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = ctx.db.scalars(
        base.order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    ).all()
    return [_view(ctx, r) for r in rows], total


def _visible_request(ctx: Context, request_id: int) -> AccessRequest:
    visible = _request_visibility(ctx)
    req = ctx.db.scalar(
        select(AccessRequest)
        .join(User, User.id == AccessRequest.user_id)
        .where(AccessRequest.id == request_id, visible)
    )
    if req is None:
        raise NotFound(f"no access request {request_id}")
    return req


def get_request(ctx: Context, request_id: int) -> RequestView:
    return _view(ctx, _visible_request(ctx, request_id))


def decide(ctx: Context, request_id: int, *, approve: bool, note: str | None = None) -> RequestView:
    """Approve (the role or membership is granted, until the requested end) or deny; ``note``
    (the approver's reason, at most 500 characters) is kept in the decision's audit row."""
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise ValidationError("reason: at most 500 characters")
    if ctx.actor.kind != "user" or ctx.actor.user_id is None:
        raise Forbidden(
            "an access request is decided by a person: use a user's access token, "
            "not a service account"
        )
    approver = ctx.db.get(User, ctx.actor.user_id)
    if approver is None:
        raise Forbidden("the approver no longer exists")
    req = _visible_request(ctx, request_id)
    if approver.id in (req.user_id, req.requested_by):
        raise Forbidden("nobody decides their own request (or one they filed)")
    if not ctx.directory.may_decide(req, approver, ctx.svc.store):
        raise Forbidden(
            f"deciding needs to be the user's manager, or {APPROVE} over the user "
            "(and, for a role, the right to grant it)"
        )
    if req.status != "pending":
        raise Conflict(f"request {req.id} is already {req.status}")
    try:
        ctx.directory.decide(req, approver, approve, ctx.svc.store)
    except ValidationError as exc:
        # "would already have ended": the request, not the input, is what is wrong.
        raise Conflict(str(exc)) from None
    view = _view(ctx, req)
    ctx.audit(
        "access_request.approved" if approve else "access_request.denied",
        view.user.id,
        access_request=req.id,
        kind=req.kind,
        role=view.role,
        group=view.group,
        expires_at=req.expires_at.isoformat() if req.expires_at else None,
        **({"note": note} if note else {}),
    )
    return view


# --- temporary grants --------------------------------------------------------------------------

GrantState = Literal["active", "expired", "all"]


@dataclass(frozen=True)
class GrantQuery:
    user_uuid: str | None = None
    kind: Literal["role", "group"] | None = None
    state: GrantState = "active"
    page: int = 1
    per_page: int = 25


@dataclass(frozen=True)
class GrantView:
    id: str  # "role-<assignment id>" or "group-<group id>-<user id>"
    kind: str
    user: Party
    role: str | None
    role_client_id: str | None
    group: str | None
    scope_company_id: int | None
    scope_department_id: int | None
    expires_at: datetime
    expired: bool
    granted_by: Party | None
    created_at: datetime | None


def _grant_rows(ctx: Context, where_user: ColumnElement[bool]):
    int_null = cast(null(), Integer)
    roles = (
        select(
            literal("role", String).label("kind"),
            UserRole.id.label("ref"),
            UserRole.user_id.label("user_id"),
            UserRole.role_id.label("target_id"),
            UserRole.expires_at.label("expires_at"),
            UserRole.created_at.label("created_at"),
            UserRole.granted_by.label("granted_by"),
            UserRole.scope_company_id.label("scope_company_id"),
            UserRole.scope_department_id.label("scope_department_id"),
        )
        .join(User, User.id == UserRole.user_id)
        .where(UserRole.expires_at.is_not(None), where_user)
    )
    memberships = (
        select(
            literal("group", String).label("kind"),
            GroupMember.group_id.label("ref"),
            GroupMember.user_id.label("user_id"),
            GroupMember.group_id.label("target_id"),
            GroupMember.expires_at.label("expires_at"),
            GroupMember.created_at.label("created_at"),
            GroupMember.granted_by.label("granted_by"),
            int_null.label("scope_company_id"),
            int_null.label("scope_department_id"),
        )
        .join(User, User.id == GroupMember.user_id)
        .where(GroupMember.expires_at.is_not(None), where_user)
    )
    return roles, memberships


def _grant_view(ctx: Context, row) -> GrantView:
    now = ctx.svc.clock.utcnow()
    role = ctx.db.get(Role, row.target_id) if row.kind == "role" else None
    group = ctx.db.get(Group, row.target_id) if row.kind == "group" else None
    grant_id = f"role-{row.ref}" if row.kind == "role" else f"group-{row.ref}-{row.user_id}"
    return GrantView(
        id=grant_id,
        kind=row.kind,
        user=_party(ctx, row.user_id) or Party("", ""),
        role=role.name if role else None,
        role_client_id=role.client_id if role else None,
        group=group.path if group else None,
        scope_company_id=row.scope_company_id,
        scope_department_id=row.scope_department_id,
        expires_at=row.expires_at,
        expired=row.expires_at <= now,
        granted_by=_party(ctx, row.granted_by),
        created_at=row.created_at,
    )


def list_grants(ctx: Context, query: GrantQuery) -> tuple[list[GrantView], int]:
    """One page of temporary grants the actor may see, the soonest to end first."""
    if not _holds_somewhere(ctx, GRANTS_READ):
        raise Forbidden(f"permission {GRANTS_READ} is required for this")
    where_user = _user_filter(ctx, GRANTS_READ)
    if query.user_uuid:
        where_user = where_user & (User.uuid == query.user_uuid)
    roles, memberships = _grant_rows(ctx, where_user)
    parts = {"role": [roles], "group": [memberships]}.get(query.kind or "", [roles, memberships])
    rows = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    where = []
    now = ctx.svc.clock.utcnow()
    if query.state == "active":
        where.append(rows.c.expires_at > now)
    elif query.state == "expired":
        where.append(rows.c.expires_at <= now)
    total = ctx.db.scalar(select(func.count()).select_from(rows).where(*where)) or 0
    page = ctx.db.execute(
        select(rows)
        .where(*where)
        .order_by(rows.c.expires_at, rows.c.kind, rows.c.ref, rows.c.user_id)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    ).all()
    return [_grant_view(ctx, r) for r in page], total


def _parse_grant_id(grant_id: str) -> tuple[str, int, int | None]:
    kind, _, rest = grant_id.partition("-")
    parts = rest.split("-")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if kind == "role" and len(numbers) == 1:
        return kind, numbers[0], None
    if kind == "group" and len(numbers) == 2:
        return kind, numbers[0], numbers[1]
    raise NotFound(f"no temporary grant {grant_id[:100]!r}")


def revoke_grant(ctx: Context, grant_id: str) -> None:
    """End a temporary role assignment or group membership now."""
    kind, first, second = _parse_grant_id(grant_id)
    missing = NotFound(f"no temporary grant {grant_id[:100]!r}")
    if kind == "role":
        assignment = ctx.db.get(UserRole, first)
        if assignment is None or assignment.expires_at is None:
            raise missing
        user_id = assignment.user_id
    else:
        membership = ctx.db.get(GroupMember, (first, second))
        if membership is None or membership.expires_at is None:
            raise missing
        user_id = membership.user_id
    # Someone who may not even see the user learns nothing (404, not 403).
    if not ctx.allowed(GRANTS_READ, user_id) and not ctx.allowed(
        "users:roles:assign" if kind == "role" else "users:groups:assign", user_id
    ):
        raise missing
    user = ctx.db.get(User, user_id)
    if kind == "group":
        manage_groups.remove_member(ctx, ctx.db.get(Group, first), user)
        return
    ctx.require("users:roles:assign", user_id)
    role = ctx.db.get(Role, assignment.role_id)
    expires_at = assignment.expires_at
    before = manage_users.assignments_of(ctx, user, role) if role else []
    ctx.db.delete(assignment)
    ctx.db.flush()
    ctx.audit(
        "user.role_removed",
        user.uuid,
        role=role.name if role else None,
        client_id=role.client_id if role else None,
        grant=grant_id,
        expires_at=expires_at.isoformat(),
        removed=1,
        before=before,
        after=manage_users.assignments_of(ctx, user, role) if role else [],
    )
