"""The console's directory screens (idp/web/admin/directory*.py): groups, roles and their
templates, permission groups, delegated (scoped) role assignments, access requests and
temporary grants, and the organisation tree. Every refusal is checked for its message AND for
unchanged rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from directory_kit import paths, rows, seed
from login_kit import audit_actions
from sqlalchemy import select

from idp.storage.models import (
    AccessRequest,
    AuditEvent,
    Department,
    Group,
    GroupMember,
    Role,
    RolePermission,
    User,
    UserRole,
)


@pytest.fixture
def world(app):
    svc = app.extensions["idp"]
    make_admin(svc)
    return seed(svc)


@pytest.fixture
def admin(app, world):
    client = signed_in(app)
    client.csrf = console_csrf(client, "/admin/groups")
    return client


def post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def html(response) -> str:
    return response.get_data(as_text=True)


def _unit_until(svc, days: int = 3) -> str:
    return (svc.clock.utcnow() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


# --- every screen opens ---------------------------------------------------------------------


def test_every_directory_screen_opens_and_is_in_the_sidebar(admin, world):
    for url in (
        "/admin/groups",
        f"/admin/groups/{world.staff}",
        "/admin/roles",
        f"/admin/roles/{world.viewer}",
        "/admin/permission-groups",
        "/admin/access",
        "/admin/org",
        f"/admin/org/companies/{world.acme}",
        f"/admin/org/departments/{world.emea}",
    ):
        response = admin.get(url)
        assert response.status_code == 200, url
    page = html(admin.get("/admin/groups"))
    for link in ("/admin/groups", "/admin/roles", "/admin/permission-groups", "/admin/access"):
        assert f'href="{link}"' in page
    assert 'href="/admin/org"' in page


# --- groups -----------------------------------------------------------------------------------


def test_group_list_is_in_tree_order_searchable_and_paginated(admin, app, world):
    page = html(admin.get("/admin/groups"))
    assert page.index(">staff<") < page.index(">it<")
    assert "(subgroup of staff)" in page
    found = html(admin.get("/admin/groups?q=it"))
    assert ">it<" in found and f'href="/admin/groups/{world.staff}"' not in found
    paged = html(admin.get("/admin/groups?per_page=10&page=1"))
    assert "2 results · page 1 of 1" in paged


def test_a_groups_subgroups_are_listed_on_it_and_as_a_filtered_list(admin, world):
    page = html(admin.get(f"/admin/groups/{world.staff}"))
    assert f'href="/admin/groups/{world.it}">it<' in page
    assert "No subgroups." in html(admin.get(f"/admin/groups/{world.it}"))
    children = html(admin.get(f"/admin/groups?parent={world.staff}"))
    assert "Subgroups of staff" in children and "1 results" in children
    assert admin.get("/admin/groups?parent=x").status_code == 404
    assert admin.get("/admin/groups?parent=9999").status_code == 404


def test_create_rename_move_and_delete_a_group(admin, app, world):
    svc = app.extensions["idp"]
    response = post(admin, "/admin/groups", name="apps", parent="staff/it", description="x")
    assert response.status_code == 302
    with svc.sessions() as db:
        group = db.scalar(select(Group).where(Group.path == "staff/it/apps"))
        assert group is not None
        gid = group.id
    r = post(admin, f"/admin/groups/{gid}/rename", name="tools", description="x")
    assert r.status_code == 302
    assert post(admin, f"/admin/groups/{gid}/move", parent="").status_code == 302
    with svc.sessions() as db:
        assert db.get(Group, gid).path == "tools"
    assert post(admin, f"/admin/groups/{gid}/delete").status_code == 302
    with svc.sessions() as db:
        assert db.get(Group, gid) is None
    assert audit_actions(svc)[-4:] == [
        "group.created",
        "group.renamed",
        "group.moved",
        "group.deleted",
    ]


def test_moving_a_group_under_its_own_subgroup_is_refused_beside_the_field(admin, app, world):
    svc = app.extensions["idp"]
    before, tree = rows(svc), paths(svc)
    response = post(admin, f"/admin/groups/{world.staff}/move", parent="staff/it")
    assert response.status_code == 409
    page = html(response)
    assert 'id="parent-error"' in page and "cycle" in page
    assert 'aria-invalid="true" aria-describedby="parent-error"' in page
    assert rows(svc) == before and paths(svc) == tree


def test_group_with_subgroups_is_not_deleted_and_says_why(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    response = post(admin, f"/admin/groups/{world.staff}/delete")
    assert response.status_code == 409
    assert "has subgroups" in html(response)
    assert rows(svc) == before


def test_bad_group_name_and_unknown_parent_change_nothing(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    bad = post(admin, "/admin/groups", name="a/b")
    assert bad.status_code == 400 and "group name" in html(bad)
    missing = post(admin, "/admin/groups", name="x", parent="nowhere")
    assert missing.status_code == 400 and "There is no group nowhere" in html(missing)
    taken = post(admin, "/admin/groups", name="staff")
    assert taken.status_code == 409 and "already exists" in html(taken)
    assert rows(svc) == before


def test_members_added_until_a_time_and_removed(admin, app, world):
    svc = app.extensions["idp"]
    make_admin(svc, "carol", role="Read-only")
    until = _unit_until(svc)
    response = post(admin, f"/admin/groups/{world.it}/members", username="carol", expires_at=until)
    assert response.status_code == 302
    page = html(admin.get(f"/admin/groups/{world.it}"))
    assert "carol" in page and "temporary" in page and "Remove<span" in page
    assert 'Remove<span class="visually-hidden"> carol from it</span>' in page
    with svc.sessions() as db:
        carol = db.scalar(select(User).where(User.username == "carol"))
        member = db.get(GroupMember, (world.it, carol.id))
        assert member.expires_at is not None
    response = post(admin, f"/admin/groups/{world.it}/members/{carol.uuid}/remove")
    assert response.status_code == 302
    with svc.sessions() as db:
        assert db.get(GroupMember, (world.it, carol.id)) is None


def test_unknown_member_and_bad_expiry_are_shown_beside_their_fields(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    r = post(admin, f"/admin/groups/{world.it}/members", username="nobody")
    assert r.status_code == 400 and 'id="username-error"' in html(r)
    r = post(admin, f"/admin/groups/{world.it}/members", username="ali")
    assert r.status_code == 400 and "There is no user ali you may manage. Similar: alice" in html(r)
    r = post(admin, f"/admin/groups/{world.it}/members", username="bob", expires_at="soon")
    assert r.status_code == 400 and 'id="expires_at-error"' in html(r)
    past = (svc.clock.utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = post(admin, f"/admin/groups/{world.it}/members", username="bob", expires_at=past)
    assert r.status_code == 400 and "past" in html(r)
    assert rows(svc) == before


def test_group_roles_assigned_and_unassigned(admin, app, world):
    svc = app.extensions["idp"]
    assert post(admin, f"/admin/groups/{world.it}/roles", role_id=world.viewer).status_code == 302
    assert "Viewer" in html(admin.get(f"/admin/groups/{world.it}"))
    url = f"/admin/groups/{world.it}/roles/{world.viewer}/remove"
    assert post(admin, url).status_code == 302
    assert audit_actions(svc)[-2:] == ["group.role_assigned", "group.role_unassigned"]


# --- roles ------------------------------------------------------------------------------------


def test_templates_are_marked_and_a_role_from_a_template_copies_its_permissions(admin, app, world):
    svc = app.extensions["idp"]
    page = html(admin.get("/admin/roles"))
    assert "Helpdesk" in page and 'class="badge info">template<' in page
    with svc.sessions() as db:
        helpdesk = db.scalar(select(Role).where(Role.name == "Helpdesk"))
        wanted = set(
            db.scalars(
                select(RolePermission.permission).where(RolePermission.role_id == helpdesk.id)
            )
        )
    response = post(
        admin,
        "/admin/roles",
        name="Helpdesk EU",
        template_id=helpdesk.id,
        permissions="audit:log:read",
    )
    assert response.status_code == 302
    with svc.sessions() as db:
        role = db.scalar(select(Role).where(Role.name == "Helpdesk EU"))
        got = set(
            db.scalars(select(RolePermission.permission).where(RolePermission.role_id == role.id))
        )
        assert role.template is None
    assert got == wanted | {"audit:log:read"}


def test_permissions_added_and_removed_and_a_bad_one_changes_nothing(admin, app, world):
    svc = app.extensions["idp"]
    url = f"/admin/roles/{world.viewer}"
    assert post(admin, f"{url}/permissions", permissions="groups:*:read\n").status_code == 302
    before = rows(svc)
    response = post(admin, f"{url}/permissions", permissions="groups:groups:update\nUsers::read")
    assert response.status_code == 400
    page = html(response)
    assert 'id="permissions-error"' in page and "Users::read is not a permission" in page
    assert rows(svc) == before  # the good one was not added either
    assert post(admin, f"{url}/permissions/remove", permission="groups:*:read").status_code == 302
    with svc.sessions() as db:
        perms = set(
            db.scalars(
                select(RolePermission.permission).where(RolePermission.role_id == world.viewer)
            )
        )
    assert perms == {"users:accounts:read"}


def test_composite_cycle_is_refused_and_nothing_changes(admin, app, world):
    svc = app.extensions["idp"]
    post(admin, "/admin/roles", name="Outer")
    with svc.sessions() as db:
        outer = db.scalar(select(Role.id).where(Role.name == "Outer"))
    assert post(admin, f"/admin/roles/{outer}/composites", child_id=world.viewer).status_code == 302
    before = rows(svc)
    response = post(admin, f"/admin/roles/{world.viewer}/composites", child_id=outer)
    assert response.status_code == 409
    assert 'id="child_id-error"' in html(response) and "refused" in html(response)
    assert rows(svc) == before
    assert post(admin, f"/admin/roles/{outer}/composites/{world.viewer}/remove").status_code == 302


def test_deleting_a_role_in_use_shows_the_usage_and_deletes_nothing(admin, app, world):
    svc = app.extensions["idp"]
    post(admin, f"/admin/groups/{world.it}/roles", role_id=world.viewer)
    before = rows(svc)
    response = post(admin, f"/admin/roles/{world.viewer}/delete")
    assert response.status_code == 409
    page = html(response)
    assert "Not deleted" in page and "in use" in page and "staff/it" in page
    assert rows(svc) == before


def test_scoped_role_granted_listed_and_revoked(admin, app, world):
    """Delegated administration: bob holds Viewer only over the Sales subtree."""
    svc = app.extensions["idp"]
    url = f"/admin/roles/{world.viewer}"
    response = post(admin, f"{url}/holders", username="bob", scope=f"department:{world.sales}")
    assert response.status_code == 302
    with svc.sessions() as db:
        row = db.scalar(select(UserRole).where(UserRole.role_id == world.viewer))
        assert row.scope_department_id == world.sales and row.user_id == world.bob
    page = html(admin.get(url))
    assert "department Acme / Sales and below" in page
    assert 'Take away<span class="visually-hidden"> role Viewer from bob (every scope)' in page
    with svc.sessions() as db:
        bob = db.get(User, world.bob)
    assert post(admin, f"{url}/holders/{bob.uuid}/remove").status_code == 302
    with svc.sessions() as db:
        assert db.scalar(select(UserRole).where(UserRole.role_id == world.viewer)) is None


def test_scope_that_does_not_exist_changes_nothing(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    url = f"/admin/roles/{world.viewer}/holders"
    assert post(admin, url, username="bob", scope="planet:3").status_code == 400
    assert post(admin, url, username="bob", scope="company:999").status_code == 404
    assert rows(svc) == before


# --- permission groups -----------------------------------------------------------------------


def test_permission_group_created_edited_attached_and_deleted(admin, app, world):
    svc = app.extensions["idp"]
    response = post(admin, "/admin/permission-groups", name="Readers", permissions="users:*:read")
    assert response.status_code == 302
    pg_id = int(response.headers["Location"].rsplit("/", 1)[1])
    r = post(
        admin,
        f"/admin/permission-groups/{pg_id}",
        name="Readers",
        permissions="a:b:c\ngroups:*:read",
    )
    assert r.status_code == 302
    assert (
        post(admin, f"/admin/roles/{world.viewer}/permission-groups", pg_id=pg_id).status_code
        == 302
    )
    assert "Viewer" in html(admin.get(f"/admin/permission-groups/{pg_id}"))
    assert (
        post(admin, f"/admin/roles/{world.viewer}/permission-groups/{pg_id}/remove").status_code
        == 302
    )
    assert post(admin, f"/admin/permission-groups/{pg_id}/delete").status_code == 302
    assert "permission_group.deleted" in audit_actions(svc)


def test_permission_group_with_a_bad_permission_is_refused(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    response = post(admin, "/admin/permission-groups", name="Bad", permissions="users::read")
    assert response.status_code == 400 and 'role="alert"' in html(response)
    assert rows(svc) == before


# --- access requests and temporary grants ----------------------------------------------------


def test_approving_a_request_grants_the_role_and_records_the_reason(admin, app, world):
    svc = app.extensions["idp"]
    page = html(admin.get("/admin/access"))
    assert "alice" in page and "role Viewer" in page
    assert 'Approve<span class="visually-hidden"> alice: role Viewer' in page
    url = f"/admin/access/requests/{world.request}/approve"
    assert post(admin, url, reason="quarterly audit").status_code == 302
    with svc.sessions() as db:
        assert db.get(AccessRequest, world.request).status == "approved"
        grant = db.scalar(select(UserRole).where(UserRole.user_id == world.alice))
        assert grant.expires_at is not None
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "access_request.approved"))
        assert "quarterly audit" in str(event.details)
    again = post(admin, url)
    assert again.status_code == 409 and "already approved" in html(again)


def test_denying_a_request_grants_nothing(admin, app, world):
    svc = app.extensions["idp"]
    assert (
        post(admin, f"/admin/access/requests/{world.request}/deny", reason="no").status_code == 302
    )
    with svc.sessions() as db:
        assert db.get(AccessRequest, world.request).status == "rejected"
        assert db.scalar(select(UserRole).where(UserRole.user_id == world.alice)) is None


def test_a_temporary_role_is_granted_listed_and_revoked(admin, app, world):
    svc = app.extensions["idp"]
    response = post(
        admin,
        "/admin/access/grants",
        username="bob",
        role_id=world.viewer,
        expires_at=_unit_until(svc, 2),
    )
    assert response.status_code == 302
    page = html(admin.get("/admin/access"))
    assert 'Revoke<span class="visually-hidden"> role Viewer of bob' in page
    with svc.sessions() as db:
        grant = db.scalar(select(UserRole).where(UserRole.user_id == world.bob))
    assert post(admin, f"/admin/access/grants/role-{grant.id}/revoke").status_code == 302
    with svc.sessions() as db:
        assert db.get(UserRole, grant.id) is None


def test_a_temporary_grant_needs_a_future_end_and_a_real_user(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    url = "/admin/access/grants"
    r = post(admin, url, username="bob", role_id=world.viewer, expires_at="")
    assert r.status_code == 400 and 'id="expires_at-error"' in html(r)
    past = (svc.clock.utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    r = post(admin, url, username="bob", role_id=world.viewer, expires_at=past)
    assert r.status_code == 400 and "past" in html(r)
    r = post(admin, url, username="ghost", role_id=world.viewer, expires_at=_unit_until(svc))
    assert r.status_code == 400 and 'id="username-error"' in html(r)
    assert post(admin, "/admin/access/grants/role-99999/revoke").status_code == 404
    assert rows(svc) == before


# --- organisation ----------------------------------------------------------------------------


def test_department_tree_is_nested_lists_with_labels(admin, world):
    page = html(admin.get(f"/admin/org/companies/{world.acme}"))
    assert 'aria-label="Departments of Acme"' in page
    assert 'aria-label="Below Sales"' in page
    assert page.index(">Sales<") < page.index(">EMEA<")


def test_company_department_and_position_created_renamed_and_deleted(admin, app, world):
    svc = app.extensions["idp"]
    response = post(admin, "/admin/org", slug="initech", name="Initech")
    assert response.status_code == 302
    cid = int(response.headers["Location"].rsplit("/", 1)[1])
    assert post(admin, f"/admin/org/companies/{cid}/departments", name="HQ").status_code == 302
    assert post(admin, f"/admin/org/companies/{cid}/positions", name="Boss").status_code == 302
    assert post(admin, f"/admin/org/companies/{cid}/rename", name="Initech AG").status_code == 302
    with svc.sessions() as db:
        dept = db.scalar(select(Department).where(Department.company_id == cid))
    assert (
        post(admin, f"/admin/org/departments/{dept.id}/rename", name="Head office").status_code
        == 302
    )
    refused = post(admin, f"/admin/org/companies/{cid}/delete")
    assert refused.status_code == 409 and "not empty" in html(refused)
    assert post(admin, f"/admin/org/departments/{dept.id}/delete").status_code == 302
    page = html(admin.get(f"/admin/org/companies/{cid}"))
    pos_id = page.split("/admin/org/positions/")[1].split("/")[0]
    assert post(admin, f"/admin/org/positions/{pos_id}/delete").status_code == 302
    assert post(admin, f"/admin/org/companies/{cid}/delete").status_code == 302
    assert "org.company_deleted" in audit_actions(svc)


def test_department_moves_with_its_subtree(admin, app, world):
    svc = app.extensions["idp"]
    response = post(admin, f"/admin/org/departments/{world.sales}/move", parent_id=world.ops)
    assert response.status_code == 302
    with svc.sessions() as db:
        assert db.get(Department, world.sales).parent_id == world.ops
        assert db.get(Department, world.emea).path.startswith(db.get(Department, world.ops).path)


def test_moving_a_department_into_its_own_subtree_is_refused_and_nothing_moves(admin, app, world):
    svc = app.extensions["idp"]
    before, tree = rows(svc), paths(svc)
    response = post(admin, f"/admin/org/departments/{world.sales}/move", parent_id=world.emea)
    assert response.status_code == 409
    page = html(response)
    assert 'id="parent_id-error"' in page and "cycle" in page
    assert rows(svc) == before and paths(svc) == tree


def test_a_department_in_use_is_not_deleted_and_says_why(admin, app, world):
    svc = app.extensions["idp"]
    before = rows(svc)
    response = post(admin, f"/admin/org/departments/{world.emea}/delete")
    assert response.status_code == 409
    assert "Not deleted" in html(response) and "still has users" in html(response)
    response = post(admin, f"/admin/org/departments/{world.sales}/delete")
    assert response.status_code == 409 and "sub-departments" in html(response)
    assert rows(svc) == before


# --- who may ----------------------------------------------------------------------------------


def test_a_change_without_the_csrf_token_is_refused(admin, app, world):
    svc = app.extensions["idp"]
    before, tree = rows(svc), paths(svc)
    for url, data in (
        (f"/admin/groups/{world.staff}/delete", {}),
        (f"/admin/org/departments/{world.sales}/move", {"parent_id": world.ops}),
        (f"/admin/access/requests/{world.request}/approve", {}),
    ):
        assert admin.post(url, data=data).status_code == 400, url
    assert rows(svc) == before and paths(svc) == tree


def test_a_helpdesk_gets_403_on_the_directory_screens(app, world):
    svc = app.extensions["idp"]
    make_admin(svc, "desk", role="Helpdesk")
    client = signed_in(app, "desk")
    csrf = console_csrf(client, "/account/")
    for url in (
        "/admin/groups",
        "/admin/roles",
        "/admin/permission-groups",
        "/admin/org",
        "/admin/access",
        f"/admin/roles/{world.viewer}",
    ):
        assert client.get(url).status_code == 403, url
    before = rows(svc)
    r = client.post(f"/admin/groups/{world.staff}/delete", data={"csrf_token": csrf})
    assert r.status_code == 403
    r = client.post(f"/admin/access/requests/{world.request}/approve", data={"csrf_token": csrf})
    assert r.status_code == 403
    assert rows(svc) == before
    assert 'href="/admin/groups"' not in html(client.get("/admin/"))


def test_a_delegated_admin_sees_only_their_company(app, world):
    """A User Manager scoped to Acme (plus reading groups everywhere) sees Acme's alice among
    the group's members and grants, never Globex's bob."""
    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        from idp.storage.directory import Directory

        d = Directory(db, svc.clock)
        d.create_role("Group reader", ["groups:groups:read", "console:admin:access"])
        for user_id in (world.alice, world.bob):
            d.assign_role(
                db.get(User, user_id),
                db.get(Role, world.viewer),
                expires_at=svc.clock.utcnow() + timedelta(days=1),
            )
    deleg = make_admin(svc, "deleg", role="Group reader")
    with svc.sessions.begin() as db:
        from idp.storage.directory import Directory
        from idp.storage.models import Company

        Directory(db, svc.clock).assign_role(
            db.get(User, deleg),
            db.scalar(select(Role).where(Role.name == "User Manager")),
            scope_company=db.get(Company, world.acme),
        )
    client = signed_in(app, "deleg")
    members = html(client.get(f"/admin/groups/{world.staff}"))
    assert "alice" in members and "bob" not in members
    access = html(client.get("/admin/access"))
    assert "alice" in access and "bob" not in access
    assert client.get("/admin/roles").status_code == 403  # roles are not scoped: not theirs
