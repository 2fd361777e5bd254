"""Effective permissions from the database, cached across worker processes, and the
permission-check service (deny by default) with delegated administration.

Invalidation: every change to roles, groups, memberships or permissions bumps
``rbac_state.generation`` inside the same transaction (ORM events below), so it becomes visible
exactly when the change commits. Cached results live in the short-lived store under a key that
contains the generation: a worker that reads a newer generation simply misses the cache.
Temporary grants make a cached result stale at their expiry, which is stored with it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import ColumnElement, and_, event, false, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from ..clock import Clock
from ..core import rbac as core
from ..errors import Forbidden
from .models import (
    ClientServiceRole,
    Department,
    Group,
    GroupMember,
    GroupRole,
    PermissionGroup,
    RbacState,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    User,
    UserRole,
)

CACHE_TTL = 300.0
_RBAC_CLASSES = (
    Group,
    GroupMember,
    GroupRole,
    PermissionGroup,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    UserRole,
    ClientServiceRole,
)
_RBAC_TABLES = frozenset(c.__tablename__ for c in _RBAC_CLASSES)
_DIRTY = "rbac_changed_in_transaction"


class AccessDenied(Forbidden):
    """The actor may not do this; the message names the missing permission."""


# --- invalidation ------------------------------------------------------------------------------


def bump_generation(session: Session) -> None:
    """Mark every cached result stale once this transaction commits."""
    session.info[_DIRTY] = True
    forget_generations(session)
    done = session.execute(
        update(RbacState).where(RbacState.id == 1).values(generation=RbacState.generation + 1)
    )
    if done.rowcount == 0:
        session.add(RbacState(id=1, generation=1))


def ensure_state(session: Session) -> None:
    """Create the generation row (idp init)."""
    if session.get(RbacState, 1) is None:
        session.add(RbacState(id=1, generation=0))
        session.flush()


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    changed = chain(
        session.new, session.deleted, (o for o in session.dirty if session.is_modified(o))
    )
    if any(isinstance(o, _RBAC_CLASSES) for o in changed):
        bump_generation(session)


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk(state: Any) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if table is not None and getattr(table, "name", None) in _RBAC_TABLES:
        bump_generation(state.session)


@event.listens_for(Session, "after_transaction_end")
def _clear_flag(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_DIRTY, None)
        forget_generations(session)


def generation(db: Session) -> int:
    return int(db.scalar(select(RbacState.generation).where(RbacState.id == 1)) or 0)


# Read on every sign-in: a Core statement on the session's connection, built once.
_STATE_ROWS = select(RbacState.__table__.c.id, RbacState.__table__.c.generation)
_GENERATIONS = "idp.state_generations"


def forget_generations(session: Session) -> None:
    session.info.pop(_GENERATIONS, None)


def state_generation(db: Session, row: int) -> int:
    """The generation in row ``row`` of ``rbac_state`` (1: RBAC, 2: claims rules). A sign-in
    asks for both, so every row is read in one statement, once per transaction; a change in
    this transaction marks it dirty, and dirty transactions do not use the caches these
    generations key."""
    memo = db.info.get(_GENERATIONS)
    if memo is None:
        memo = db.info[_GENERATIONS] = dict(db.connection().execute(_STATE_ROWS).all())
    return int(memo.get(row) or 0)


class _GraphCache:
    def __init__(self) -> None:
        self.generation: int | None = None
        self.graphs: dict[int, core.Graph] = {}


_GRAPHS_MAX = 10_000
_graph_caches: weakref.WeakKeyDictionary[Any, _GraphCache] = weakref.WeakKeyDictionary()
_graph_lock = threading.Lock()


def cached_graph(db: Session, user_id: int) -> core.Graph:
    """``load_graph`` from this worker's cache while the RBAC generation has not moved (every
    change of roles, groups or memberships moves it in its own transaction). Expiry dates
    stay in the graph and are judged when it is used, so a cached graph never outlives a
    temporary grant. Callers treat the graph as read-only."""
    if db.autoflush:
        db.flush()  # a change pending in this transaction marks it dirty first
    if db.info.get(_DIRTY):
        return load_graph(db, user_id)
    # Read before the graph: a graph loaded after a concurrent change is newer than the
    # generation it is kept under, never older.
    gen = state_generation(db, 1)
    engine = db.get_bind()
    with _graph_lock:
        cache = _graph_caches.get(engine)
        if cache is None:
            cache = _graph_caches[engine] = _GraphCache()
        if cache.generation != gen:
            cache.generation, cache.graphs = gen, {}
        found = cache.graphs.get(user_id)
    if found is not None:
        return found
    graph = load_graph(db, user_id)
    with _graph_lock:
        if cache.generation == gen:
            if len(cache.graphs) >= _GRAPHS_MAX:
                cache.graphs.pop(next(iter(cache.graphs)))  # the oldest entry
            cache.graphs[user_id] = graph
    return graph


# --- loading the graph -------------------------------------------------------------------------


def load_graph(db: Session, user_id: int) -> core.Graph:
    """One user's assignments and memberships with every group, role and permission they reach."""
    g = core.Graph()
    for ur in db.execute(
        select(
            UserRole.role_id,
            UserRole.scope_company_id,
            UserRole.scope_department_id,
            UserRole.expires_at,
        ).where(UserRole.user_id == user_id)
    ):
        scope = None
        if ur.scope_department_id is not None:
            scope = ("department", ur.scope_department_id)
        elif ur.scope_company_id is not None:
            scope = ("company", ur.scope_company_id)
        g.assignments.append(core.Assignment(ur.role_id, scope, ur.expires_at))
    member_rows = db.execute(
        select(GroupMember.group_id, GroupMember.expires_at, Group.path)
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id == user_id)
    ).all()
    g.memberships = [core.Membership(m.group_id, m.expires_at) for m in member_rows]
    # Ancestors by path prefix: "a/b/c" is inside "a/b" and "a", one query for all of them.
    paths = {m.path for m in member_rows}
    for p in list(paths):
        parts = p.split("/")
        paths.update("/".join(parts[:i]) for i in range(1, len(parts)))
    if paths:
        for row in db.execute(
            select(Group.id, Group.parent_id, Group.path).where(Group.path.in_(paths))
        ):
            g.group_parent[row.id] = row.parent_id
            g.group_names[row.id] = row.path
        for gr in db.execute(
            select(GroupRole.group_id, GroupRole.role_id).where(
                GroupRole.group_id.in_(g.group_parent)
            )
        ):
            g.group_roles.setdefault(gr.group_id, []).append(gr.role_id)
    roots = {a.role_id for a in g.assignments} | {r for rs in g.group_roles.values() for r in rs}
    _fill_roles(db, g, roots)
    return g


# --- cached effective grants -------------------------------------------------------------------


@dataclass(frozen=True)
class Grants:
    """A user's effective grants: ``everywhere`` apply to any target, ``scoped`` only inside
    a company or department subtree."""

    everywhere: frozenset[str]
    scoped: frozenset[tuple[str, str, int]]
    role_ids: frozenset[int]

    def allows(self, permission: str) -> bool:
        return core.allows(self.everywhere, permission)

    def scopes_allowing(self, permission: str) -> list[tuple[str, int]]:
        wanted = set(core.grant_candidates(permission))
        return sorted({(kind, sid) for p, kind, sid in self.scoped if p in wanted})


def _now(clock: Clock | None) -> datetime:
    return (clock or Clock()).utcnow()


def _cache_key(gen: int, user_id: int) -> str:
    return f"rbac:eff:{gen}:{user_id}"


def grants_for(db: Session, store: Any, user_id: int, *, clock: Clock | None = None) -> Grants:
    """The user's effective grants, from the cache when it is current."""
    now = _now(clock)
    gen = generation(db)  # autoflushes first: pending changes in this session bump it
    use_cache = store is not None and not db.info.get(_DIRTY)
    key = _cache_key(gen, user_id)
    if use_cache:
        hit = store.get(key)
        if hit is not None and (hit["until"] is None or hit["until"] > now.timestamp()):
            return Grants(
                frozenset(hit["all"]),
                frozenset((p, k, int(s)) for p, k, s in hit["scoped"]),
                frozenset(hit["roles"]),
            )
    eff = core.compute(load_graph(db, user_id), now)
    grants = Grants(
        eff.global_permissions(),
        frozenset((g.permission, g.scope[0], g.scope[1]) for g in eff.grants if g.scope),
        frozenset(eff.role_ids),
    )
    if use_cache:
        store.put(
            key,
            {
                "all": sorted(grants.everywhere),
                "scoped": sorted(grants.scoped),
                "roles": sorted(grants.role_ids),
                "until": eff.valid_until.timestamp() if eff.valid_until else None,
            },
            CACHE_TTL,
        )
    return grants


# --- the permission-check service --------------------------------------------------------------


def _inside(place: tuple[int | None, str], kind: str, scope_id: int) -> bool:
    """Is a user at ``place`` (:meth:`Authorizer._place_of`) inside the scope ``kind`` /
    ``scope_id``: their company, or a department on their department's path?"""
    company_id, path = place
    return (kind == "company" and scope_id == company_id) or (
        kind == "department" and f"/{scope_id}/" in path
    )


def _department_path(db: Session, department_id: int | None) -> str | None:
    if department_id is None:
        return None
    return db.scalar(select(Department.path).where(Department.id == department_id))


def covers(granted: str, wanted: str) -> bool:
    """Does the granted pattern include every permission the ``wanted`` pattern includes?"""
    g = core.normalize_grant(granted).split(":", 2)
    w = core.normalize_grant(wanted).split(":", 2)
    return all(a == core.WILDCARD or a == b for a, b in zip(g, w, strict=True))


class Authorizer:
    """``authorize(actor, permission, target_user=None)``: deny unless a live grant allows it.

    A grant held everywhere allows any target. A grant held in a company or department scope
    allows only targets inside it, and never a target who holds a global permission the actor
    does not hold there (a delegated admin cannot take over a global admin in their branch)."""

    def __init__(self, db: Session, store: Any, clock: Clock | None = None) -> None:
        self.db = db
        self.store = store
        self.clock = clock

    def grants(self, user_id: int) -> Grants:
        return grants_for(self.db, self.store, user_id, clock=self.clock)

    def _active(self, user_id: int) -> bool:
        status = self.db.scalar(select(User.status).where(User.id == user_id))
        return status == "active"

    def held_over(self, actor_id: int, target_user_id: int | None) -> set[str]:
        """The actor's grants that apply to this target: global ones plus those of every scope
        the target is inside."""
        grants = self.grants(actor_id)
        held = set(grants.everywhere)
        if target_user_id is None or not grants.scoped:
            return held
        place = self._place_of(target_user_id)
        if place is None:
            return held
        held.update(p for p, kind, sid in grants.scoped if _inside(place, kind, sid))
        return held

    def _place_of(self, user_id: int) -> tuple[int | None, str] | None:
        """(company id, department path) of a user; None when there is no such user."""
        row = self.db.execute(
            select(User.company_id, User.department_id).where(User.id == user_id)
        ).first()
        if row is None:
            return None
        return row.company_id, _department_path(self.db, row.department_id) or ""

    def held_within(
        self, actor_id: int, company_id: int | None, department_id: int | None
    ) -> set[str]:
        """The actor's grants that apply to *everyone* inside a scope (a company, a department
        subtree, or everywhere when both are None): global ones plus those of a scope that
        contains the whole of it. What a grant scoped there gives, the actor must hold there
        for all of it, not only over the one user who receives it."""
        grants = self.grants(actor_id)
        held = set(grants.everywhere)
        if (company_id is None and department_id is None) or not grants.scoped:
            return held
        path = ""
        if department_id is not None:
            row = self.db.execute(
                select(Department.company_id, Department.path).where(Department.id == department_id)
            ).first()
            if row is None:
                return held
            company_id, path = row.company_id, row.path or ""
        for p, kind, sid in grants.scoped:
            if (kind == "company" and sid == company_id) or (
                kind == "department" and path and f"/{sid}/" in path
            ):
                held.add(p)
        return held

    def authorize(self, actor_id: int, permission: str, target_user_id: int | None = None) -> bool:
        try:
            core.check_form(permission)
        except core.PermissionError_:
            return False
        if not self._active(actor_id):
            return False
        grants = self.grants(actor_id)
        if grants.allows(permission):
            return True
        if target_user_id is None or not grants.scopes_allowing(permission):
            return False
        held = self.held_over(actor_id, target_user_id)
        if not core.allows(held, permission):
            return False
        if target_user_id == actor_id:
            return True
        target_global = self.grants(target_user_id).everywhere
        return all(any(covers(a, t) for a in held) for t in target_global)

    def require(self, actor_id: int, permission: str, target_user_id: int | None = None) -> None:
        if not self.authorize(actor_id, permission, target_user_id):
            raise AccessDenied(f"permission {permission} is required for this")

    def user_filter(self, actor_id: int, permission: str) -> ColumnElement[bool]:
        """A WHERE clause on ``User`` selecting the users the actor may act on with
        ``permission`` (lists and exports use it): everyone, a scope, or nobody."""
        if not self._active(actor_id):
            return false()
        grants = self.grants(actor_id)
        if grants.allows(permission):
            return true()
        clauses: list[ColumnElement[bool]] = []
        for kind, sid in grants.scopes_allowing(permission):
            if kind == "company":
                clauses.append(User.company_id == sid)
            else:
                path = _department_path(self.db, sid)
                if path:
                    d = aliased(Department)
                    lo, hi = subtree_range(path)
                    clauses.append(
                        User.department_id.in_(select(d.id).where(and_(d.path >= lo, d.path < hi)))
                    )
        return or_(*clauses) if clauses else false()

    def can_grant_role(self, actor_id: int, role_id: int, target_user_id: int) -> bool:
        """Assigning a role needs users:roles:assign over the target and every permission the
        role carries there (no one hands out more than they hold)."""
        if not self.authorize(actor_id, "users:roles:assign", target_user_id):
            return False
        needed = role_grants(self.db, [role_id], clock=self.clock)
        held = self.held_over(actor_id, target_user_id)
        return all(any(covers(a, n) for a in held) for n in needed)

    def holds_within(
        self,
        actor_id: int,
        needed: Iterable[str],
        company_id: int | None = None,
        department_id: int | None = None,
    ) -> bool:
        """Does the actor hold every permission in ``needed`` over the whole of a scope
        (everywhere when both are None)? What an assignment there carries applies to all of
        it, not only to the one user who receives it."""
        held = self.held_within(actor_id, company_id, department_id)
        return all(any(covers(a, n) for a in held) for n in needed)

    def can_grant_group(self, actor_id: int, group_id: int, target_user_id: int) -> bool:
        """Adding a member needs users:groups:assign over the target and every permission the
        group's roles (its ancestors' included) carry, held everywhere (they apply everywhere)."""
        if not self.authorize(actor_id, "users:groups:assign", target_user_id):
            return False
        role_ids = group_role_ids(self.db, group_id)
        if role_ids is None:
            return False
        # Membership gives the group's roles everywhere: they must be held everywhere.
        return self.holds_within(actor_id, role_grants(self.db, role_ids, clock=self.clock))

    def holds_role_over(self, actor_id: int, role_id: int, target_user_id: int | None) -> bool:
        """Does the actor hold the role (directly, through a group or a composite, not expired)
        in a way that reaches the target: unscoped, or scoped to the target's company or a
        department subtree the target is in?"""
        scopes = core.held_roles(cached_graph(self.db, actor_id), _now(self.clock)).get(role_id)
        if not scopes:
            return False
        if None in scopes:
            return True
        if target_user_id is None:
            return False
        place = self._place_of(target_user_id)
        if place is None:
            return False
        return any(_inside(place, kind, sid) for kind, sid in (s for s in scopes if s is not None))

    def may_give_roles(
        self, actor_id: int, role_ids: Iterable[int], target_user_id: int | None, everywhere: str
    ) -> list[int]:
        """The roles of ``role_ids`` the actor may *not* give to the target: none for a global
        administrator (one holding ``everywhere`` unscoped, such as users:roles:assign); for a
        delegated one, those they do not hold themselves over the target (Keycloak's
        fine-grained "map-roles": a role is handed out only by someone who has it)."""
        if self.grants(actor_id).allows(everywhere):
            return []
        return [r for r in role_ids if not self.holds_role_over(actor_id, r, target_user_id)]


def group_role_ids(db: Session, group_id: int) -> list[int] | None:
    """The roles membership of the group gives: its own and its ancestors' (None: no such
    group)."""
    path = db.scalar(select(Group.path).where(Group.id == group_id))
    if path is None:
        return None
    parts = path.split("/")
    paths = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return list(
        db.scalars(
            select(GroupRole.role_id)
            .join(Group, Group.id == GroupRole.group_id)
            .where(Group.path.in_(paths))
        )
    )


def role_grants(
    db: Session, role_ids: Iterable[int], *, clock: Clock | None = None
) -> frozenset[str]:
    """The IdP permissions a set of roles carries (composites and permission groups included;
    client roles carry none), as held everywhere."""
    roots = set(role_ids)
    graph = _fill_roles(db, core.Graph(assignments=[core.Assignment(r) for r in roots]), roots)
    return core.compute(graph, _now(clock)).global_permissions()


def service_account_grants(
    db: Session, client_id: str, *, clock: Clock | None = None
) -> frozenset[str]:
    """The permissions of a client's service account (its client_credentials tokens)."""
    roots = db.scalars(
        select(ClientServiceRole.role_id).where(ClientServiceRole.client_id == client_id)
    )
    return role_grants(db, roots, clock=clock)


def subtree_range(path: str) -> tuple[str, str]:
    """[lo, hi) such that lo <= p < hi exactly for the paths starting with ``path`` ("/1/7/"):
    an index range scan on both databases (paths hold digits and '/', and '0' follows '/')."""
    return path, path[:-1] + "0"


def _fill_roles(db: Session, graph: core.Graph, roots: set[int]) -> core.Graph:
    """Load ``roots`` and every role they include, with names and permissions, into ``graph``."""
    frontier = set(roots)
    seen: set[int] = set()
    while frontier:
        seen |= frontier
        nxt: set[int] = set()
        for rc in db.execute(
            select(RoleComposite.role_id, RoleComposite.child_id).where(
                RoleComposite.role_id.in_(frontier)
            )
        ):
            graph.role_children.setdefault(rc.role_id, []).append(rc.child_id)
            nxt.add(rc.child_id)
        frontier = nxt - seen
    if not seen:
        return graph
    for r in db.execute(select(Role.id, Role.name, Role.client_id).where(Role.id.in_(seen))):
        graph.role_names[r.id] = r.name
        graph.role_client[r.id] = r.client_id
    for rp in db.execute(
        select(RolePermission.role_id, RolePermission.permission).where(
            RolePermission.role_id.in_(seen)
        )
    ):
        graph.role_permissions.setdefault(rp.role_id, []).append(rp.permission)
    for rpg in db.execute(
        select(
            RolePermissionGroup.role_id,
            PermissionGroup.id,
            PermissionGroup.name,
            PermissionGroup.permissions,
        )
        .join(PermissionGroup, PermissionGroup.id == RolePermissionGroup.permission_group_id)
        .where(RolePermissionGroup.role_id.in_(seen))
    ):
        graph.role_permission_groups.setdefault(rpg.role_id, []).append(rpg.id)
        graph.permission_groups[rpg.id] = (rpg.name, list(rpg.permissions or []))
    return graph
