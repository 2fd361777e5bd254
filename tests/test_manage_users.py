"""idp.manage.users: finding users (filters and sorting in SQL, delegated visibility), editing,
deleting, locking, passwords under the policy and MFA resets, each with its permission check and
one audit row; a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from identity_support import realm_fixture  # noqa: F401
from sqlalchemy import event, inspect, select, text

from idp.errors import Conflict, Forbidden, NotFound, ValidationError
from idp.manage import Actor, Context, transaction, users
from idp.manage.users import UserQuery
from idp.storage.directory import Directory, NewUser
from idp.storage.models import AuditEvent, User
from idp.storage.models_auth import PasswordHistory

GOOD = "Correct-Horse-Battery-9"
_NOT_DATA = {"kv_store"}


def snapshot(svc) -> dict[str, list]:
    with svc.engine.connect() as conn:
        tables = sorted(set(inspect(conn).get_table_names()) - _NOT_DATA)
        return {
            t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"'))))  # noqa: S608
            for t in tables
        }


@pytest.fixture
def org(realm):
    """Two companies. acme: Engineering (with Platform below it) and Sales; globex: Ops.
    ``admin`` (Administrator), ``helper`` (Helpdesk), ``nobody``, ``lead`` (User Manager over
    acme/Engineering only), ``robot`` / ``plain`` service accounts; people in each place with
    start/end dates around the realm's today (2030-01-01)."""
    svc = realm.svc
    ids: dict[str, tuple[int, str]] = {}
    with svc.sessions.begin() as db:
        d = Directory(db, realm.clock)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        eng = d.create_department(acme, "Engineering")
        platform = d.create_department(acme, "Platform", parent=eng)
        sales = d.create_department(acme, "Sales")
        ops = d.create_department(globex, "Ops")
        d.create_group("staff")
        d.create_group("it", "staff")
        people = [
            ("admin", "Administrator", None, {}),
            ("helper", "Helpdesk", None, {}),
            ("nobody", None, None, {}),
            ("lead", None, eng, {}),
            ("dev", None, eng, {"given_name": "Dora", "family_name": "Zed"}),
            ("deep", None, platform, {"family_name": "Abel", "start_date": date(2030, 3, 1)}),
            ("seller", None, sales, {"family_name": "Mills", "end_date": date(2029, 6, 30)}),
            ("ops", None, ops, {"family_name": "Owens", "start_date": date(2029, 1, 1)}),
        ]
        for name, role, dept, extra in people:
            u = d.create_user(
                NewUser(name, f"{name}@example.org", **extra), roles=[role] if role else []
            )
            if dept is not None:
                d.place_user(u, department=dept)
            ids[name] = (u.id, u.uuid)
        d.add_member(d.group_by_path("staff/it"), db.get(User, ids["dev"][0]))
        db.get(User, ids["ops"][0]).phone = "+49 30 1234567"
        d.assign_role(
            db.get(User, ids["lead"][0]), d.role_by_name("User Manager"), scope_department=eng
        )
    from idp.manage import clients

    with transaction(svc, Actor.operator()) as ctx:
        clients.create(ctx, "robot", grant_types=["client_credentials"], roles=["User Manager"])
        clients.create(ctx, "plain", grant_types=["client_credentials"])
    realm.ids = ids
    return realm


def actor(org, name: str) -> Actor:
    if name in ("robot", "plain"):
        return Actor.service(name)
    if name == "cli":
        return Actor.operator()
    user_id, uuid = org.ids[name]
    return Actor.user(user_id, uuid, ip="192.0.2.9", request_id="r-1")


def run(org, who: str, op: Callable[[Context], Any]) -> Any:
    with transaction(org.svc, actor(org, who)) as ctx:
        return op(ctx)


def names(org, who: str, **query: Any) -> list[str]:
    rows, total = run(org, who, lambda ctx: users.search(ctx, UserQuery(**query)))
    got = [u.username for u in rows]
    if query.get("per_page", 25) is None or total <= query.get("per_page", 25):
        assert total == len(got)
    return got


def audit_actions(org) -> list[str]:
    with org.svc.sessions() as db:
        return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def refused(org, who: str, op: Callable[[Context], Any], error=Forbidden) -> str:
    before = snapshot(org.svc)
    with pytest.raises(error) as info:
        run(org, who, op)
    assert snapshot(org.svc) == before
    return str(info.value)


def row(org, name: str) -> User:
    with org.svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == name))
        db.expunge(user)
        return user


ALL = ["admin", "deep", "dev", "helper", "lead", "nobody", "ops", "seller"]


# --- search ------------------------------------------------------------------------------------


def test_search_filters(org):
    assert names(org, "admin") == ALL
    assert names(org, "admin", q="OWENS") == ["ops"]
    assert names(org, "admin", q="1234") == ["ops"]  # the phone
    assert names(org, "admin", q="dora") == ["dev"]
    assert names(org, "admin", q="%") == []  # a LIKE wildcard is a plain character
    assert names(org, "admin", company="globex") == ["ops"]
    acme_id = row(org, "dev").company_id
    assert names(org, "admin", company=str(acme_id)) == ["deep", "dev", "lead", "seller"]
    assert names(org, "admin", company="nope") == []
    assert names(org, "admin", department="acme/Engineering") == ["deep", "dev", "lead"]
    assert names(org, "admin", department="acme/Engineering/Platform") == ["deep"]
    assert names(org, "admin", department="acme/Nope") == []
    assert names(org, "admin", group="staff") == ["dev"]  # subgroups included
    assert names(org, "admin", group="staff/it") == ["dev"]
    assert names(org, "admin", group="stuff") == []
    assert names(org, "admin", company="acme", q="de") == ["deep", "dev"]


def test_employment_and_status(org):
    assert names(org, "admin", employment="future") == ["deep"]
    assert names(org, "admin", employment="past") == ["seller"]
    # current: started (or no start) and not ended; users without dates count.
    assert names(org, "admin", employment="current") == [
        n for n in ALL if n not in ("deep", "seller")
    ]
    assert names(org, "admin", employment="none") == [
        n for n in ALL if n not in ("deep", "seller", "ops")
    ]
    run(org, "admin", lambda ctx: users.lock(ctx, ctx.directory.user_by_username("dev")))
    assert names(org, "admin", status="locked") == ["dev"]
    assert "dev" not in names(org, "admin", status="active")
    with pytest.raises(ValidationError, match="employment"):
        names(org, "admin", employment="someday")
    with pytest.raises(ValidationError, match="status"):
        names(org, "admin", status="zombie")


def test_sorting_and_pages(org):
    assert names(org, "admin", sort="-username") == ALL[::-1]
    # Empty family names last, both directions.
    assert names(org, "admin", sort="family_name")[:4] == ["deep", "seller", "ops", "dev"]
    assert names(org, "admin", sort="-family_name")[:4] == ["dev", "ops", "seller", "deep"]
    rows, total = run(org, "admin", lambda ctx: users.search(ctx, UserQuery(page=2, per_page=3)))
    assert total == len(ALL) and [u.username for u in rows] == ALL[3:6]
    with pytest.raises(ValidationError, match="sort"):
        names(org, "admin", sort="password_hash")


def test_search_is_one_sql_page_not_python(org):
    """The page comes from the database: LIMIT/OFFSET and ORDER BY are in the statement."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(org.svc.engine, "before_cursor_execute", seen)
    try:
        names(org, "admin", q="o", sort="-created_at", per_page=10)
    finally:
        event.remove(org.svc.engine, "before_cursor_execute", seen)
    page = [s for s in statements if "FROM users" in s and "ORDER BY" in s]
    assert page and "LIMIT" in page[-1] and "lower(" in page[-1]


def test_delegated_visibility(org):
    assert names(org, "lead") == ["deep", "dev", "lead"]
    assert names(org, "lead", q="dor") == ["dev"]
    assert names(org, "lead", company="globex") == []
    assert names(org, "robot") == ALL  # service accounts: global grants
    uuid_ops = org.ids["ops"][1]
    with pytest.raises(NotFound):
        run(org, "lead", lambda ctx: users.get(ctx, uuid_ops))
    assert run(org, "lead", lambda ctx: users.get(ctx, org.ids["deep"][1])).username == "deep"
    with pytest.raises(NotFound):
        run(org, "admin", lambda ctx: users.get(ctx, "no-such-uuid"))
    # Holding the permission nowhere: 403, whoever the target.
    with pytest.raises(Forbidden):
        run(org, "nobody", lambda ctx: users.search(ctx, UserQuery()))
    with pytest.raises(Forbidden):
        run(org, "plain", lambda ctx: users.get(ctx, uuid_ops))
    exported = run(
        org, "lead", lambda ctx: [u.username for u in users.iter_search(ctx, UserQuery(), 2)]
    )
    assert exported == ["deep", "dev", "lead"]


def test_iter_search_batches_everything(org):
    got = run(
        org, "admin", lambda ctx: [u.username for u in users.iter_search(ctx, UserQuery(), 3)]
    )
    assert got == ALL


# --- create and update --------------------------------------------------------------------------


def test_create_extended(org):
    def make(ctx):
        return users.create(
            ctx,
            NewUser("newbie", "Newbie@Example.org"),
            password=GOOD,
            email_verified=True,
            must_change_password=True,
            require_mfa=True,
            check_password_policy=True,
        ).uuid

    run(org, "admin", make)
    u = row(org, "newbie")
    assert (u.email, u.email_verified, u.must_change_password, u.require_mfa) == (
        "newbie@example.org",
        True,
        True,
        True,
    )
    assert u.password_hash and u.password_hash != GOOD
    assert audit_actions(org)[-1] == "user.created"
    msg = refused(
        org,
        "admin",
        lambda ctx: users.create(
            ctx, NewUser("weak", "weak@example.org"), password="short", check_password_policy=True
        ),
        ValidationError,
    )
    assert "password" in msg and "min_length" in msg


def test_update_fields_and_audit(org):
    uuid = org.ids["dev"][1]

    def change(ctx):
        user = users.get(ctx, uuid, "users:accounts:update")
        users.update(
            ctx,
            user,
            {
                "email": "Dora@Example.org",
                "given_name": "  Dora ",
                "display_name": "Dora Z.",
                "locale": "pt_BR",
                "timezone": "Europe/Berlin",
                "color": "#AABBCC",
                "start_date": "2029-01-01",
                "active": False,
                "family_name": None,
            },
        )

    run(org, "lead", change)  # delegated, in their branch
    u = row(org, "dev")
    assert (u.email, u.email_verified, u.given_name, u.family_name, u.locale) == (
        "dora@example.org",
        False,
        "Dora",
        None,
        "pt-BR",
    )
    assert (u.timezone, u.color, u.start_date, u.status) == (
        "Europe/Berlin",
        "#aabbcc",
        date(2029, 1, 1),
        "inactive",
    )
    with org.svc.sessions() as db:
        last, ended = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).all()[:2][::-1]
    assert last.action == "user.updated" and last.actor == uuid_of(org, "lead")
    # The deactivation ended the user's sessions and tokens, in a transaction of its own.
    assert ended.action == "session.revoked" and ended.details["reason"] == "deactivated"
    assert last.details["fields"] == [
        "active",
        "color",
        "display_name",
        "email",
        "family_name",
        "locale",
        "start_date",
        "timezone",
    ]
    # Before and after values: personal data, kept in the details an erasure blanks.
    assert last.details["before"]["active"] == "active"
    assert last.details["after"]["email"] == "dora@example.org"
    assert last.details["after"]["start_date"] == "2029-01-01"
    assert set(last.details["before"]) == set(last.details["after"]) == set(last.details["fields"])


def uuid_of(org, name):
    return org.ids[name][1]


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"password_hash": "x"}, ValidationError, "password_hash"),
        ({"status": "active"}, ValidationError, "status"),
        ({"email": "admin@EXAMPLE.org"}, Conflict, "email"),
        ({"username": "ADMIN"}, Conflict, "username"),
        ({"username": None}, ValidationError, "username"),
        ({"email": "not-an-address"}, ValidationError, "email"),
        ({"timezone": "Mars/Olympus"}, ValidationError, "timezone"),
        ({"color": "red"}, ValidationError, "color"),
        ({"end_date": "2020-01-01", "start_date": "2021-01-01"}, Conflict, "end_date"),
        ({"email": None, "email_verified": True}, Conflict, "email_verified"),
        ({"require_mfa": "yes"}, ValidationError, "require_mfa"),
        ({"custom": {"shoe_size": 42}}, ValidationError, "shoe_size"),
    ],
)
def test_update_refusals_change_nothing(org, changes, error, field):
    msg = refused(
        org,
        "admin",
        lambda ctx: users.update(ctx, ctx.directory.user_by_username("dev"), changes),
        error,
    )
    assert field in msg


def test_end_date_before_the_stored_start_is_a_conflict(org):
    # deep starts on 2030-03-01
    msg = refused(
        org,
        "admin",
        _on("deep", lambda c, u: users.update(c, u, {"end_date": date(2030, 2, 1)})),
        Conflict,
    )
    assert "end_date" in msg


def test_create_checks_names_and_dates(org):
    refused(
        org,
        "admin",
        lambda ctx: users.create(ctx, NewUser("x1", "x1@example.org", given_name="a\x00b")),
        ValidationError,
    )
    refused(
        org,
        "admin",
        lambda ctx: users.create(
            ctx,
            NewUser("x2", "x2@example.org", start_date=date(2030, 2, 1), end_date=date(2030, 1, 1)),
        ),
        Conflict,
    )
    refused(
        org,
        "admin",
        lambda ctx: users.create(ctx, NewUser("x3", None), email_verified=True),
        Conflict,
    )


def test_update_custom_fields(org):
    with org.svc.sessions.begin() as db:
        Directory(db).define_field("badge", "Badge", type="integer")
    run(
        org,
        "admin",
        lambda ctx: users.update(
            ctx, ctx.directory.user_by_username("dev"), {"custom": {"badge": "7"}}
        ),
    )
    assert row(org, "dev").custom == {"badge": 7}
    run(
        org,
        "admin",
        lambda ctx: users.update(ctx, ctx.directory.user_by_username("dev"), {"custom": None}),
    )
    assert row(org, "dev").custom == {}


def test_unchanged_update_writes_no_audit_row(org):
    before = audit_actions(org)
    run(
        org,
        "admin",
        lambda ctx: users.update(
            ctx, ctx.directory.user_by_username("dev"), {"given_name": "Dora"}
        ),
    )
    assert audit_actions(org) == before


# --- permissions: each operation, refused without it, one audit row with it -------------------


def _on(name: str, fn: Callable[[Context, User], Any]) -> Callable[[Context], Any]:
    return lambda ctx: fn(ctx, ctx.directory.user_by_username(name))


CASES = [
    (
        "update",
        _on("dev", lambda c, u: users.update(c, u, {"given_name": "X"})),
        "user.updated",
        "helper",
    ),
    ("delete", _on("dev", users.delete), "user.deleted", "helper"),
    ("lock", _on("dev", users.lock), "user.locked", "helper"),
    ("unlock", _on("dev", users.unlock), "user.unlocked", "nobody"),
    (
        "set_password",
        _on("dev", lambda c, u: users.set_password(c, u, GOOD)),
        "user.password_set",
        "nobody",
    ),
    (
        "force_password_change",
        _on("dev", users.force_password_change),
        "user.password_change_forced",
        "nobody",
    ),
]


@pytest.mark.parametrize(("name", "op", "action", "without"), CASES, ids=[c[0] for c in CASES])
def test_operation_permission_and_audit(org, name, op, action, without):
    msg = refused(org, without, op)
    assert "users:" in msg
    before = audit_actions(org)
    run(org, "admin", op)
    # A lock and a new password also end every session and token of the user.
    ended = ["session.revoked"] if name in ("lock", "set_password") else []
    assert audit_actions(org) == [*before, action, *ended]


def test_delegated_changes_stay_in_branch(org):
    for op in (
        lambda c, u: users.update(c, u, {"given_name": "X"}),
        users.lock,
        users.delete,
        users.force_password_change,
    ):
        refused(org, "lead", _on("ops", op))
    run(org, "lead", _on("deep", users.lock))
    assert row(org, "deep").status == "locked"


def test_delete_removes_the_user_and_clears_reports(org):
    with org.svc.sessions.begin() as db:
        db.get(User, org.ids["deep"][0]).manager_id = org.ids["dev"][0]
    run(org, "admin", _on("dev", users.delete))
    assert "dev" not in names(org, "admin")
    assert row(org, "deep").manager_id is None
    msg = refused(org, "admin", _on("admin", users.delete), Conflict)
    assert "own" in msg


def test_lock_and_unlock(org):
    run(org, "admin", _on("dev", users.lock))
    assert row(org, "dev").status == "locked"
    refused(
        org,
        "admin",
        _on("dev", lambda c, u: users.update(c, u, {"active": True})),
        Conflict,
    )
    # A temporary lockout after failed sign-ins is lifted too.
    store = org.svc.store
    store.put(f"lock:u{org.ids['dev'][0]}", {"at": 1}, 600)
    run(org, "helper", _on("dev", users.unlock))
    assert row(org, "dev").status == "active"
    assert store.get(f"lock:u{org.ids['dev'][0]}") is None
    refused(org, "admin", _on("admin", users.lock), Conflict)


def test_set_password_runs_the_policy(org):
    run(org, "helper", _on("dev", lambda c, u: users.set_password(c, u, GOOD, temporary=True)))
    u = row(org, "dev")
    assert org.svc.password_hasher.verify(GOOD, u.password_hash)[0]
    assert u.must_change_password is True
    for bad, code in (("short", "min_length"), ("dev-Is-Great-123", "personal"), (GOOD, "history")):
        msg = refused(
            org,
            "helper",
            _on("dev", lambda c, u, bad=bad: users.set_password(c, u, bad)),
            ValidationError,
        )
        assert code in msg and msg.startswith("password")
    run(org, "helper", _on("dev", lambda c, u: users.set_password(c, u, "Another-Good-Pass-7")))
    u = row(org, "dev")
    assert u.must_change_password is False
    with org.svc.sessions() as db:
        assert db.scalar(select(PasswordHistory.id).where(PasswordHistory.user_id == u.id))


def test_force_password_change(org):
    run(org, "helper", _on("dev", users.force_password_change))
    assert row(org, "dev").must_change_password is True
