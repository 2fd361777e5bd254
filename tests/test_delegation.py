"""Delegated administration: an admin whose role is scoped to a company or a department
subtree manages only users there; the permission check denies by default."""

from __future__ import annotations

import pytest
from identity_support import realm_fixture  # noqa: F401
from sqlalchemy import select

from idp.storage.directory import Directory, NewUser
from idp.storage.models import User
from idp.storage.rbac import AccessDenied, Authorizer


def _org(db, clock) -> dict[str, int]:
    d = Directory(db, clock)
    acme = d.create_company("acme", "Acme")
    globex = d.create_company("globex", "Globex")
    eng = d.create_department(acme, "Engineering")
    plat = d.create_department(acme, "Platform", eng)
    sales = d.create_department(acme, "Sales")
    gx = d.create_department(globex, "Ops")
    users = {}
    for name, dept in (
        ("eng_lead", eng),
        ("plat_dev", plat),
        ("sales_rep", sales),
        ("gx_ops", gx),
        ("acme_hr", sales),
        ("nobody", None),
    ):
        u = d.create_user(NewUser(name))
        if dept is not None:
            d.place_user(u, department=dept)
        users[name] = u.id
    um = d.role_by_name("User Manager")
    d.assign_role(db.get(User, users["eng_lead"]), um, scope_department=eng)
    d.assign_role(db.get(User, users["acme_hr"]), d.role_by_name("Helpdesk"), scope_company=acme)
    boss = d.create_user(NewUser("root"), roles=["Administrator"])
    d.place_user(boss, department=plat)
    users["root"] = boss.id
    users["eng"], users["plat"] = eng.id, plat.id
    return users


def test_department_scoped_admin_manages_only_their_subtree(realm):
    with realm.session() as db:
        u = _org(db, realm.clock)
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        lead = u["eng_lead"]
        assert auth.authorize(lead, "users:accounts:update", u["plat_dev"])
        assert auth.authorize(lead, "users:accounts:update", lead)
        assert not auth.authorize(lead, "users:accounts:update", u["sales_rep"])
        assert not auth.authorize(lead, "users:accounts:update", u["gx_ops"])
        assert not auth.authorize(lead, "users:accounts:update", u["nobody"])
        # Without a target only global grants count.
        assert not auth.authorize(lead, "users:accounts:update")
        # Outside the role's permissions nothing is allowed, even in scope.
        assert not auth.authorize(lead, "audit:log:read", u["plat_dev"])
        # A global admin inside the subtree is out of a delegated admin's reach.
        assert not auth.authorize(lead, "users:password:reset", u["root"])
        assert auth.authorize(u["root"], "users:password:reset", lead)
        with pytest.raises(AccessDenied, match="users:accounts:delete"):
            auth.require(lead, "users:accounts:delete", u["sales_rep"])
        visible = set(
            db.scalars(select(User.username).where(auth.user_filter(lead, "users:accounts:read")))
        )
        assert visible == {"eng_lead", "plat_dev", "root"}
        everyone = set(
            db.scalars(
                select(User.username).where(auth.user_filter(u["root"], "users:accounts:read"))
            )
        )
        assert len(everyone) == 7
        assert (
            set(
                db.scalars(
                    select(User.username).where(
                        auth.user_filter(u["nobody"], "users:accounts:read")
                    )
                )
            )
            == set()
        )


def test_company_scoped_admin(realm):
    with realm.session() as db:
        u = _org(db, realm.clock)
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        hr = u["acme_hr"]
        assert auth.authorize(hr, "users:password:reset", u["sales_rep"])
        assert auth.authorize(hr, "users:password:reset", u["plat_dev"])
        assert not auth.authorize(hr, "users:password:reset", u["gx_ops"])
        assert not auth.authorize(hr, "users:accounts:delete", u["sales_rep"])
        names = set(
            db.scalars(select(User.username).where(auth.user_filter(hr, "users:mfa:reset")))
        )
        assert names == {"eng_lead", "plat_dev", "sales_rep", "acme_hr", "root"}


def test_scope_follows_department_moves(realm):
    with realm.session() as db:
        u = _org(db, realm.clock)
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        assert auth.authorize(u["eng_lead"], "users:accounts:update", u["plat_dev"])
    with realm.session() as db:
        from idp.storage.models import Department

        Directory(db, realm.clock).move_department(db.get(Department, u["plat"]), None)
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        assert not auth.authorize(u["eng_lead"], "users:accounts:update", u["plat_dev"])


def test_deny_by_default(realm):
    with realm.session() as db:
        u = _org(db, realm.clock)
        root = db.get(User, u["root"])
        root.status = "locked"
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        assert not auth.authorize(u["root"], "users:accounts:read")  # locked admins do nothing
        assert not auth.authorize(u["nobody"], "users:accounts:read", u["nobody"])
        assert not auth.authorize(999999, "users:accounts:read")
        assert not auth.authorize(u["eng_lead"], "users:*:read", u["plat_dev"])  # not concrete
        assert not auth.authorize(u["eng_lead"], "garbage", u["plat_dev"])
        assert not auth.authorize(u["eng_lead"], "users:accounts:read", 999999)


def test_no_one_grants_more_than_they_hold(realm):
    with realm.session() as db:
        u = _org(db, realm.clock)
        d = Directory(db, realm.clock)
        admin_role = d.role_by_name("Administrator").id
        helpdesk = d.role_by_name("Helpdesk").id
        auditor = d.role_by_name("Auditor").id
    with realm.session() as db:
        auth = Authorizer(db, realm.svc.store, realm.clock)
        lead = u["eng_lead"]
        assert not auth.can_grant_role(lead, admin_role, u["plat_dev"])
        assert not auth.can_grant_role(lead, auditor, u["plat_dev"])  # audit:*:read not held
        # Helpdesk's permissions are all within users:*:* and oauth:scope:admin.
        assert auth.can_grant_role(lead, helpdesk, u["plat_dev"])
        assert not auth.can_grant_role(lead, helpdesk, u["sales_rep"])
        assert auth.can_grant_role(u["root"], admin_role, u["sales_rep"])
