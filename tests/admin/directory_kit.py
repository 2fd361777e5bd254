"""A small seeded directory for the console's directory screens: two companies with
departments, groups, a role, users, a pending access request; and row counters that hostile
tests compare before and after a refused change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from login_kit import make_user
from sqlalchemy import func, select

from idp.storage.directory import Directory
from idp.storage.models import (
    AccessRequest,
    AuditEvent,
    Company,
    Department,
    Group,
    GroupMember,
    GroupRole,
    Position,
    Role,
    RoleComposite,
    RolePermission,
    User,
    UserRole,
)


@dataclass
class Seeded:
    acme: int
    globex: int
    sales: int  # acme / Sales
    emea: int  # acme / Sales / EMEA
    ops: int  # acme / Ops
    staff: int  # group staff
    it: int  # group staff/it
    viewer: int  # role "Viewer"
    request: int  # alice asks for Viewer
    alice: int
    bob: int


def seed(svc) -> Seeded:
    alice = make_user(svc, "alice")
    bob = make_user(svc, "bob")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        sales = d.create_department(acme, "Sales")
        emea = d.create_department(acme, "EMEA", sales)
        ops = d.create_department(acme, "Ops")
        d.create_position(acme, "Engineer")
        staff = d.create_group("staff")
        it = d.create_group("it", "staff")
        viewer = d.create_role("Viewer", ["users:accounts:read"], description="Reads users")
        a, b = db.get(User, alice), db.get(User, bob)
        d.place_user(a, company=acme, department=emea)
        d.place_user(b, company=globex)
        d.add_member(staff, a)
        d.add_member(staff, b)
        req = d.request_access(
            a, role=viewer, expires_at=svc.clock.utcnow() + timedelta(days=7), reason="audit"
        )
        return Seeded(
            acme.id,
            globex.id,
            sales.id,
            emea.id,
            ops.id,
            staff.id,
            it.id,
            viewer.id,
            req.id,
            alice,
            bob,
        )


TABLES = (
    AccessRequest,
    AuditEvent,
    Company,
    Department,
    Group,
    GroupMember,
    GroupRole,
    Position,
    Role,
    RoleComposite,
    RolePermission,
    UserRole,
)


def rows(svc) -> dict[str, int]:
    """How many rows each directory table holds (a refused change leaves them all alone)."""
    with svc.sessions() as db:
        return {
            t.__tablename__: int(db.scalar(select(func.count()).select_from(t)) or 0)
            for t in TABLES
        }


def paths(svc) -> dict[str, str]:
    """Every group's and department's path (a refused move leaves them all alone)."""
    with svc.sessions() as db:
        out = {f"g{i}": p for i, p in db.execute(select(Group.id, Group.path))}
        out.update({f"d{i}": p for i, p in db.execute(select(Department.id, Department.path))})
        return out
