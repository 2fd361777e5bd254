"""Pure RBAC: permission strings, wildcard matching, effective permissions through groups,
nesting, composites and permission groups, expiry, explanations and cycle detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from idp.core import rbac

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("granted", "checked", "expected"),
    [
        ("*", "users:accounts:read", True),
        ("users:*", "users:accounts:delete", True),
        ("users:*:*", "users:accounts:delete", True),
        ("users:accounts:*", "users:accounts:read", True),
        ("users:accounts:read", "users:accounts:read", True),
        ("users:accounts:read", "users:accounts:write", False),
        ("*:*:read", "audit:log:read", True),
        ("*:*:read", "audit:log:write", False),
        ("users", "users:x:y", True),
        ("groups:*", "users:accounts:read", False),
        ("oauth:scope:admin", "oauth:scope:admin", True),
        ("oauth:scope:api:read", "oauth:scope:api:read", True),
        ("oauth:scope:*", "oauth:scope:api:read", True),
        ("oauth:scope:api", "oauth:scope:api:read", False),
    ],
)
def test_wildcard_matching(granted: str, checked: str, expected: bool) -> None:
    assert rbac.matches(granted, checked) is expected
    assert rbac.allows({rbac.normalize_grant(granted)}, checked) is expected


@pytest.mark.parametrize(
    "bad", ["", "Users:x:y", "users::read", "users:x:y:", ":x", "users x", "a:b:*c", "*a"]
)
def test_malformed_grants_are_refused(bad: str) -> None:
    with pytest.raises(rbac.PermissionError_):
        rbac.normalize_grant(bad)


@pytest.mark.parametrize("bad", ["users:*:read", "*", "users:accounts", "users", "u:a:*"])
def test_checked_permission_must_be_concrete(bad: str) -> None:
    with pytest.raises(rbac.PermissionError_):
        rbac.check_form(bad)


def _graph() -> rbac.Graph:
    """Ann: direct role Reader; member of staff/it (group 3, parent staff 1) whose parent
    gives role Staff; Helpdesk (role 4) via group it includes role Reader (composite)."""
    return rbac.Graph(
        assignments=[rbac.Assignment(10)],
        memberships=[rbac.Membership(3)],
        group_parent={1: None, 3: 1},
        group_names={1: "staff", 3: "staff/it"},
        group_roles={1: [20], 3: [4]},
        role_children={4: [10], 10: []},
        role_names={4: "Helpdesk", 10: "Reader", 20: "Staff", 30: "app-editor"},
        role_client={30: "app"},
        role_permissions={
            10: ["users:*:read"],
            4: ["users:password:reset"],
            20: [],
            30: ["*"],
        },
        role_permission_groups={20: [7]},
        permission_groups={7: ("wiki", ["wiki:pages:*"])},
    )


def test_effective_permissions_through_groups_nesting_composites_and_permission_groups() -> None:
    eff = rbac.compute(_graph(), NOW)
    perms = eff.global_permissions()
    assert perms == {"users:*:read", "users:password:reset", "wiki:pages:*"}
    assert eff.role_ids == {4, 10, 20}
    assert rbac.allows(perms, "wiki:pages:edit")
    assert rbac.allows(perms, "users:accounts:read")
    assert not rbac.allows(perms, "users:accounts:delete")


def test_client_roles_never_grant_idp_permissions() -> None:
    g = _graph()
    g.assignments.append(rbac.Assignment(30))
    eff = rbac.compute(g, NOW)
    assert 30 in eff.role_ids
    assert "*:*:*" not in eff.global_permissions()


def test_expired_grants_are_ignored_and_the_earliest_expiry_bounds_the_result() -> None:
    g = _graph()
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=2)
    g.assignments = [rbac.Assignment(10, expires_at=later)]
    g.memberships = [rbac.Membership(3, expires_at=soon)]
    eff = rbac.compute(g, NOW)
    assert "users:password:reset" in eff.global_permissions()
    assert eff.valid_until == soon
    after = rbac.compute(g, soon)
    assert "users:password:reset" not in after.global_permissions()
    # Reader still comes from the direct (longer) assignment.
    assert "users:*:read" in after.global_permissions()
    assert after.valid_until == later
    assert rbac.compute(g, later).global_permissions() == frozenset()


def test_scoped_assignment_grants_only_in_its_scope() -> None:
    g = rbac.Graph(
        assignments=[rbac.Assignment(1, scope=("department", 42))],
        role_names={1: "User Manager"},
        role_permissions={1: ["users:*:*"]},
    )
    eff = rbac.compute(g, NOW)
    assert eff.global_permissions() == frozenset()
    assert eff.grants == {rbac.Grant("users:*:*", ("department", 42))}


def test_explain_lists_every_path() -> None:
    paths = rbac.explain(_graph(), "users:accounts:read", NOW)
    assert "assigned -> role Reader -> users:*:read" in paths
    assert (
        "member of group staff/it -> role Helpdesk -> includes role Reader -> users:*:read" in paths
    )
    assert len(paths) == 2
    wiki = rbac.explain(_graph(), "wiki:pages:edit", NOW)
    assert wiki == [
        "member of group staff/it (inside staff) -> role Staff -> permission group wiki "
        "-> wiki:pages:*"
    ]
    assert rbac.explain(_graph(), "audit:log:read", NOW) == []


def test_explain_shows_expiry_and_scope() -> None:
    g = rbac.Graph(
        assignments=[rbac.Assignment(1, scope=("company", 2), expires_at=NOW + timedelta(days=1))],
        role_names={1: "Auditor"},
        role_permissions={1: ["audit:*:read"]},
    )
    (line,) = rbac.explain(g, "audit:log:read", NOW)
    assert line.startswith("assigned in company #2 until 2030-01-02")


def test_cycle_detection() -> None:
    edges = {1: [2], 2: [3], 3: []}
    names = {1: "a", 2: "b", 3: "c"}
    rbac.check_new_edge(1, 3, edges, names)  # a diamond is fine
    with pytest.raises(rbac.CycleError) as err:
        rbac.check_new_edge(3, 1, edges, names)
    assert err.value.path == [3, 1, 2, 3]
    assert "c -> a -> b -> c" in str(err.value)
    with pytest.raises(rbac.CycleError):
        rbac.check_new_edge(2, 2, edges, names)


def test_corrupt_cycles_in_stored_data_do_not_hang() -> None:
    g = rbac.Graph(
        assignments=[rbac.Assignment(1)],
        memberships=[rbac.Membership(5)],
        group_parent={5: 6, 6: 5},
        group_roles={6: [2]},
        role_children={1: [2], 2: [1]},
        role_names={1: "a", 2: "b"},
        role_permissions={2: ["x:y:z"]},
    )
    assert rbac.compute(g, NOW).global_permissions() == {"x:y:z"}
    assert len(rbac.explain(g, "x:y:z", NOW)) == 2
