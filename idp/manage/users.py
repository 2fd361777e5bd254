"""Users: find them (search, export), create, edit, delete, lock, passwords and second factors,
role assignments, and what a user holds (permissions, claims preview).

Users are addressed by ``uuid`` outside (the API's and SCIM's id). Permissions (target user in
brackets): ``users:accounts:read`` [user] to read and list (a delegated actor sees their scope
only, :func:`visible`), ``users:accounts:create`` (global), ``users:accounts:update`` [user]
to edit and lock, ``users:accounts:delete`` [user], ``users:lockout:unlock`` [user],
``users:password:reset`` [user], ``users:mfa:reset`` [user], ``users:roles:assign`` and
``users:groups:assign`` [user], ``users:roles:read`` [user] for the permission read-outs.
Giving a role or a group also needs every permission it carries.

A user outside the actor's reach is :class:`~idp.errors.NotFound`, as a missing one is (no
existence leak); an actor who holds the permission nowhere is :class:`~idp.errors.Forbidden`.
A value wrong in itself is :class:`~idp.errors.ValidationError` naming the field; one that clashes
with the stored data or with another field (a taken e-mail, an end date before the start date,
"verified" without an address) is :class:`~idp.errors.Conflict`; a password the policy refuses is
:class:`PasswordRejected` (a ValidationError carrying the broken rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update

from ..backends.lockout import Lockout
from ..backends.mfa_reset import reset_user_mfa
from ..backends.password_change import password_violations, store_password
from ..core import rbac as core_rbac
from ..core.policy import LockoutPolicy, PasswordPolicy, Violation
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..storage.claims import explain as explain_paths
from ..storage.claims import oidc_claims, saml_attributes
from ..storage.directory import (
    EMAIL_RE,
    LOCALE_RE,
    NewUser,
    id_ref,
    username_key,
    valid_username,
)
from ..storage.models import (
    Company,
    Department,
    Group,
    GroupMember,
    Position,
    Role,
    User,
    UserRole,
)
from ..storage.rbac import (
    Authorizer,
    Grants,
    bump_generation,
    covers,
    grants_for,
    group_role_ids,
    role_grants,
)
from ..storage.session_index import SessionRecords, end_user_sessions
from .context import Context
from .groups import group_grants
from .sessions import end_all_after_commit


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- finding users -------------------------------------------------------------------------------

STATUSES = ("active", "inactive", "locked", "pending", "expired")
EMPLOYMENT = ("current", "future", "past", "none")
SORTS = (
    "username",
    "email",
    "family_name",
    "created_at",
    "last_login_at",
    "start_date",
    "end_date",
)


@dataclass(frozen=True)
class UserQuery:
    """What :func:`search` looks for. ``q``: contains, case-insensitive, over the username, the
    given / family / display name, the e-mail address and the phone. ``company``: slug or id.
    ``department``: id or "company-slug/Dept/Sub", with its subtree. ``group``: a group path,
    with its subgroups. ``position``: position id or name (in any company).
    ``status``: active|inactive|locked|pending|expired. ``employment`` by
    the start and end dates, today: current (started or no start, not ended: users without
    dates count), future (starts after today), past (ended before today), none (no dates).
    ``start_from`` / ``start_to`` and ``end_from`` / ``end_to``: the start (end) date within
    that range, bounds included. ``sort``: username, email, family_name, created_at,
    last_login_at, start_date, end_date; a "-" prefix sorts descending. ``per_page`` None:
    every match (an export)."""

    q: str | None = None
    company: str | None = None
    department: str | None = None
    group: str | None = None
    position: str | None = None
    status: str | None = None
    employment: str | None = None
    start_from: date | None = None
    start_to: date | None = None
    end_from: date | None = None
    end_to: date | None = None
    sort: str = "username"
    page: int = 1
    per_page: int | None = 25


def _authorizer(ctx: Context) -> Authorizer:
    return Authorizer(ctx.db, ctx.svc.store, ctx.svc.clock)


def visible(ctx: Context, permission: str = "users:accounts:read") -> ColumnElement[bool]:
    """A WHERE clause on ``User``: the users the actor may act on with ``permission``
    (operator or a global grant: everyone; a delegated grant: its company / department
    subtree; none: nobody). Service accounts hold global grants only."""
    kind = ctx.actor.kind
    if kind == "operator":
        return true()
    if kind == "user" and ctx.actor.user_id is not None:
        return _authorizer(ctx).user_filter(ctx.actor.user_id, permission)
    return true() if ctx.allowed(permission) else false()


def _holds_anywhere(ctx: Context, permission: str) -> bool:
    """Does the actor hold ``permission`` globally or in at least one delegated scope?"""
    if ctx.actor.kind == "user" and ctx.actor.user_id is not None:
        try:
            core_rbac.check_form(permission)
        except core_rbac.PermissionError_:
            return False
        status = ctx.db.scalar(select(User.status).where(User.id == ctx.actor.user_id))
        if status != "active":  # the same rule as Authorizer.authorize
            return False
        grants = _authorizer(ctx).grants(ctx.actor.user_id)
        return grants.allows(permission) or bool(grants.scopes_allowing(permission))
    return ctx.allowed(permission)


def _reach(ctx: Context, permission: str) -> ColumnElement[bool]:
    """:func:`visible`, after refusing an actor who holds ``permission`` nowhere (403)."""
    if not _holds_anywhere(ctx, permission):
        raise Forbidden(f"permission {permission} is required for this")
    return visible(ctx, permission)


def _today(ctx: Context) -> date:
    return ctx.svc.clock.utcnow().date()


def _conditions(ctx: Context, q: UserQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if q.q:
        needle = q.q.strip().lower()
        if needle:
            conds.append(
                or_(
                    *(
                        func.lower(col).contains(needle, autoescape=True)
                        for col in (
                            User.username,
                            User.given_name,
                            User.family_name,
                            User.display_name,
                            User.email,
                            User.phone,
                        )
                    )
                )
            )
    if q.company:
        ref = q.company.strip()
        match = Company.slug == ref
        if (number := id_ref(ref)) is not None:
            match = or_(match, Company.id == number)
        conds.append(User.company_id.in_(select(Company.id).where(match)))
    if q.department:
        try:
            dept = ctx.directory.department(q.department.strip())
        except NotFound:
            conds.append(false())
        else:
            conds.append(User.department_id.in_(ctx.directory.subtree_ids(dept)))
    if q.group:
        path = q.group.strip().strip("/")
        groups = select(Group.id).where(
            or_(Group.path == path, Group.path.startswith(path + "/", autoescape=True))
        )
        conds.append(
            exists().where(GroupMember.user_id == User.id, GroupMember.group_id.in_(groups))
        )
    if q.position:
        ref = q.position.strip()
        match = Position.name == ref
        if (number := id_ref(ref)) is not None:
            match = or_(match, Position.id == number)
        conds.append(User.position_id.in_(select(Position.id).where(match)))
    for column, low, high in (
        (User.start_date, q.start_from, q.start_to),
        (User.end_date, q.end_from, q.end_to),
    ):
        if low:
            conds.append(column >= low)
        if high:
            conds.append(column <= high)
    if q.status:
        if q.status not in STATUSES:
            raise ValidationError(f"status: one of {', '.join(STATUSES)}")
        conds.append(User.status == q.status)
    if q.employment:
        today = _today(ctx)
        started = or_(User.start_date.is_(None), User.start_date <= today)
        not_ended = or_(User.end_date.is_(None), User.end_date >= today)
        by_kind = {
            "current": and_(started, not_ended),
            "future": User.start_date > today,
            "past": User.end_date < today,
            "none": and_(User.start_date.is_(None), User.end_date.is_(None)),
        }
        if q.employment not in by_kind:
            raise ValidationError(f"employment: one of {', '.join(EMPLOYMENT)}")
        conds.append(by_kind[q.employment])
    return conds


def _order(sort: str) -> list[Any]:
    name = sort.lstrip("-")
    if name not in SORTS:
        raise ValidationError(f'sort: one of {", ".join(SORTS)} ("-" prefix: descending)')
    column = getattr(User, name)
    if name == "username":
        column = func.lower(User.username)
    desc = sort.startswith("-")
    key = column.desc() if desc else column.asc()
    tie = User.id.desc() if desc else User.id.asc()
    if name == "username":
        # Never empty: without an "is empty" term first, the page is read in the order of
        # the lower(username) index and stops after it, where that term sorted every user
        # for each page (bench/bench_scale.py shows both plans).
        return [key, tie]
    # Empty values last either way (both databases), then the id: a stable page order.
    return [column.is_(None), key, tie]


def _select(ctx: Context, q: UserQuery, permission: str):
    where = [_reach(ctx, permission), *_conditions(ctx, q)]
    return select(User).where(*where), where


def search(ctx: Context, q: UserQuery) -> tuple[list[User], int]:
    """One page of the users the actor may read that match ``q``, and how many match."""
    if q.page < 1 or (q.per_page is not None and q.per_page < 1):
        raise ValidationError("page and per_page start at 1")
    stmt, where = _select(ctx, q, "users:accounts:read")
    total = int(ctx.db.scalar(select(func.count(User.id)).where(*where)) or 0)
    order = _order(q.sort)
    stmt = stmt.order_by(*order)
    if q.per_page is not None:
        offset = (q.page - 1) * q.per_page
        if offset:
            # A later page skips its offset on the ids alone, then reads its own rows: the
            # skipped rows are not loaded nor joined to their department, company and
            # position (the last of 100,000 users: 5x less work, bench/bench_scale.py).
            ids = select(User.id).where(*where).order_by(*order).offset(offset)
            stmt = select(User).where(User.id.in_(ids.limit(q.per_page).scalar_subquery()))
            stmt = stmt.order_by(*order)
        else:
            stmt = stmt.limit(q.per_page)
    return list(ctx.db.scalars(stmt)), total


def iter_search(ctx: Context, q: UserQuery, batch: int = 1000) -> Iterator[User]:
    """Every user matching ``q`` the actor may read (pagination ignored), in ``batch``-sized
    queries, for an export."""
    stmt, _ = _select(ctx, q, "users:accounts:read")
    stmt = stmt.order_by(*_order(q.sort))
    offset = 0
    while True:
        rows = list(ctx.db.scalars(stmt.offset(offset).limit(batch)))
        yield from rows
        if len(rows) < batch:
            return
        offset += batch


def get(ctx: Context, uuid: str, permission: str = "users:accounts:read") -> User:
    """The user with this uuid, if the actor may act on them with ``permission``. Missing and
    out of the actor's reach are the same NotFound; holding the permission nowhere is
    Forbidden."""
    where = _reach(ctx, permission)
    user = ctx.db.scalar(select(User).where(User.uuid == str(uuid), where))
    if user is None:
        raise NotFound("no such user")
    # In the actor's scope, but e.g. a global administrator there: listed, not theirs to touch.
    ctx.require(permission, user.id)
    return user


# --- creating, changing, deleting ------------------------------------------------------------


class PasswordRejected(ValidationError):
    """A password the configured policy refuses; ``violations`` say which rules it breaks."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__(
            "password: breaks the password policy: "
            + ", ".join(_violation_words(v) for v in violations)
        )
        self.violations = violations


def _policy(ctx: Context) -> PasswordPolicy:
    return PasswordPolicy.from_settings(ctx.svc.settings.password_policy)


def _violation_words(v: Violation) -> str:
    params = ", ".join(f"{k}={val}" for k, val in sorted((v.params or {}).items()))
    return f"{v.code} ({params})" if params else v.code


def _check_password(ctx: Context, user: User, password: str) -> None:
    """The configured password policy (idp.backends.password_change), history included."""
    violations = password_violations(ctx.db, ctx.svc.password_hasher, _policy(ctx), user, password)
    if violations:
        raise PasswordRejected(violations)


def create(
    ctx: Context,
    new: NewUser,
    *,
    password: str | None = None,
    groups: list[str] = (),
    roles: list[str] = (),
    email_verified: bool = False,
    must_change_password: bool = False,
    require_mfa: bool = False,
    check_password_policy: bool = False,
    fields: dict[str, Any] | None = None,
) -> User:
    """A new user, with a password (hashed here) or none (they set one by e-mail), in
    ``groups`` (paths) with ``roles`` (global role names). ``email_verified``: the address
    is known to be theirs (released as ``email_verified`` true). ``check_password_policy``:
    the password must pass the configured policy (the API asks for it; the operator at the
    command line may set anything). ``fields``: more of the user's fields, as :func:`update`
    takes them (display name, phone, locale, custom fields...), part of the same creation."""
    ctx.require("users:accounts:create")
    if password and check_password_policy:
        probe = User(
            username=new.username,
            email=new.email,
            given_name=new.given_name,
            family_name=new.family_name,
        )
        violations = password_violations(
            ctx.db, ctx.svc.password_hasher, replace(_policy(ctx), history=0), probe, password
        )
        if violations:
            raise PasswordRejected(violations)
    if password:
        new = replace(new, password_hash=ctx.svc.password_hasher.hash(password))
    new = replace(
        new,
        given_name=_text("given_name", new.given_name),
        family_name=_text("family_name", new.family_name),
        must_change_password=new.must_change_password or must_change_password,
        require_mfa=new.require_mfa or require_mfa,
    )
    if new.start_date and new.end_date and new.end_date < new.start_date:
        raise Conflict("end_date: end date is before start date")
    user = ctx.directory.create_user(new, list(groups), list(roles))
    if password:
        user.password_changed_at = ctx.svc.clock.utcnow()
    if fields:
        _apply(ctx, user, fields)
    if email_verified and not user.email:
        raise Conflict("email_verified: there is no e-mail address")
    user.email_verified = bool(email_verified)
    if roles:
        ctx.require("users:roles:assign", user.id)
        role_ids = list(ctx.db.scalars(select(UserRole.role_id).where(UserRole.user_id == user.id)))
        grants = role_grants(ctx.db, role_ids, clock=ctx.svc.clock)
        ctx.require_holds(grants, user.id)
        ctx.require_holds_within(grants)  # assigned without a scope: they apply everywhere
        ctx.require_holds_roles(role_ids, user.id, "users:roles:assign")
    if groups:
        ctx.require("users:groups:assign", user.id)
        for group_id in ctx.db.scalars(
            select(GroupMember.group_id).where(GroupMember.user_id == user.id)
        ):
            ctx.require_holds(group_grants(ctx, group_id), user.id)
            ctx.require_holds_within(group_grants(ctx, group_id))
            given = group_role_ids(ctx.db, group_id) or []
            ctx.require_holds_roles(given, user.id, "users:groups:assign")
    ctx.db.flush()
    ctx.audit(
        "user.created",
        user.uuid,
        username=user.username,
        groups=list(groups),
        roles=list(roles),
        password_set=bool(password),
        email_verified=user.email_verified,
        must_change_password=user.must_change_password,
        require_mfa=user.require_mfa,
    )
    return user


EDITABLE = (
    "username",
    "email",
    "email_verified",
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "phone",
    "phone_verified",
    "locale",
    "timezone",
    "color",
    "start_date",
    "end_date",
    "external_id",
    "require_mfa",
    "custom",
    "active",
)

_TEXT_LIMITS = {
    "given_name": 150,
    "middle_name": 150,
    "family_name": 150,
    "display_name": 300,
    "phone": 40,
    "external_id": 255,
}
PHONE_RE = re.compile(r"^\+?[0-9 ()./-]{3,40}$")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name}: must be text")
    value = value.strip()
    if not value:
        return None
    if len(value) > _TEXT_LIMITS[name] or any(c < " " for c in value):
        raise ValidationError(
            f"{name}: at most {_TEXT_LIMITS[name]} characters, no control characters"
        )
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name}: must be true or false")
    return value


def _date(name: str, value: Any) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"{name}: a date YYYY-MM-DD")


def _timezone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in available_timezones():
        raise ValidationError("timezone: an IANA time zone name such as Europe/Berlin")
    ZoneInfo(value)
    return value


def _normalized(ctx: Context, user: User, name: str, value: Any) -> Any:
    """``value`` checked and in the form the column keeps (None clears)."""
    if name == "username":
        if not valid_username(value):
            raise ValidationError(
                "username: 1-150 letters, digits or . _ @ + - starting with a letter or digit"
            )
        taken = ctx.db.scalar(
            select(User.id).where(
                func.lower(User.username) == username_key(value), User.id != user.id
            )
        )
        if taken:
            raise Conflict(f"username: {value!r} is already used by another user")
        return value
    if name == "email":
        if value is None:
            return None
        if not isinstance(value, str) or not EMAIL_RE.fullmatch(value.strip().lower()):
            raise ValidationError("email: not an e-mail address")
        value = value.strip().lower()
        if ctx.db.scalar(select(User.id).where(User.email == value, User.id != user.id)):
            raise Conflict("email: already used by another user")
        return value
    if name in ("email_verified", "phone_verified", "require_mfa", "active"):
        return _bool(name, value)
    if name == "phone":
        value = _text(name, value)
        if value is not None and not PHONE_RE.match(value):
            raise ValidationError("phone: digits, spaces and + ( ) . / -")
        return value
    if name in _TEXT_LIMITS:
        return _text(name, value)
    if name == "locale":
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 35 or not LOCALE_RE.fullmatch(value):
            raise ValidationError("locale: a language tag such as de or pt-BR")
        return value.replace("_", "-")
    if name == "timezone":
        return _timezone(value)
    if name == "color":
        if value is None:
            return None
        if not isinstance(value, str) or not COLOR_RE.match(value):
            raise ValidationError("color: #rrggbb")
        return value.lower()
    if name in ("start_date", "end_date"):
        return _date(name, value)
    raise ValidationError(f"{name}: cannot be changed")  # pragma: no cover - EDITABLE guards


def update(ctx: Context, user: User, changes: dict[str, Any]) -> User:
    """Change the fields named in ``changes`` (keys: :data:`EDITABLE`; None clears a field;
    ``custom`` merges into the custom fields, a None value clearing one; ``active`` switches
    the status between active and inactive). A new e-mail address (phone) is unverified
    unless ``email_verified`` (``phone_verified``) says otherwise. Audited as "user.updated"
    with the names of the fields that changed and their values before and after (personal
    data: kept in the audit row's erasable details)."""
    ctx.require("users:accounts:update", user.id)
    before = _audited_values(user, changes)
    changed = _apply(ctx, user, changes)
    if changed:
        after = _audited_values(user, changes)
        ctx.audit(
            "user.updated",
            user.uuid,
            fields=changed,
            before={f: before.get(f) for f in changed},
            after={f: after.get(f) for f in changed},
        )
    return user


def _audited_values(user: User, changes: dict[str, Any]) -> dict[str, Any]:
    """The current values of the fields ``changes`` names, as JSON (dates as ISO text)."""
    values: dict[str, Any] = {}
    for name in changes:
        if name == "active":
            values[name] = user.status
        elif name == "custom":
            values[name] = dict(user.custom or {})
        else:
            value = getattr(user, name, None)
            values[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return values


def _apply(ctx: Context, user: User, changes: dict[str, Any]) -> list[str]:
    """Check and make the changes of :func:`update`; the names of the fields that changed."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationError(f"{unknown[0]}: not a field that can be changed")
    values = {k: _normalized(ctx, user, k, v) for k, v in changes.items() if k != "custom"}
    if "username" in values and values["username"] is None:
        raise ValidationError("username: required")
    start = values.get("start_date", user.start_date)
    end = values.get("end_date", user.end_date)
    if start and end and end < start:
        raise Conflict("end_date: end date is before start date")
    changed: list[str] = []
    if "email" in values and values["email"] != user.email and "email_verified" not in values:
        values["email_verified"] = False
    if "phone" in values and values["phone"] != user.phone and "phone_verified" not in values:
        values["phone_verified"] = False
    if values.get("email_verified") and not values.get("email", user.email):
        raise Conflict("email_verified: there is no e-mail address")
    if "active" in values:
        want = "active" if values.pop("active") else "inactive"
        if user.status != want:
            if user.status == "locked":
                raise Conflict("active: the account is locked; unlock it instead")
            user.status = want
            changed.append("active")
            if want == "inactive":
                end_all_after_commit(ctx, user, "deactivated")
    for name, value in values.items():
        if getattr(user, name) != value:
            setattr(user, name, value)
            changed.append(name)
    if "custom" in changes:
        custom = changes["custom"]
        if custom is None:
            custom = {k: None for k in (user.custom or {})}
        if not isinstance(custom, dict):
            raise ValidationError("custom: an object of custom field values")
        before = dict(user.custom or {})
        ctx.directory.set_custom(user, custom)
        if (user.custom or {}) != before:
            changed.append("custom")
    ctx.db.flush()
    return sorted(changed)


# The top administrator permission: whoever holds it everywhere can do everything.
TOP_PERMISSION = "*"


def holds_top(ctx: Context, user_id: int) -> bool:
    """Does the user hold the top administrator permission (``*``, unscoped)?"""
    everywhere = _authorizer(ctx).grants(user_id).everywhere
    return any(covers(g, TOP_PERMISSION) for g in everywhere)


def refuse_last_admin(ctx: Context, user: User) -> None:
    """Conflict when ``user`` holds the top administrator permission and no other active user
    does: removing them would leave the IdP without anyone who can administer everything."""
    if not holds_top(ctx, user.id):
        return
    # Only users with a role or a group can hold a permission at all.
    candidates = ctx.db.scalars(
        select(User.id).where(
            User.id != user.id,
            User.status == "active",
            or_(
                exists().where(UserRole.user_id == User.id),
                exists().where(GroupMember.user_id == User.id),
            ),
        )
    )
    if any(holds_top(ctx, uid) for uid in candidates):
        return
    raise Conflict(
        f"{user.username} is the last administrator (holds '{TOP_PERMISSION}'); "
        "give another active user the Administrator role first"
    )


def delete(ctx: Context, user: User, *, sessions: SessionRecords | None = None) -> None:
    """Delete the user with their memberships, assignments, factors and tokens (the database
    cascades); their reports lose their manager. With ``sessions`` (the SSO session manager)
    their sessions end first, relying parties told. Nobody deletes their own account, nor
    the last administrator."""
    ctx.require("users:accounts:delete", user.id)
    if ctx.actor.kind == "user" and ctx.actor.user_id == user.id:
        raise Conflict("you cannot delete your own account")
    refuse_last_admin(ctx, user)
    uuid, username = user.uuid, user.username
    ended = end_user_sessions(ctx.db, sessions, user.id) if sessions is not None else 0
    ctx.db.execute(sql_update(User).where(User.manager_id == user.id).values(manager_id=None))
    ctx.db.execute(sql_delete(User).where(User.id == user.id))
    ctx.db.expunge(user)
    # Ids may be reused (SQLite): no cached grant of the gone user may outlive this.
    bump_generation(ctx.db)
    ctx.audit("user.deleted", uuid, username=username, sessions_ended=ended)


# --- lock, passwords, second factors ------------------------------------------------------------


def _lockout(ctx: Context) -> Lockout:
    policy = LockoutPolicy.from_settings(ctx.svc.settings.lockout)
    return Lockout(ctx.svc.store, policy, ctx.svc.clock)


def lock(ctx: Context, user: User) -> User:
    """Lock the account (status "locked": no sign-in, no new tokens) until :func:`unlock`."""
    ctx.require("users:accounts:update", user.id)
    if ctx.actor.kind == "user" and ctx.actor.user_id == user.id:
        raise Conflict("you cannot lock your own account")
    previous = user.status
    user.status = "locked"
    ctx.db.flush()
    end_all_after_commit(ctx, user, "locked")
    ctx.audit("user.locked", user.uuid, previous_status=previous)
    return user


def unlock(ctx: Context, user: User) -> User:
    """Lift an administrator's lock (status back to active) and the temporary lockout after
    failed sign-ins (the counters in the store, cleared once this commits)."""
    ctx.require("users:lockout:unlock", user.id)
    lockout = _lockout(ctx)
    was_locked = user.status == "locked"
    temporary = lockout.is_locked(f"u{user.id}")
    if was_locked:
        user.status = "active"
        ctx.db.flush()
    user_id = user.id
    ctx.after_commit(lambda: lockout.unlock(user_id))
    ctx.audit("user.unlocked", user.uuid, status_lock=was_locked, lockout=temporary)
    return user


def set_password(ctx: Context, user: User, password: str, *, temporary: bool = False) -> User:
    """Set the user's password after the configured policy (length, classes, personal data,
    common passwords, history); ``temporary``: they must change it at the next sign-in."""
    ctx.require("users:password:reset", user.id)
    if not isinstance(password, str) or not password:
        raise ValidationError("password: required")
    _check_password(ctx, user, password)
    store_password(
        ctx.db,
        ctx.svc.password_hasher,
        _policy(ctx),
        user,
        password,
        now=ctx.svc.clock.utcnow(),
    )
    user.must_change_password = bool(temporary)
    ctx.db.flush()
    ctx.audit("user.password_set", user.uuid, temporary=bool(temporary))
    end_all_after_commit(ctx, user, "password_set")
    return user


def force_password_change(ctx: Context, user: User) -> User:
    """The user must choose a new password at their next sign-in."""
    ctx.require("users:password:reset", user.id)
    user.must_change_password = True
    ctx.db.flush()
    ctx.audit("user.password_change_forced", user.uuid)
    return user


def reset_mfa(
    ctx: Context, user: User, *, notify: Callable[[User, list[str]], Any] | None = None
) -> int:
    """Remove every second factor and remembered device of the user (they lost them: they set
    up new ones at the next sign-in, which ``require_mfa`` enforces). ``notify(user,
    removed)`` runs once this commits (the surfaces mail the user). How many factors went."""
    ctx.require("users:mfa:reset", user.id)
    removed = reset_user_mfa(ctx.svc, ctx.db, user)
    ctx.audit("mfa.reset", user.uuid, removed=removed, by_admin=True)
    if notify is not None:
        ctx.after_commit(lambda: notify(user, removed))
    return len(removed)


# --- roles ----------------------------------------------------------------------------------------


def assign_role(
    ctx: Context,
    user: User,
    role: Role,
    *,
    scope_company: Company | None = None,
    scope_department: Department | None = None,
    expires_at: datetime | None = None,
) -> UserRole:
    """Give ``user`` the role (optionally scoped for delegation, optionally temporary)."""
    ctx.require("users:roles:assign", user.id)
    grants = role_grants(ctx.db, [role.id], clock=ctx.svc.clock)
    ctx.require_holds(grants, user.id)
    ctx.require_holds_within(
        grants,
        company_id=scope_company.id if scope_company is not None else None,
        department_id=scope_department.id if scope_department is not None else None,
    )
    ctx.require_holds_roles([role.id], user.id, "users:roles:assign")
    before = assignments_of(ctx, user, role)
    row = ctx.directory.assign_role(
        user,
        role,
        scope_company=scope_company,
        scope_department=scope_department,
        expires_at=expires_at,
        granted_by=ctx.actor.user_id,
    )
    ctx.audit(
        "user.role_assigned",
        user.uuid,
        role=role.name,
        client_id=role.client_id,
        scope_company_id=row.scope_company_id,
        scope_department_id=row.scope_department_id,
        expires_at=_iso(row.expires_at),
        before=before,
        after=assignments_of(ctx, user, role),
    )
    return row


def assignments_of(ctx: Context, user: User, role: Role) -> list[dict[str, Any]]:
    """The user's assignments of ``role`` as the audit rows' before / after values: each
    one's delegation scope (company / department id, None = everywhere) and expiry."""
    rows = ctx.db.scalars(
        select(UserRole)
        .where(UserRole.user_id == user.id, UserRole.role_id == role.id)
        .order_by(UserRole.id)
    )
    return [
        {
            "scope_company_id": r.scope_company_id,
            "scope_department_id": r.scope_department_id,
            "expires_at": _iso(r.expires_at),
        }
        for r in rows
    ]


def remove_role(ctx: Context, user: User, role: Role) -> int:
    """Take the role away (every scope); how many assignments went."""
    ctx.require("users:roles:assign", user.id)
    before = assignments_of(ctx, user, role)
    removed = ctx.directory.unassign_role(user, role)
    ctx.audit(
        "user.role_removed",
        user.uuid,
        role=role.name,
        client_id=role.client_id,
        removed=removed,
        before=before,
        after=assignments_of(ctx, user, role),
    )
    return removed


def role_assignments(ctx: Context, user: User) -> list[tuple[UserRole, Role]]:
    """The roles assigned to the user directly (not through groups), with their delegation
    scope and expiry; expired temporary grants are left out (they grant nothing)."""
    ctx.require("users:roles:read", user.id)
    now = ctx.svc.clock.utcnow()
    rows = ctx.db.execute(
        select(UserRole, Role)
        .join(Role, Role.id == UserRole.role_id)
        .where(
            UserRole.user_id == user.id,
            or_(UserRole.expires_at.is_(None), UserRole.expires_at > now),
        )
        .order_by(Role.name, Role.client_id, UserRole.id)
    )
    return [(ur, role) for ur, role in rows]


def groups_of(ctx: Context, user: User) -> list[Group]:
    """The groups the user is a member of (directly), by path."""
    ctx.require("users:accounts:read", user.id)
    return list(
        ctx.db.scalars(
            select(Group)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id)
            .order_by(Group.path)
        )
    )


def explain(ctx: Context, user: User, permission: str) -> list[str]:
    """Every path that grants ``user`` the permission (empty: it is not granted)."""
    ctx.require("users:roles:read", user.id)
    return explain_paths(ctx.db, user.id, permission, clock=ctx.svc.clock)


def permissions(ctx: Context, user: User) -> Grants:
    """The user's effective grants, everywhere and per delegated scope."""
    ctx.require("users:roles:read", user.id)
    return grants_for(ctx.db, ctx.svc.store, user.id, clock=ctx.svc.clock)


def claims(
    ctx: Context,
    user: User,
    *,
    client_id: str | None = None,
    scopes: list[str] = (),
    sp_entity_id: str | None = None,
) -> dict[str, Any]:
    """What the mapper releases for ``user``: OIDC claims, or SAML attributes for an SP."""
    ctx.require("users:accounts:read", user.id)
    clock = ctx.svc.clock
    if sp_entity_id:
        attrs = saml_attributes(ctx.db, user.id, sp_entity_id=sp_entity_id, clock=clock)
        return {"attributes": [a.__dict__ for a in attrs]}
    return {
        "claims": oidc_claims(
            ctx.db, user.id, client_id=client_id, scopes=list(scopes), clock=clock
        )
    }
