"""Role-based access control, pure: permission strings, the role/group graph, effective
permissions, explanations and cycle checks. Storage loads a ``Graph`` and calls these.

Permissions are ``module:feature:action``. A granted permission may use ``*`` for a whole part
and may be shorter than three parts ("users:*" = "users:*:*", "*" = everything). A checked
permission is concrete: three parts, no wildcard. The action part may contain ':' so scope
names like "oauth:scope:api:read" stay one action.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import product

_NAME = r"[a-z][a-z0-9_-]*"
_ACTION = r"[A-Za-z0-9](?:[A-Za-z0-9_.:/-]*[A-Za-z0-9_./-])?"
GRANT_RE = re.compile(rf"^(\*|{_NAME})(:(\*|{_NAME}))?(:(\*|{_ACTION}))?$")
CHECK_RE = re.compile(rf"^{_NAME}:{_NAME}:{_ACTION}$")
WILDCARD = "*"


class PermissionError_(ValueError):
    """A permission string that is not well formed."""


class CycleError(ValueError):
    """An edge that would close a cycle; ``path`` is the cycle, first node repeated last."""

    def __init__(self, message: str, path: list) -> None:
        super().__init__(message)
        self.path = path


def normalize_grant(permission: str) -> str:
    """The three-part form of a granted permission; raises PermissionError_ when malformed."""
    if not GRANT_RE.match(permission):
        raise PermissionError_(
            f"permission {permission!r} is not of the form module:feature:action (parts may be '*')"
        )
    parts = permission.split(":", 2)
    parts += [WILDCARD] * (3 - len(parts))
    return ":".join(parts)


def check_form(permission: str) -> tuple[str, str, str]:
    if not CHECK_RE.match(permission):
        raise PermissionError_(
            f"checked permission {permission!r} must be a concrete module:feature:action"
        )
    module, feature, action = permission.split(":", 2)
    return module, feature, action


def grant_candidates(permission: str) -> list[str]:
    """Every normalized grant that would allow the concrete ``permission`` (8 forms)."""
    parts = check_form(permission)
    return [":".join(p) for p in product(*((x, WILDCARD) for x in parts))]


def matches(granted: str, permission: str) -> bool:
    """Does one granted permission (wildcards allowed) allow the concrete ``permission``?"""
    g = normalize_grant(granted).split(":", 2)
    p = check_form(permission)
    return all(a == WILDCARD or a == b for a, b in zip(g, p, strict=True))


def allows(grants: Iterable[str], permission: str) -> bool:
    """Does a set of normalized grants allow ``permission``? Eight set look-ups."""
    normalized = grants if isinstance(grants, (set, frozenset)) else set(grants)
    return any(c in normalized for c in grant_candidates(permission))


# --- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """A role held directly by the user. ``scope`` is None (everywhere), ("company", id) or
    ("department", id): the grant then applies only to targets inside that scope."""

    role_id: int
    scope: tuple[str, int] | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Membership:
    group_id: int
    expires_at: datetime | None = None


@dataclass
class Graph:
    """Everything needed to compute one user's permissions, as plain data."""

    assignments: list[Assignment] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    group_parent: dict[int, int | None] = field(default_factory=dict)
    group_names: dict[int, str] = field(default_factory=dict)
    group_roles: dict[int, list[int]] = field(default_factory=dict)
    role_children: dict[int, list[int]] = field(default_factory=dict)
    role_names: dict[int, str] = field(default_factory=dict)
    role_client: dict[int, str | None] = field(default_factory=dict)
    role_permissions: dict[int, list[str]] = field(default_factory=dict)
    role_permission_groups: dict[int, list[int]] = field(default_factory=dict)
    permission_groups: dict[int, tuple[str, list[str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Grant:
    """One normalized permission and the scope it applies in (None = everywhere)."""

    permission: str
    scope: tuple[str, int] | None


@dataclass
class Effective:
    """The result of ``compute``: roles held, grants with scopes, and until when it holds."""

    role_ids: set[int]
    grants: set[Grant]
    # The earliest future expiry among the temporary grants used; the result is stale then.
    valid_until: datetime | None

    def global_permissions(self) -> frozenset[str]:
        return frozenset(g.permission for g in self.grants if g.scope is None)


def _live(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at > now


def group_ancestors(group_id: int, parent: Mapping[int, int | None]) -> list[int]:
    """The group then its ancestors, root last. Stops on a (corrupt) cycle instead of looping."""
    out: list[int] = []
    seen: set[int] = set()
    node: int | None = group_id
    while node is not None and node not in seen:
        seen.add(node)
        out.append(node)
        node = parent.get(node)
    return out


def role_closure(role_ids: Iterable[int], children: Mapping[int, list[int]]) -> set[int]:
    """The roles and everything they include through composites (cycle-safe)."""
    seen: set[int] = set()
    stack = list(role_ids)
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        stack.extend(children.get(r, ()))
    return seen


def _role_grants(graph: Graph, role_id: int) -> list[str]:
    perms = list(graph.role_permissions.get(role_id, ()))
    for pg in graph.role_permission_groups.get(role_id, ()):
        perms.extend(graph.permission_groups.get(pg, ("", []))[1])
    out = []
    for p in perms:
        try:
            out.append(normalize_grant(p))
        except PermissionError_:
            continue  # a malformed stored value grants nothing rather than failing every check
    return out


def held_roles(graph: Graph, now: datetime) -> dict[int, set[tuple[str, int] | None]]:
    """Every role the user holds (directly, via groups and their ancestors, via composites),
    with the scopes it is held in. Expired grants are ignored."""
    scoped: dict[int, set[tuple[str, int] | None]] = {}

    def hold(root_ids: Iterable[int], scope: tuple[str, int] | None) -> None:
        for r in role_closure(root_ids, graph.role_children):
            scoped.setdefault(r, set()).add(scope)

    for a in graph.assignments:
        if _live(a.expires_at, now):
            hold([a.role_id], a.scope)
    for m in graph.memberships:
        if _live(m.expires_at, now):
            for g in group_ancestors(m.group_id, graph.group_parent):
                hold(graph.group_roles.get(g, ()), None)
    return scoped


def compute(graph: Graph, now: datetime) -> Effective:
    roles = held_roles(graph, now)
    grants: set[Grant] = set()
    for role_id, scopes in roles.items():
        # Client roles carry meaning for their application only, never IdP permissions.
        if graph.role_client.get(role_id) is not None:
            continue
        for p in _role_grants(graph, role_id):
            # A global grant makes a scoped copy of the same permission pointless.
            for s in {None} if None in scopes else scopes:
                grants.add(Grant(p, s))
    future = [
        x.expires_at
        for x in [*graph.assignments, *graph.memberships]
        if x.expires_at is not None and x.expires_at > now
    ]
    return Effective(set(roles), grants, min(future) if future else None)


def explain(graph: Graph, permission: str, now: datetime) -> list[str]:
    """Every path that grants ``permission``, e.g.
    ``group staff/it -> role Helpdesk -> includes role Reader -> users:*:read``."""
    candidates = set(grant_candidates(permission))
    return explain_matching(graph, lambda grant: grant in candidates, now)


def explain_matching(graph: Graph, wanted: Callable[[str], bool], now: datetime) -> list[str]:
    """Every path to a granted permission whose normalized form ``wanted`` accepts (the
    privileged-accounts report asks for any administrative grant, not one permission)."""
    paths: list[str] = []

    def walk(role_id: int, trail: list[str], seen: frozenset[int], nested: bool = False) -> None:
        name = graph.role_names.get(role_id, f"#{role_id}")
        client = graph.role_client.get(role_id)
        step = f"role {name}" if client is None else f"client role {client}/{name}"
        here = [*trail, f"includes {step}" if nested else step]
        if client is None:
            for p in graph.role_permissions.get(role_id, ()):
                if _wanted(p, wanted):
                    paths.append(" -> ".join([*here, p]))
            for pg in graph.role_permission_groups.get(role_id, ()):
                pg_name, pg_perms = graph.permission_groups.get(pg, (f"#{pg}", []))
                for p in pg_perms:
                    if _wanted(p, wanted):
                        paths.append(" -> ".join([*here, f"permission group {pg_name}", p]))
        for child in graph.role_children.get(role_id, ()):
            if child not in seen:
                walk(child, here, seen | {child}, nested=True)

    for a in graph.assignments:
        if not _live(a.expires_at, now):
            continue
        trail = ["assigned"]
        if a.scope:
            trail = [f"assigned in {a.scope[0]} #{a.scope[1]}"]
        if a.expires_at:
            trail[0] += f" until {a.expires_at.isoformat()}"
        walk(a.role_id, trail, frozenset({a.role_id}))
    for m in graph.memberships:
        if not _live(m.expires_at, now):
            continue
        chain = group_ancestors(m.group_id, graph.group_parent)
        for g in chain:
            label = f"member of group {graph.group_names.get(m.group_id, m.group_id)}"
            if m.expires_at:
                label += f" until {m.expires_at.isoformat()}"
            if g != m.group_id:
                label += f" (inside {graph.group_names.get(g, g)})"
            for r in graph.group_roles.get(g, ()):
                walk(r, [label], frozenset({r}))
    return paths


def _wanted(p: str, wanted: Callable[[str], bool]) -> bool:
    try:
        return wanted(normalize_grant(p))
    except PermissionError_:
        return False


# --- cycles ------------------------------------------------------------------------------------


def find_path(start: int, goal: int, edges: Mapping[int, Iterable[int]]) -> list[int] | None:
    """A path start -> ... -> goal following ``edges`` (depth-first), or None."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        for nxt in edges.get(node, ()):
            stack.append((nxt, [*path, nxt]))
    return None


def check_new_edge(
    parent: int, child: int, edges: Mapping[int, Iterable[int]], names: Mapping[int, str]
) -> None:
    """Refuse the edge parent -> child when child already reaches parent (or they are equal)."""
    if parent == child:
        raise CycleError(f"{names.get(parent, parent)} cannot include itself", [parent, parent])
    back = find_path(child, parent, edges)
    if back is not None:
        cycle = [parent, *back]
        shown = " -> ".join(str(names.get(n, n)) for n in cycle)
        raise CycleError(f"this would create a cycle: {shown}", cycle)
