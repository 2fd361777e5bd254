"""Compliance reports (``docs/reports.md``): users without MFA, dormant accounts, privileged
accounts, failed-login trends, and access reviews with sign-off.

Reading a report needs ``reports:compliance:read`` (held everywhere: a report covers the
whole directory); running an access review (start it, decide, sign off) needs
``reports:reviews:manage``, and a revocation also the permission of the operation that removes
the grant (``users.remove_role``: ``users:roles:assign``; ``groups.remove_member``:
``users:groups:assign``), which writes its own audit row. Every list is one SQL query per page
(``users.last_login_at`` and ``audit_events.at`` / ``action`` are indexed); per-user details
(groups, paths of a grant, second factors) are read per page, not per user. Exports (CSV /
XLSX, :func:`export`) use the user export's writers, so text cells a spreadsheet would take
for a formula are escaped, and are audited as ``report.exported``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy import and_, case, false, func, not_, or_, select
from sqlalchemy.orm import aliased

from ..core import rbac
from ..core.policy import MfaSubject, mfa_requirement
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..storage.models import (
    AuditEvent,
    Group,
    GroupMember,
    GroupRole,
    PermissionGroup,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    User,
    UserRole,
)
from ..storage.models_reports import DECISIONS, REVIEW_KINDS, AccessReview, AccessReviewItem
from ..storage.rbac import grants_for, load_graph
from . import groups as manage_groups
from . import users as manage_users
from .context import Context
from .user_sheet import writer

PERMISSION = "reports:compliance:read"
REVIEW_PERMISSION = "reports:reviews:manage"
FORMATS = ("csv", "xlsx")
MAX_DAYS = 3650
MAX_TREND_DAYS = 366
_BATCH = 500
_BY_NAME = [func.lower(User.username), User.id]

# Modules whose permissions administer the IdP; a grant in one of them (or a "*" module) makes
# its holder privileged, as does an API scope of the admin API or SCIM.
ADMIN_MODULES = frozenset(
    {"audit", "claims", "clients", "config", "console", "groups", "org", "reports", "roles"}
    | {"saml", "users"}
)
ADMIN_SCOPES = ("oauth:scope:admin", "oauth:scope:scim")


def _utc_text(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


@dataclass(frozen=True)
class UserFilter:
    """The user list's organisation filters: company (slug or id), department (id or
    "company/Dept/Sub", with its subtree), group (path, with its subgroups)."""

    company: str | None = None
    department: str | None = None
    group: str | None = None

    def conditions(self, ctx: Context) -> list[Any]:
        query = manage_users.UserQuery(
            company=self.company, department=self.department, group=self.group
        )
        return manage_users._conditions(ctx, query)


def _paging(page: int, per_page: int) -> None:
    if page < 1 or per_page < 1 or per_page > 1000:
        raise ValidationError("page starts at 1; per_page is 1 to 1000")


def _page(ctx: Context, stmt, order: list[Any], page: int, per_page: int | None):
    if per_page is None:
        return _batches(ctx, stmt.order_by(*order))
    _paging(page, per_page)
    total = int(ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = list(ctx.db.scalars(stmt.order_by(*order).offset((page - 1) * per_page).limit(per_page)))
    return rows, total


def _batches(ctx: Context, stmt) -> Iterator[list[User]]:
    offset = 0
    while True:
        rows = list(ctx.db.scalars(stmt.offset(offset).limit(_BATCH)))
        if rows:
            yield rows
        if len(rows) < _BATCH:
            return
        offset += _BATCH


def _mfa_clauses(ctx: Context) -> list[Any]:
    """Each second factor's "this user has it" condition, correlated with ``User``: the same
    conditions the login asks (``idp.backends.enrolment``)."""
    clauses = []
    for factor in ctx.svc.factors.values():
        clause_of = getattr(factor, "enrolled_clause", None)
        if clause_of is not None and (clause := clause_of(ctx.svc, User.id)) is not None:
            clauses.append(clause)
    return clauses


def _has_mfa(ctx: Context) -> Any:
    clauses = _mfa_clauses(ctx)
    return or_(*clauses) if clauses else false()


def _department_paths(ctx: Context, users: list[User]) -> dict[int, str]:
    ids = {u.department_id for u in users if u.department_id}
    if not ids:
        return {}
    from .user_export import _Rows  # the export's one reading of department paths

    return _Rows(ctx, []).department_paths()


# --- 1. users without MFA ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoMfaRow:
    uuid: str
    username: str
    display_name: str | None
    email: str | None
    company: str | None
    department: str | None
    created_at: datetime | None
    last_login_at: datetime | None
    required: bool  # the MFA policy asks this user for a second factor at sign-in
    reasons: tuple[str, ...]  # which rules ("user", "everyone", "group:admins" ...)
    grace_until: datetime | None  # when their grace period ends (None: none)
    in_grace: bool


NO_MFA_COLUMNS = [
    "username",
    "display_name",
    "email",
    "company",
    "department",
    "created_at",
    "last_login_at",
    "mfa_required",
    "required_by",
    "grace_until",
    "in_grace",
]


def _no_mfa_select(ctx: Context, filt: UserFilter):
    ctx.require(PERMISSION)
    return select(User).where(User.status == "active", not_(_has_mfa(ctx)), *filt.conditions(ctx))


def users_without_mfa(
    ctx: Context, filt: UserFilter = UserFilter(), *, page: int = 1, per_page: int = 25
) -> tuple[list[NoMfaRow], int]:
    """Active accounts with no second factor enrolled, by username; one page and the total."""
    stmt = _no_mfa_select(ctx, filt)
    users, total = _page(ctx, stmt, _BY_NAME, page, per_page)
    return _no_mfa_rows(ctx, users), total


def _no_mfa_rows(ctx: Context, users: list[User]) -> list[NoMfaRow]:
    if not users:
        return []
    now = ctx.svc.clock.utcnow()
    policy = ctx.svc.mfa_policy
    kinds = {rule.kind for rule in policy.rules}
    ids = [u.id for u in users]
    groups: dict[int, list[str]] = {}
    if "group" in kinds:
        for uid, path in ctx.db.execute(
            select(GroupMember.user_id, Group.path)
            .join(Group, Group.id == GroupMember.group_id)
            .where(
                GroupMember.user_id.in_(ids),
                or_(GroupMember.expires_at.is_(None), GroupMember.expires_at > now),
            )
        ):
            groups.setdefault(uid, []).append(path)
    role_names: dict[int, str] = {}
    if "role" in kinds:
        role_names = dict(ctx.db.execute(select(Role.id, Role.name)).all())
    departments = _department_paths(ctx, users)
    out = []
    for u in users:
        roles: tuple[str, ...] = ()
        if "role" in kinds:
            held = grants_for(ctx.db, ctx.svc.store, u.id, clock=ctx.svc.clock).role_ids
            roles = tuple(role_names[r] for r in held if r in role_names)
        need = mfa_requirement(
            policy,
            MfaSubject(
                username=u.username,
                groups=tuple(groups.get(u.id, ())),
                roles=roles,
                user_required=u.require_mfa,
                created_at=u.created_at,
            ),
            now,
        )
        out.append(
            NoMfaRow(
                uuid=u.uuid,
                username=u.username,
                display_name=u.display_name,
                email=u.email,
                company=u.company.slug if u.company else None,
                department=departments.get(u.department_id) if u.department_id else None,
                created_at=u.created_at,
                last_login_at=u.last_login_at,
                required=need.required,
                reasons=need.reasons,
                grace_until=need.grace_until if need.required else None,
                in_grace=need.required and need.grace,
            )
        )
    return out


def _no_mfa_table(ctx: Context, filt: UserFilter) -> Iterator[list[Any]]:
    for batch in _page(ctx, _no_mfa_select(ctx, filt), _BY_NAME, 1, None):
        for r in _no_mfa_rows(ctx, batch):
            yield [
                r.username,
                r.display_name,
                r.email,
                r.company,
                r.department,
                _utc_text(r.created_at),
                _utc_text(r.last_login_at),
                r.required,
                " ".join(r.reasons) or None,
                _utc_text(r.grace_until),
                r.in_grace,
            ]


# --- 2. dormant accounts -------------------------------------------------------------------------

DORMANT_KINDS = ("inactive", "never")


@dataclass(frozen=True)
class DormantRow:
    uuid: str
    username: str
    display_name: str | None
    email: str | None
    company: str | None
    department: str | None
    created_at: datetime | None
    last_login_at: datetime | None
    idle_days: int  # days since the last sign-in (since creation when there was none)


DORMANT_COLUMNS = [
    "username",
    "display_name",
    "email",
    "company",
    "department",
    "created_at",
    "last_login_at",
    "idle_days",
]


def _dormant_select(ctx: Context, days: int, kind: str, filt: UserFilter):
    ctx.require(PERMISSION)
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"days: 1 to {MAX_DAYS}")
    if kind not in DORMANT_KINDS:
        raise ValidationError("kind: inactive or never")
    cutoff = ctx.svc.clock.utcnow() - timedelta(days=days)
    if kind == "inactive":
        when = User.last_login_at < cutoff
        order = [User.last_login_at, User.id]
    else:
        # Never signed in, and made before the cutoff: a new account awaiting its first sign-in
        # is not dormant.
        when = and_(User.last_login_at.is_(None), User.created_at < cutoff)
        order = [User.created_at, User.id]
    stmt = select(User).where(User.status == "active", when, *filt.conditions(ctx))
    return stmt, order


def dormant_accounts(
    ctx: Context,
    days: int = 90,
    kind: str = "inactive",
    filt: UserFilter = UserFilter(),
    *,
    page: int = 1,
    per_page: int = 25,
) -> tuple[list[DormantRow], int]:
    """Active accounts without a sign-in for ``days`` days (``inactive``: they signed in
    before, the longest idle first; ``never``: made more than ``days`` days ago and never
    signed in, the oldest first)."""
    stmt, order = _dormant_select(ctx, days, kind, filt)
    users, total = _page(ctx, stmt, order, page, per_page)
    return _dormant_rows(ctx, users), total


def _dormant_rows(ctx: Context, users: list[User]) -> list[DormantRow]:
    now = ctx.svc.clock.utcnow()
    departments = _department_paths(ctx, users)
    return [
        DormantRow(
            uuid=u.uuid,
            username=u.username,
            display_name=u.display_name,
            email=u.email,
            company=u.company.slug if u.company else None,
            department=departments.get(u.department_id) if u.department_id else None,
            created_at=u.created_at,
            last_login_at=u.last_login_at,
            idle_days=(now - (u.last_login_at or u.created_at or now)).days,
        )
        for u in users
    ]


def _dormant_table(ctx: Context, days: int, kind: str, filt: UserFilter) -> Iterator[list[Any]]:
    stmt, order = _dormant_select(ctx, days, kind, filt)
    for batch in _page(ctx, stmt, order, 1, None):
        for r in _dormant_rows(ctx, batch):
            yield [
                r.username,
                r.display_name,
                r.email,
                r.company,
                r.department,
                _utc_text(r.created_at),
                _utc_text(r.last_login_at),
                r.idle_days,
            ]


# --- 3. privileged accounts ----------------------------------------------------------------------


def is_privileged(grant: str) -> bool:
    """Does this granted permission administer the IdP (a module of :data:`ADMIN_MODULES`, a
    "*" module, or the admin / SCIM API scope)?"""
    try:
        normalized = rbac.normalize_grant(grant)
    except rbac.PermissionError_:
        return False
    module = normalized.split(":", 1)[0]
    if module == rbac.WILDCARD or module in ADMIN_MODULES:
        return True
    return any(rbac.matches(normalized, scope) for scope in ADMIN_SCOPES)


@dataclass(frozen=True)
class PrivilegedRow:
    uuid: str
    username: str
    display_name: str | None
    status: str
    mfa: bool  # a second factor is enrolled
    last_login_at: datetime | None
    permissions: list[str]  # the administrative grants, "(in company #3)" when delegated
    paths: list[str]  # how each is held: "member of group it -> role Helpdesk -> users:..."


PRIVILEGED_COLUMNS = [
    "username",
    "display_name",
    "status",
    "mfa_enrolled",
    "last_login_at",
    "permissions",
    "granted_through",
]


def _privileged_roles(ctx: Context) -> set[int]:
    """Global roles that carry an administrative permission themselves, through a permission
    group, or by including (at any depth) a role that does."""
    carrying: set[int] = set()
    for role_id, permission in ctx.db.execute(
        select(RolePermission.role_id, RolePermission.permission)
    ):
        if is_privileged(permission):
            carrying.add(role_id)
    for role_id, permissions in ctx.db.execute(
        select(RolePermissionGroup.role_id, PermissionGroup.permissions).join(
            PermissionGroup, PermissionGroup.id == RolePermissionGroup.permission_group_id
        )
    ):
        if any(is_privileged(p) for p in permissions or ()):
            carrying.add(role_id)
    client_roles = set(ctx.db.scalars(select(Role.id).where(Role.client_id.is_not(None))))
    carrying -= client_roles  # client roles carry no IdP permissions
    parents: dict[int, list[int]] = {}
    for parent, child in ctx.db.execute(select(RoleComposite.role_id, RoleComposite.child_id)):
        parents.setdefault(child, []).append(parent)
    found, stack = set(carrying), list(carrying)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return found


def _privileged_select(ctx: Context):
    ctx.require(PERMISSION)
    now = ctx.svc.clock.utcnow()
    roles = _privileged_roles(ctx)
    if not roles:
        return select(User).where(false())
    direct = (
        select(UserRole.id)
        .where(
            UserRole.user_id == User.id,
            UserRole.role_id.in_(roles),
            or_(UserRole.expires_at.is_(None), UserRole.expires_at > now),
        )
        .exists()
    )
    # Members of a group holding such a role, or of any group below it (they inherit it).
    carrier_paths = list(
        ctx.db.scalars(
            select(Group.path)
            .join(GroupRole, GroupRole.group_id == Group.id)
            .where(GroupRole.role_id.in_(roles))
            .distinct()
        )
    )
    conds = [direct]
    if carrier_paths:
        inside = aliased(Group)
        below = or_(
            *(
                or_(inside.path == p, inside.path.startswith(p + "/", autoescape=True))
                for p in carrier_paths
            )
        )
        conds.append(
            select(GroupMember.user_id)
            .join(inside, inside.id == GroupMember.group_id)
            .where(
                GroupMember.user_id == User.id,
                or_(GroupMember.expires_at.is_(None), GroupMember.expires_at > now),
                below,
            )
            .exists()
        )
    return select(User).where(or_(*conds))


def privileged_accounts(
    ctx: Context, *, page: int = 1, per_page: int = 25
) -> tuple[list[PrivilegedRow], int]:
    """Every user holding an administrative permission, directly, through groups (and their
    parent groups), composite roles, permission groups or a delegated (scoped) assignment,
    whatever their status, by username."""
    stmt = _privileged_select(ctx)
    users, total = _page(ctx, stmt, _BY_NAME, page, per_page)
    return _privileged_rows(ctx, users), total


def _enrolled(ctx: Context, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return set(ctx.db.scalars(select(User.id).where(User.id.in_(ids), _has_mfa(ctx))))


def _privileged_rows(ctx: Context, users: list[User]) -> list[PrivilegedRow]:
    now = ctx.svc.clock.utcnow()
    with_mfa = _enrolled(ctx, [u.id for u in users])
    out = []
    for u in users:
        graph = load_graph(ctx.db, u.id)
        effective = rbac.compute(graph, now)
        permissions = sorted(
            g.permission + (f" (in {g.scope[0]} #{g.scope[1]})" if g.scope else "")
            for g in effective.grants
            if is_privileged(g.permission)
        )
        out.append(
            PrivilegedRow(
                uuid=u.uuid,
                username=u.username,
                display_name=u.display_name,
                status=u.status,
                mfa=u.id in with_mfa,
                last_login_at=u.last_login_at,
                permissions=permissions,
                paths=rbac.explain_matching(graph, is_privileged, now),
            )
        )
    return out


def _privileged_table(ctx: Context) -> Iterator[list[Any]]:
    for batch in _page(ctx, _privileged_select(ctx), _BY_NAME, 1, None):
        for r in _privileged_rows(ctx, batch):
            yield [
                r.username,
                r.display_name,
                r.status,
                r.mfa,
                _utc_text(r.last_login_at),
                "; ".join(r.permissions),
                "; ".join(r.paths),
            ]


# --- 5. failed-login trends ----------------------------------------------------------------------

# Why a sign-in failed, from the audit rows the login writes (idp/web/login.py, webauthn.py).
FAILURE_REASONS = (
    "bad_credentials",  # login.failure for a known account
    "unknown_account",  # login.failure naming no account (or an unknown passkey)
    "second_factor",  # login.step_failed.<step>: a wrong code, key or answer
    "locked",  # login.locked: an attempt while the account was locked out
    "account_state",  # login.denied: right password, account inactive / expired / pending
)
_STEP_FAILED = "login.step_failed."


def _reason_case():
    return case(
        (
            and_(AuditEvent.action == "login.failure", AuditEvent.target.is_(None)),
            "unknown_account",
        ),
        (AuditEvent.action == "login.failure", "bad_credentials"),
        (AuditEvent.action == "login.locked", "locked"),
        (AuditEvent.action == "login.denied", "account_state"),
        else_="second_factor",
    )


def _failure_where(start: datetime, end: datetime) -> list[Any]:
    return [
        AuditEvent.at >= start,
        AuditEvent.at < end,
        or_(
            AuditEvent.action.in_(("login.failure", "login.locked", "login.denied")),
            AuditEvent.action.startswith(_STEP_FAILED, autoescape=True),
        ),
    ]


@dataclass(frozen=True)
class DayFailures:
    day: date
    total: int
    by_reason: dict[str, int]


@dataclass(frozen=True)
class Counted:
    key: str  # an address, or an account's uuid
    count: int
    label: str | None = None  # the account's username


@dataclass
class FailureTrend:
    start: date  # the first day (UTC)
    days: list[DayFailures] = field(default_factory=list)  # oldest first, today last
    reasons: dict[str, int] = field(default_factory=dict)
    addresses: list[Counted] = field(default_factory=list)
    accounts: list[Counted] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(d.total for d in self.days)


def failed_logins(ctx: Context, days: int = 30, top: int = 10) -> FailureTrend:
    """Failed sign-ins per day (UTC) over the last ``days`` days split by reason, and the
    ``top`` source addresses and targeted accounts: three grouped queries."""
    ctx.require(PERMISSION)
    if not 1 <= days <= MAX_TREND_DAYS:
        raise ValidationError(f"days: 1 to {MAX_TREND_DAYS}")
    if not 1 <= top <= 100:
        raise ValidationError("top: 1 to 100")
    today = ctx.svc.clock.utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    end = today + timedelta(days=1)
    where = _failure_where(start, end)
    day_col = func.date(AuditEvent.at)
    reason = _reason_case()
    counts: dict[date, dict[str, int]] = {}
    for day, why, n in ctx.db.execute(
        select(day_col, reason, func.count()).where(*where).group_by(day_col, reason)
    ):
        key = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        counts.setdefault(key, {})[why] = int(n)
    trend = FailureTrend(start=start.date())
    for i in range(days):
        d = start.date() + timedelta(days=i)
        by_reason = {r: counts.get(d, {}).get(r, 0) for r in FAILURE_REASONS}
        trend.days.append(DayFailures(d, sum(by_reason.values()), by_reason))
    trend.reasons = {r: sum(d.by_reason[r] for d in trend.days) for r in FAILURE_REASONS}
    n = func.count().label("n")
    trend.addresses = [
        Counted(ip, int(c))
        for ip, c in ctx.db.execute(
            select(AuditEvent.ip, n)
            .where(*where, AuditEvent.ip.is_not(None))
            .group_by(AuditEvent.ip)
            .order_by(n.desc(), AuditEvent.ip)
            .limit(top)
        )
    ]
    targets = ctx.db.execute(
        select(AuditEvent.target, n)
        .where(*where, AuditEvent.target.is_not(None))
        .group_by(AuditEvent.target)
        .order_by(n.desc(), AuditEvent.target)
        .limit(top)
    ).all()
    names = dict(
        ctx.db.execute(
            select(User.uuid, User.username).where(User.uuid.in_([t for t, _ in targets]))
        ).all()
    )
    trend.accounts = [Counted(t, int(c), names.get(t)) for t, c in targets]
    return trend


TREND_PARTS = ("days", "addresses", "accounts")


def _trend_table(trend: FailureTrend, part: str) -> tuple[list[str], list[list[Any]]]:
    if part == "days":
        return ["day", "total", *FAILURE_REASONS], [
            [d.day.isoformat(), d.total, *(d.by_reason[r] for r in FAILURE_REASONS)]
            for d in trend.days
        ]
    if part == "addresses":
        return ["address", "failures"], [[c.key, c.count] for c in trend.addresses]
    if part == "accounts":
        return ["username", "user_id", "failures"], [
            [c.label, c.key, c.count] for c in trend.accounts
        ]
    raise ValidationError("part: days, addresses or accounts")


# --- exports -------------------------------------------------------------------------------------


def export(ctx: Context, report: str, fmt: str, out: BinaryIO, **params: Any) -> int:
    """Write ``report`` (``users-without-mfa``, ``dormant-accounts``, ``privileged-accounts``,
    ``failed-logins``, ``access-review``) with its ``params`` to ``out`` as ``fmt``; how many
    rows. Refused (nothing written) before the first byte when the actor may not read it."""
    if fmt not in FORMATS:
        raise ValidationError("format: csv or xlsx")
    columns, rows = _table(ctx, report, params)
    first = next(rows, None)  # the permission check and validation run here
    sheet = writer(fmt, out, sheet=report[:31])
    sheet.header(columns)
    count = 0
    if first is not None:
        sheet.row(first)
        count = 1
        for row in rows:
            sheet.row(row)
            count += 1
    sheet.close()
    wanted = {k: v for k, v in params.items() if v not in (None, "")}
    ctx.audit("report.exported", report, format=fmt, params=wanted, rows=count)
    return count


def _table(ctx: Context, report: str, params: dict[str, Any]):
    filt = UserFilter(params.get("company"), params.get("department"), params.get("group"))
    tables: dict[str, Callable[[], tuple[list[str], Iterator[list[Any]]]]] = {
        "users-without-mfa": lambda: (NO_MFA_COLUMNS, _no_mfa_table(ctx, filt)),
        "dormant-accounts": lambda: (
            DORMANT_COLUMNS,
            _dormant_table(
                ctx, int(params.get("days") or 90), params.get("kind") or "inactive", filt
            ),
        ),
        "privileged-accounts": lambda: (PRIVILEGED_COLUMNS, _privileged_table(ctx)),
        "failed-logins": lambda: _trend_rows(ctx, params),
        "access-review": lambda: _review_rows(ctx, int(params["review_id"])),
    }
    if report not in tables:
        raise NotFound(f"no report {report!r}")
    columns, rows = tables[report]()
    return columns, iter(rows)


def _trend_rows(ctx: Context, params: dict[str, Any]):
    trend = failed_logins(ctx, int(params.get("days") or 30), int(params.get("top") or 10))
    columns, rows = _trend_table(trend, params.get("part") or "days")
    return columns, iter(rows)


# --- 4. access reviews ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewView:
    review: AccessReview
    items: int
    decided: int
    revoked: int

    @property
    def signed_off(self) -> bool:
        return self.review.signed_off_at is not None


REVIEW_COLUMNS = [
    "review",
    "subject",
    "username",
    "user_id",
    "grant",
    "decision",
    "decided_by",
    "decided_at",
    "comment",
    "signed_off_by",
    "signed_off_at",
]


def _actor_username(ctx: Context) -> str | None:
    if ctx.actor.user_id is None:
        return None
    return ctx.db.scalar(select(User.username).where(User.id == ctx.actor.user_id))


def create_review(
    ctx: Context, kind: str, subject_id: int, *, title: str | None = None
) -> AccessReview:
    """Start a review of a role's direct holders (one item per user, their assignments'
    scopes and ends in ``grant``) or of a group's direct members, as they are now."""
    ctx.require(REVIEW_PERMISSION)
    if kind not in REVIEW_KINDS:
        raise ValidationError("kind: role or group")
    if title is not None and len(title) > 200:
        raise ValidationError("title: at most 200 characters")
    now = ctx.svc.clock.utcnow()
    review = AccessReview(
        kind=kind,
        title=title or None,
        created_by=ctx.actor.name,
        created_by_name=_actor_username(ctx),
        created_at=now,
    )
    holders: dict[int, tuple[User, list[str]]] = {}
    if kind == "role":
        role = ctx.db.get(Role, subject_id)
        if role is None:
            raise NotFound(f"no role {subject_id}")
        review.role_id, review.subject = role.id, role.name
        rows = ctx.db.execute(
            select(User, UserRole)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                UserRole.role_id == role.id,
                or_(UserRole.expires_at.is_(None), UserRole.expires_at > now),
            )
            .order_by(User.username, UserRole.id)
        ).all()
        for user, ur in rows:
            grant = "assigned"
            if ur.scope_department_id is not None:
                grant += f" in department #{ur.scope_department_id}"
            elif ur.scope_company_id is not None:
                grant += f" in company #{ur.scope_company_id}"
            if ur.expires_at is not None:
                grant += f" until {_utc_text(ur.expires_at)}"
            holders.setdefault(user.id, (user, []))[1].append(grant)
    else:
        group = ctx.db.get(Group, subject_id)
        if group is None:
            raise NotFound(f"no group {subject_id}")
        review.group_id, review.subject = group.id, group.path
        rows = ctx.db.execute(
            select(User, GroupMember)
            .join(GroupMember, GroupMember.user_id == User.id)
            .where(
                GroupMember.group_id == group.id,
                or_(GroupMember.expires_at.is_(None), GroupMember.expires_at > now),
            )
            .order_by(User.username)
        ).all()
        for user, m in rows:
            grant = "member"
            if m.expires_at is not None:
                grant += f" until {_utc_text(m.expires_at)}"
            holders[user.id] = (user, [grant])
    ctx.db.add(review)
    ctx.db.flush()
    for user, grants in holders.values():
        ctx.db.add(
            AccessReviewItem(
                review_id=review.id,
                user_id=user.id,
                user_uuid=user.uuid,
                username=user.username,
                grant="; ".join(grants),
            )
        )
    ctx.db.flush()
    ctx.audit(
        "access_review.created",
        f"{kind}:{review.subject}",
        review_id=review.id,
        holders=len(holders),
    )
    return review


def review_subjects(ctx: Context) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """What a review can be of: (global roles, groups), as (id, name / path), by name."""
    ctx.require(REVIEW_PERMISSION)
    roles = ctx.db.execute(
        select(Role.id, Role.name).where(Role.client_id.is_(None)).order_by(Role.name)
    ).all()
    groups = ctx.db.execute(select(Group.id, Group.path).order_by(Group.path)).all()
    return [(r.id, r.name) for r in roles], [(g.id, g.path) for g in groups]


def _review(ctx: Context, review_id: int) -> AccessReview:
    review = ctx.db.get(AccessReview, review_id)
    if review is None:
        raise NotFound(f"no access review {review_id}")
    return review


def _view(ctx: Context, review: AccessReview) -> ReviewView:
    total, decided, revoked = ctx.db.execute(
        select(
            func.count(AccessReviewItem.id),
            func.count(AccessReviewItem.decision),
            func.coalesce(func.sum(case((AccessReviewItem.decision == "revoke", 1), else_=0)), 0),
        ).where(AccessReviewItem.review_id == review.id)
    ).one()
    return ReviewView(review, int(total), int(decided), int(revoked or 0))


def list_reviews(
    ctx: Context, *, page: int = 1, per_page: int = 25
) -> tuple[list[ReviewView], int]:
    """The reviews, newest first."""
    ctx.require(PERMISSION)
    _paging(page, per_page)
    total = int(ctx.db.scalar(select(func.count(AccessReview.id))) or 0)
    rows = ctx.db.scalars(
        select(AccessReview)
        .order_by(AccessReview.created_at.desc(), AccessReview.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return [_view(ctx, r) for r in rows], total


def get_review(ctx: Context, review_id: int) -> ReviewView:
    ctx.require(PERMISSION)
    return _view(ctx, _review(ctx, review_id))


def review_items(
    ctx: Context, review_id: int, *, page: int = 1, per_page: int = 25
) -> tuple[list[AccessReviewItem], int]:
    """A page of the review's holders, by username."""
    ctx.require(PERMISSION)
    _paging(page, per_page)
    review = _review(ctx, review_id)
    where = AccessReviewItem.review_id == review.id
    total = int(ctx.db.scalar(select(func.count(AccessReviewItem.id)).where(where)) or 0)
    rows = ctx.db.scalars(
        select(AccessReviewItem)
        .where(where)
        .order_by(AccessReviewItem.username, AccessReviewItem.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), total


def decide(
    ctx: Context, review_id: int, item_id: int, decision: str, comment: str | None = None
) -> AccessReviewItem:
    """Confirm or revoke one holder's grant. A revocation removes it now through the
    directory's own operation (``users.remove_role`` / ``groups.remove_member``, with their
    permission checks and audit rows). Refused: on a signed-off review, on an item decided
    already, and on the reviewer's own grant."""
    ctx.require(REVIEW_PERMISSION)
    if decision not in DECISIONS:
        raise ValidationError("decision: confirm or revoke")
    if comment is not None and len(comment) > 1000:
        raise ValidationError("comment: at most 1000 characters")
    review = _review(ctx, review_id)
    item = ctx.db.get(AccessReviewItem, item_id)
    if item is None or item.review_id != review.id:
        raise NotFound(f"no item {item_id} in access review {review_id}")
    if review.signed_off_at is not None:
        raise Conflict("this review is signed off; its decisions cannot change")
    if item.decision is not None:
        raise Conflict(f"{item.username} was decided already ({item.decision})")
    if ctx.actor.user_id is not None and item.user_id == ctx.actor.user_id:
        raise Forbidden("you cannot review your own access; another reviewer has to")
    if decision == "revoke":
        _revoke(ctx, review, item)
    item.decision = decision
    item.decided_by = ctx.actor.name
    item.decided_by_name = _actor_username(ctx)
    item.decided_at = ctx.svc.clock.utcnow()
    item.comment = comment or None
    ctx.db.flush()
    ctx.audit(
        "access_review.decided",
        item.user_uuid,
        review_id=review.id,
        subject=f"{review.kind}:{review.subject}",
        decision=decision,
        comment=item.comment,
    )
    return item


def _revoke(ctx: Context, review: AccessReview, item: AccessReviewItem) -> None:
    user = ctx.db.get(User, item.user_id) if item.user_id is not None else None
    if user is None:
        return  # the account is gone, and the grant with it
    if review.kind == "role":
        role = ctx.db.get(Role, review.role_id) if review.role_id is not None else None
        if role is not None:
            manage_users.remove_role(ctx, user, role)
    else:
        group = ctx.db.get(Group, review.group_id) if review.group_id is not None else None
        if group is not None:
            manage_groups.remove_member(ctx, group, user)


def sign_off(ctx: Context, review_id: int) -> ReviewView:
    """Close the review with the reviewer's name and the time; refused while a holder is
    undecided, and when it is signed off already. Nothing of it changes afterwards."""
    ctx.require(REVIEW_PERMISSION)
    view = _view(ctx, _review(ctx, review_id))
    review = view.review
    if review.signed_off_at is not None:
        raise Conflict(
            f"this review was signed off by {review.signed_off_by_name or review.signed_off_by}"
        )
    if view.decided < view.items:
        raise Conflict(f"{view.items - view.decided} holder(s) are not decided yet")
    review.signed_off_by = ctx.actor.name
    review.signed_off_by_name = _actor_username(ctx)
    review.signed_off_at = ctx.svc.clock.utcnow()
    ctx.db.flush()
    ctx.audit(
        "access_review.signed_off",
        f"{review.kind}:{review.subject}",
        review_id=review.id,
        holders=view.items,
        revoked=view.revoked,
    )
    return view


def _review_rows(ctx: Context, review_id: int) -> tuple[list[str], Iterator[list[Any]]]:
    ctx.require(PERMISSION)
    review = _review(ctx, review_id)

    def rows() -> Iterator[list[Any]]:
        items = ctx.db.scalars(
            select(AccessReviewItem)
            .where(AccessReviewItem.review_id == review.id)
            .order_by(AccessReviewItem.username, AccessReviewItem.id)
        )
        for item in items:
            yield [
                review.title or f"#{review.id}",
                f"{review.kind}:{review.subject}",
                item.username,
                item.user_uuid,
                item.grant,
                item.decision,
                item.decided_by_name or item.decided_by,
                _utc_text(item.decided_at),
                item.comment,
                review.signed_off_by_name or review.signed_off_by,
                _utc_text(review.signed_off_at),
            ]

    return REVIEW_COLUMNS, rows()
