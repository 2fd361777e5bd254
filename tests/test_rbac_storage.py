"""Effective permissions from the database (SQLite and PostgreSQL): groups, nested groups,
composite roles, permission groups, temporary grants, the cross-process cache, refusals of
cycles and of deleting roles in use, and approvals of temporary access."""

from __future__ import annotations

from datetime import timedelta

import pytest
from identity_support import T0, realm_fixture, sqlite_realm_fixture  # noqa: F401
from sqlalchemy import delete, select

from idp.errors import Conflict, ValidationError
from idp.storage import claims as api
from idp.storage.directory import Directory, NewUser, RoleInUse
from idp.storage.models import (
    AccessRequest,
    Group,
    GroupMember,
    Role,
    RoleComposite,
    RolePermission,
    UserRole,
)
from idp.storage.rbac import generation


def _setup(db, clock) -> dict[str, int]:
    d = Directory(db, clock)
    staff = d.create_group("staff")
    it = d.create_group("it", parent="staff")
    reader = d.create_role("Reader", ["users:*:read"])
    helpdesk = d.create_role("Desk", ["users:password:reset"])
    d.add_composite(helpdesk, reader)
    wiki_pg = d.create_permission_group("wiki", ["wiki:pages:*"])
    staff_role = d.create_role("Staff")
    d.add_permission_group(staff_role, wiki_pg)
    d.assign_group_role(staff, staff_role)
    d.assign_group_role(it, helpdesk)
    ann = d.create_user(NewUser("ann", "ann@example.org"))
    d.add_member(it, ann)
    return {"ann": ann.id, "reader": reader.id, "helpdesk": helpdesk.id, "staff": staff.id}


def test_effective_permissions_through_nested_groups_composites_and_permission_groups(realm):
    with realm.session() as db:
        ids = _setup(db, realm.clock)
    with realm.session() as db:
        perms = api.effective_permissions(db, realm.svc.store, ids["ann"], clock=realm.clock)
        assert perms == {"users:*:read", "users:password:reset", "wiki:pages:*"}
        assert api.has_permission(
            db, realm.svc.store, ids["ann"], "users:accounts:read", clock=realm.clock
        )
        assert api.has_permission(
            db, realm.svc.store, ids["ann"], "wiki:pages:delete", clock=realm.clock
        )
        assert not api.has_permission(
            db, realm.svc.store, ids["ann"], "users:accounts:delete", clock=realm.clock
        )
        # Malformed or wildcard checks deny rather than raise.
        assert not api.has_permission(db, realm.svc.store, ids["ann"], "users:*:read")
        paths = api.explain(db, ids["ann"], "users:accounts:read", clock=realm.clock)
        assert paths == [
            "member of group staff/it -> role Desk -> includes role Reader -> users:*:read"
        ]


def test_cache_is_invalidated_across_worker_processes(realm):
    with realm.session() as db:
        ids = _setup(db, realm.clock)
    store = realm.svc.store
    with realm.session() as db:
        gen = generation(db)
        assert not api.has_permission(db, store, ids["ann"], "audit:log:read", clock=realm.clock)
    assert store.get(f"rbac:eff:{gen}:{ids['ann']}") is not None  # cached
    other = realm.another_process()
    try:
        with other.sessions.begin() as db:
            d = Directory(db, realm.clock)
            d.add_permission(d.role_by_name("Reader"), "audit:*:read")
    finally:
        other.engine.dispose()
    with realm.session() as db:
        assert generation(db) > gen
        assert api.has_permission(db, store, ids["ann"], "audit:log:read", clock=realm.clock)
    # A bulk statement (no ORM objects) also invalidates.
    with realm.session() as db:
        db.execute(delete(GroupMember).where(GroupMember.user_id == ids["ann"]))
    with realm.session() as db:
        assert api.effective_permissions(db, store, ids["ann"], clock=realm.clock) == frozenset()


def test_uncommitted_changes_never_reach_the_cache(sqlite_realm):
    realm = sqlite_realm
    with realm.session() as db:
        ids = _setup(db, realm.clock)
    store = realm.svc.store
    db = realm.svc.sessions()
    d = Directory(db, realm.clock)
    d.add_permission(d.role_by_name("Reader"), "secret:x:read")
    assert api.has_permission(db, store, ids["ann"], "secret:x:read", clock=realm.clock)
    db.rollback()
    db.close()
    with realm.session() as db:
        assert not api.has_permission(db, store, ids["ann"], "secret:x:read", clock=realm.clock)


def test_temporary_grants_expire_even_when_cached(realm):
    with realm.session() as db:
        ids = _setup(db, realm.clock)
        d = Directory(db, realm.clock)
        ann = d.user_by_username("ann")
        auditor = d.role_by_name("Auditor")
        d.assign_role(ann, auditor, expires_at=T0 + timedelta(hours=2))
    store = realm.svc.store
    with realm.session() as db:
        assert api.has_permission(db, store, ids["ann"], "audit:log:read", clock=realm.clock)
    realm.clock.advance(2 * 3600 + 1)
    with realm.session() as db:
        assert not api.has_permission(db, store, ids["ann"], "audit:log:read", clock=realm.clock)
        assert api.explain(db, ids["ann"], "audit:log:read", clock=realm.clock) == []
        d = Directory(db, realm.clock)
        assert d.purge_expired() == 1


def test_expiry_in_the_past_is_refused(sqlite_realm):
    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        ann = d.create_user(NewUser("ann"))
        with pytest.raises(ValidationError, match="past"):
            d.assign_role(ann, d.role_by_name("Auditor"), expires_at=T0 - timedelta(seconds=1))
    assert sqlite_realm.count(UserRole) == 0


def test_role_composition_cycles_are_refused_and_nothing_changes(realm):
    with realm.session() as db:
        d = Directory(db, realm.clock)
        a, b, c = (d.create_role(n) for n in ("A", "B", "C"))
        d.add_composite(a, b)
        d.add_composite(b, c)
    before = realm.count(RoleComposite)
    with realm.session() as db:
        d = Directory(db, realm.clock)
        with pytest.raises(Conflict, match="C -> A -> B -> C"):
            d.add_composite(d.role_by_name("C"), d.role_by_name("A"))
        with pytest.raises(Conflict, match="itself"):
            d.add_composite(d.role_by_name("A"), d.role_by_name("A"))
    assert realm.count(RoleComposite) == before == 2


def test_group_moves_that_would_cycle_are_refused_and_moves_repath_the_subtree(realm):
    with realm.session() as db:
        d = Directory(db, realm.clock)
        d.create_group("staff")
        d.create_group("it", parent="staff")
        d.create_group("ops", parent="staff/it")
        d.create_group("partners")
    with realm.session() as db:
        d = Directory(db, realm.clock)
        with pytest.raises(Conflict, match="cycle"):
            d.move_group(d.group_by_path("staff"), d.group_by_path("staff/it/ops"))
        with pytest.raises(Conflict, match="cycle"):
            d.move_group(d.group_by_path("staff"), d.group_by_path("staff"))
    with realm.svc.sessions() as db:
        assert sorted(db.scalars(select(Group.path))) == [
            "partners",
            "staff",
            "staff/it",
            "staff/it/ops",
        ]
    with realm.session() as db:
        d = Directory(db, realm.clock)
        moved = d.move_group(d.group_by_path("staff/it"), d.group_by_path("partners"))
        assert moved.path == "partners/it"
        d.rename_group(d.group_by_path("partners"), "external")
    with realm.svc.sessions() as db:
        assert sorted(db.scalars(select(Group.path))) == [
            "external",
            "external/it",
            "external/it/ops",
            "staff",
        ]


def test_nested_group_membership_inherits_parent_roles(realm):
    with realm.session() as db:
        d = Directory(db, realm.clock)
        top = d.create_group("top")
        d.create_group("mid", parent="top")
        leaf = d.create_group("leaf", parent="top/mid")
        d.assign_group_role(top, d.role_by_name("Auditor"))
        bob = d.create_user(NewUser("bob"))
        d.add_member(leaf, bob)
        bob_id = bob.id
    with realm.session() as db:
        assert api.has_permission(db, realm.svc.store, bob_id, "audit:log:read", clock=realm.clock)
        (line,) = api.explain(db, bob_id, "audit:log:read", clock=realm.clock)
        assert line == "member of group top/mid/leaf (inside top) -> role Auditor -> audit:*:read"


def test_deleting_a_role_in_use_reports_what_uses_it(realm):
    with realm.session() as db:
        ids = _setup(db, realm.clock)
        d = Directory(db, realm.clock)
        ann = d.user_by_username("ann")
        d.assign_role(ann, d.role_by_name("Reader"))
    before = (realm.count(Role), realm.count(UserRole), realm.count(RoleComposite))
    with realm.session() as db:
        d = Directory(db, realm.clock)
        with pytest.raises(RoleInUse) as err:
            d.delete_role(d.role_by_name("Reader"))
        assert err.value.usage["users"] == ["ann"]
        assert err.value.usage["included_by_roles"] == ["Desk"]
        assert "ann" in str(err.value) and "Desk" in str(err.value)
    assert (realm.count(Role), realm.count(UserRole), realm.count(RoleComposite)) == before
    with realm.session() as db:
        d = Directory(db, realm.clock)
        usage = d.delete_role(d.role_by_name("Reader"), force=True)
        assert usage.users == ["ann"]
    with realm.session() as db:
        assert not api.has_permission(
            db, realm.svc.store, ids["ann"], "users:accounts:read", clock=realm.clock
        )
        d = Directory(db, realm.clock)
        d.delete_role(d.create_role("unused"))  # unused roles just go
    assert realm.count(RoleComposite) == 0


def test_client_roles_sit_beside_global_roles(realm):
    with realm.session() as db:
        from idp.storage.clients import ClientRegistry

        ClientRegistry(db, realm.svc.hasher, realm.svc.sealer).create(
            "app", redirect_uris=["https://app.example.org/cb"]
        )
        d = Directory(db, realm.clock)
        global_editor = d.create_role("editor", ["docs:*:read"])
        client_editor = d.create_role("editor", ["*"], client_id="app")
        assert global_editor.id != client_editor.id
        assert d.role_ref("app/editor").id == client_editor.id
        with pytest.raises(Conflict):
            d.create_role("editor", client_id="app")
        cara = d.create_user(NewUser("cara"))
        d.assign_role(cara, client_editor)
        cara_id = cara.id
    with realm.session() as db:
        # A client's role means something to that application only, never to the IdP.
        assert api.effective_permissions(db, realm.svc.store, cara_id) == frozenset()


def test_access_requests_are_approved_by_the_manager_or_an_admin(realm):
    store = realm.svc.store
    with realm.session() as db:
        d = Directory(db, realm.clock)
        # The manager holds Auditor (what the contractors group gives), not Helpdesk.
        boss = d.create_user(NewUser("boss"), roles=["Auditor"])
        dana = d.create_user(NewUser("dana"))
        eve = d.create_user(NewUser("eve"))
        admin = d.create_user(NewUser("root"), roles=["Administrator"])
        d.place_user(dana, manager=boss)
        contractors = d.create_group("contractors")
        d.assign_group_role(contractors, d.role_by_name("Auditor"))
        req = d.request_access(
            dana, group=contractors, expires_at=T0 + timedelta(days=30), reason="audit"
        )
        req2 = d.request_access(dana, role=d.role_by_name("Helpdesk"))
        ids = {"req": req.id, "req2": req2.id, "dana": dana.id, "eve": eve.id}
        ids |= {"boss": boss.id, "admin": admin.id}
    # Neither the requester nor an unrelated user may decide; nothing changes.
    with realm.session() as db:
        d = Directory(db, realm.clock)
        req = db.get(AccessRequest, ids["req"])
        for who in ("dana", "eve"):
            with pytest.raises(ValidationError):
                d.decide(req, d.user_by_username(who), True, store)
    assert realm.count(GroupMember) == 0
    # The manager hands out only roles they hold: not Helpdesk.
    with realm.session() as db:
        d = Directory(db, realm.clock)
        with pytest.raises(ValidationError):
            d.decide(db.get(AccessRequest, ids["req2"]), d.user_by_username("boss"), True, store)
    with realm.session() as db:
        assert db.get(AccessRequest, ids["req2"]).status == "pending"
        assert not api.has_permission(db, store, ids["dana"], "users:accounts:read")
    with realm.session() as db:
        d = Directory(db, realm.clock)
        with pytest.raises(Conflict):
            d.request_access(d.user_by_username("dana"), group=d.group_by_path("contractors"))
        d.decide(db.get(AccessRequest, ids["req"]), d.user_by_username("boss"), True, store)
        d.decide(db.get(AccessRequest, ids["req2"]), d.user_by_username("root"), False, store)
    with realm.session() as db:
        assert db.get(AccessRequest, ids["req"]).status == "approved"
        assert db.get(AccessRequest, ids["req2"]).status == "rejected"
        member = db.get(GroupMember, (db.scalar(select(Group.id)), ids["dana"]))
        assert member.expires_at == T0 + timedelta(days=30)
        assert member.granted_by == ids["boss"]
        assert api.has_permission(db, store, ids["dana"], "audit:log:read", clock=realm.clock)
        d = Directory(db, realm.clock)
        with pytest.raises(Conflict, match="already approved"):
            d.decide(db.get(AccessRequest, ids["req"]), d.user_by_username("root"), True, store)
    realm.clock.advance(31 * 86400)
    with realm.session() as db:
        assert not api.has_permission(db, store, ids["dana"], "audit:log:read", clock=realm.clock)


def test_permissions_are_validated_when_saved(sqlite_realm):
    before = sqlite_realm.count(RolePermission)
    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        for bad in ("Users:x", "users::read", "users:x:y:"):
            with pytest.raises(ValidationError):
                d.add_permission(d.role_by_name("Auditor"), bad)
    assert sqlite_realm.count(RolePermission) == before
