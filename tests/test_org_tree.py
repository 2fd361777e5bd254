"""Organization: companies, the department tree (materialized path), moves and their cycle
refusal, subtree queries over 10,000 users in 500 departments on SQLite and PostgreSQL (the
plan must use the path index), positions, names in several languages, custom fields."""

from __future__ import annotations

import random

import pytest
from identity_support import realm_fixture, sqlite_realm_fixture  # noqa: F401
from sqlalchemy import func, insert, select, text

from idp.errors import Conflict, ValidationError
from idp.storage.directory import Directory, NewUser
from idp.storage.models import Department, User
from idp.storage.rbac import subtree_range


def test_department_tree_moves_and_cycle_refusal(realm):
    with realm.session() as db:
        d = Directory(db, realm.clock)
        acme = d.create_company("acme", "Acme", {"de": "Acme AG", "fr": "Acme SA"})
        eng = d.create_department(acme, "Engineering", names={"de": "Technik"})
        plat = d.create_department(acme, "Platform", eng)
        sre = d.create_department(acme, "SRE", plat)
        sales = d.create_department(acme, "Sales")
        assert sre.path == f"/{eng.id}/{plat.id}/{sre.id}/"
        assert [x.name for x in d.department_chain(sre)] == ["Engineering", "Platform", "SRE"]
        assert d.department("acme/Engineering/Platform").id == plat.id
        ids = {"eng": eng.id, "plat": plat.id, "sre": sre.id, "sales": sales.id}
    with realm.svc.sessions() as db:
        paths_before = dict(db.execute(select(Department.id, Department.path)).all())
    with realm.session() as db:
        d = Directory(db, realm.clock)
        for target in ("sre", "plat", "eng"):
            with pytest.raises(Conflict, match="cycle"):
                d.move_department(db.get(Department, ids["eng"]), db.get(Department, ids[target]))
    with realm.svc.sessions() as db:
        assert dict(db.execute(select(Department.id, Department.path)).all()) == paths_before
    with realm.session() as db:
        d = Directory(db, realm.clock)
        d.move_department(db.get(Department, ids["plat"]), db.get(Department, ids["sales"]))
    with realm.svc.sessions() as db:
        sre = db.get(Department, ids["sre"])
        assert sre.path == f"/{ids['sales']}/{ids['plat']}/{ids['sre']}/"
        assert db.get(Department, ids["plat"]).parent_id == ids["sales"]
        assert db.get(Department, ids["eng"]).path == f"/{ids['eng']}/"
    with realm.session() as db:
        d = Directory(db, realm.clock)
        d.move_department(db.get(Department, ids["plat"]), None)
        assert db.get(Department, ids["sre"]).path == f"/{ids['plat']}/{ids['sre']}/"


def test_departments_stay_inside_their_company(sqlite_realm):
    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        a = d.create_company("a", "A")
        b = d.create_company("b", "B")
        da = d.create_department(a, "X")
        db_ = d.create_department(b, "Y")
        with pytest.raises(ValidationError):
            d.create_department(b, "Z", da)
        with pytest.raises(ValidationError):
            d.move_department(da, db_)
        with pytest.raises(Conflict):
            d.create_department(a, "X")
        with pytest.raises(ValidationError):
            d.create_company("Bad Slug", "x")
        with pytest.raises(ValidationError):
            d.create_company("c", "C", {"not a tag!": "x"})


def test_localized_names_and_positions(sqlite_realm):
    from idp.core.claims import OrgName

    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        acme = d.create_company("acme", "Acme")
        pos = d.create_position(acme, "Engineer", {"de": "Ingenieur", "pt_BR": "Engenheiro"})
        assert pos.names == {"de": "Ingenieur", "pt-BR": "Engenheiro"}
        name = OrgName(pos.name, pos.names)
        assert name.pick("de-CH") == "Ingenieur"
        assert name.pick("pt-BR") == "Engenheiro"
        assert name.pick("fr") == "Engineer"
        assert name.pick(None) == "Engineer"
        with pytest.raises(Conflict):
            d.create_position(acme, "Engineer")
        other = d.create_company("other", "Other")
        user = d.create_user(NewUser("u1"))
        with pytest.raises(ValidationError, match="do not match"):
            d.place_user(user, company=other, position=pos)
        d.place_user(user, position=pos)
        assert user.company_id == acme.id


def test_manager_chains_cannot_loop(sqlite_realm):
    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        a, b, c = (d.create_user(NewUser(n)) for n in ("a", "b", "c"))
        d.place_user(b, manager=a)
        d.place_user(c, manager=b)
        with pytest.raises(Conflict):
            d.place_user(a, manager=c)
        with pytest.raises(ValidationError):
            d.place_user(a, manager=a)
        assert a.manager_id is None


def test_custom_field_schema_validation(sqlite_realm):
    with sqlite_realm.session() as db:
        d = Directory(db, sqlite_realm.clock)
        d.define_field("employee_no", "Employee number", pattern=r"E-\d+", required=True)
        d.define_field(
            "shirt", "Shirt", type="choice", choices=["S", "M", "L"], editable_by_user=True
        )
        d.define_field("hired", "Hired", type="date")
        d.define_field("desk", "Desk", type="integer")
        d.define_field("remote", "Remote", type="boolean", editable_by_user=True)
        with pytest.raises(ValidationError):
            d.define_field("bad", "Bad", pattern="(")
        user = d.create_user(NewUser("u"))
        good = {"employee_no": "E-7", "shirt": "M", "hired": "2029-01-31", "desk": "12"}
        d.set_custom(user, {**good, "remote": "yes"})
        assert user.custom == {
            "employee_no": "E-7",
            "shirt": "M",
            "hired": "2029-01-31",
            "desk": 12,
            "remote": True,
        }
        for bad in (
            {"employee_no": "7"},
            {"shirt": "XXL"},
            {"hired": "31.01.2029"},
            {"desk": "twelve"},
            {"remote": "maybe"},
            {"unknown": 1},
            {"employee_no": None},  # required
        ):
            with pytest.raises(ValidationError):
                d.set_custom(user, bad)
            assert user.custom["employee_no"] == "E-7"
        # The user may edit only editable fields.
        d.set_custom(user, {"shirt": "L"}, by_user=True)
        with pytest.raises(ValidationError):
            d.set_custom(user, {"employee_no": "E-8"}, by_user=True)
        assert user.custom["shirt"] == "L" and user.custom["employee_no"] == "E-7"


def _big_tree(db, rng: random.Random) -> tuple[list[Department], dict[int, int]]:
    """500 departments (random tree) and 10,000 users spread over them."""
    d = Directory(db)
    acme = d.create_company("acme", "Acme")
    depts: list[Department] = []
    for i in range(500):
        parent = rng.choice(depts) if depts and rng.random() < 0.9 else None
        depts.append(d.create_department(acme, f"D{i}", parent))
    per_dept: dict[int, int] = {x.id: 0 for x in depts}
    rows = []
    for i in range(10_000):
        dept = rng.choice(depts)
        per_dept[dept.id] += 1
        rows.append(
            {
                "username": f"user{i:05d}",
                "uuid": f"00000000-0000-4000-8000-{i:012d}",
                "email": None,
                "company_id": acme.id,
                "department_id": dept.id,
                "custom": {},
                "status": "active",
                "source": "local",
                "email_verified": False,
                "phone_verified": False,
                "must_change_password": False,
                "require_mfa": False,
            }
        )
    db.execute(insert(User), rows)
    return depts, per_dept


def test_subtree_queries_over_10000_users_in_500_departments(realm):
    rng = random.Random(7)
    with realm.session() as db:
        depts, per_dept = _big_tree(db, rng)
        children: dict[int | None, list[int]] = {}
        for x in depts:
            children.setdefault(x.parent_id, []).append(x.id)

        def expected(root: int) -> int:
            total, stack = 0, [root]
            while stack:
                n = stack.pop()
                total += per_dept[n]
                stack.extend(children.get(n, []))
            return total

        d = Directory(db)
        roots = [x for x in depts if x.parent_id is None]
        sample = roots[:3] + rng.sample(depts, 20)
        for dept in sample:
            assert d.subtree_user_count(dept) == expected(dept.id)
        assert sum(d.subtree_user_count(r) for r in roots) == 10_000
        biggest = max(roots, key=lambda r: expected(r.id))
        page = d.subtree_users(biggest, limit=50, offset=10)
        assert len(page) == 50
        assert page == sorted(page, key=lambda u: u.username)
        # Move a big subtree under another root: the counts follow the subtree.
        mover = next(r for r in roots if r.id != biggest.id)
        moved_count = expected(mover.id)
        before = d.subtree_user_count(biggest)
        d.move_department(mover, biggest)
        assert d.subtree_user_count(biggest) == before + moved_count
    with realm.svc.sessions() as db:
        assert_path_index_is_used(db, biggest.path)


def assert_path_index_is_used(db, path: str) -> None:
    lo, hi = subtree_range(path)
    q = "SELECT id FROM departments WHERE path >= :lo AND path < :hi"
    if db.bind.dialect.name == "sqlite":
        plan = " ".join(
            str(r[-1]) for r in db.execute(text("EXPLAIN QUERY PLAN " + q), {"lo": lo, "hi": hi})
        )
        assert "ix_departments_path" in plan, plan
    else:
        db.execute(text("ANALYZE departments"))
        db.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(r[0] for r in db.execute(text("EXPLAIN " + q), {"lo": lo, "hi": hi}))
        assert "ix_departments_path" in plan, plan
        assert (
            db.scalar(
                select(func.count())
                .select_from(Department)
                .where(Department.path >= lo, Department.path < hi)
            )
            >= 1
        )
