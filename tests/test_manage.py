"""The management layer (idp.manage): every operation checks the actor's permission before it
changes anything, and records what it changed in one audit row of the same transaction.

Actors: the local operator (every permission), an administrator user (their RBAC grants,
delegation scopes included) and a client's service account (its service roles). A refused
operation raises Forbidden and leaves every table as it was; an allowed one makes its change
and writes exactly one audit row naming the actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from identity_support import sqlite_realm_fixture  # noqa: F401
from sqlalchemy import func, inspect, select, text

from idp.errors import Forbidden
from idp.manage import (
    Actor,
    Context,
    claim_rules,
    clients,
    groups,
    org,
    roles,
    service_providers,
    sessions,
    transaction,
    users,
)
from idp.sso.sessions import SignoutListeners, UserSignout
from idp.storage.directory import Directory, NewUser
from idp.storage.models import AuditEvent, User
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.rbac import AccessDenied, service_account_grants

# A cache, not data: permission checks may fill it.
_NOT_DATA = {"kv_store"}


def snapshot(svc) -> dict[str, list]:
    with svc.engine.connect() as conn:
        tables = sorted(set(inspect(conn).get_table_names()) - _NOT_DATA)
        # Table names come from the database's own catalogue, not from input.
        return {
            t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"'))))  # noqa: S608
            for t in tables
        }


def audit_rows(svc) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))


@pytest.fixture
def realm(sqlite_realm):
    """Users: ``admin`` (Administrator), ``manager`` (User Manager), ``helper`` (Helpdesk),
    ``nobody`` (no role), ``lead`` (User Manager only in acme/Engineering), ``dev`` (in
    acme/Engineering), ``seller`` (in acme/Sales), ``gone`` (Administrator, inactive); clients
    ``robot`` (service role User Manager) and ``plain`` (none)."""
    svc = sqlite_realm.svc
    ids: dict[str, Any] = {}
    with svc.sessions.begin() as db:
        d = Directory(db, sqlite_realm.clock)
        acme = d.create_company("acme", "Acme")
        eng = d.create_department(acme, "Engineering")
        sales = d.create_department(acme, "Sales")
        for name, role in (
            ("admin", "Administrator"),
            ("manager", "User Manager"),
            ("helper", "Helpdesk"),
            ("nobody", None),
            ("lead", None),
            ("dev", None),
            ("seller", None),
            ("gone", "Administrator"),
        ):
            u = d.create_user(NewUser(name, f"{name}@example.org"), roles=[role] if role else [])
            ids[name] = (u.id, u.uuid)
        d.place_user(db.get(User, ids["dev"][0]), department=eng)
        d.place_user(db.get(User, ids["lead"][0]), department=eng)
        d.place_user(db.get(User, ids["seller"][0]), department=sales)
        d.assign_role(
            db.get(User, ids["lead"][0]), d.role_by_name("User Manager"), scope_department=eng
        )
        db.get(User, ids["gone"][0]).status = "inactive"
        d.create_group("staff")
    with transaction(svc, Actor.operator()) as ctx:
        clients.create(
            ctx,
            "robot",
            grant_types=["client_credentials"],
            roles=["User Manager"],
        )
        clients.create(ctx, "plain", grant_types=["client_credentials"])
    sqlite_realm.ids = ids
    return sqlite_realm


def as_user(realm, name: str) -> Actor:
    user_id, uuid = realm.ids[name]
    return Actor.user(user_id, uuid, ip="192.0.2.7", request_id="req-1")


def call(realm, actor: Actor, op: Callable[[Context], Any]) -> Any:
    with transaction(realm.svc, actor) as ctx:
        return op(ctx)


def refused(realm, actor: Actor, op: Callable[[Context], Any]) -> str:
    before = snapshot(realm.svc)
    with pytest.raises(Forbidden) as info:
        call(realm, actor, op)
    assert snapshot(realm.svc) == before
    return str(info.value)


def allowed(realm, actor: Actor, op: Callable[[Context], Any], action: str) -> Any:
    before = len(audit_rows(realm.svc))
    result = call(realm, actor, op)
    rows = audit_rows(realm.svc)
    assert len(rows) == before + 1
    assert rows[-1].action == action and rows[-1].actor == actor.name
    return result


def _user(ctx: Context, name: str) -> User:
    return ctx.directory.user_by_username(name)


# Each case: (operation, audit action, an actor name without the permission, one with it).
CASES: list[tuple[str, Callable[[Context], Any], str, str, str]] = [
    (
        "users.create",
        lambda ctx: users.create(ctx, NewUser("newbie", "newbie@example.org")),
        "user.created",
        "helper",
        "manager",
    ),
    (
        "users.assign_role",
        lambda ctx: users.assign_role(
            ctx, _user(ctx, "dev"), ctx.directory.role_by_name("Auditor")
        ),
        "user.role_assigned",
        "helper",
        "admin",
    ),
    (
        "users.remove_role",
        lambda ctx: users.remove_role(
            ctx, _user(ctx, "helper"), ctx.directory.role_by_name("Helpdesk")
        ),
        "user.role_removed",
        "nobody",
        "manager",
    ),
    (
        "groups.create",
        lambda ctx: groups.create(ctx, "it", parent="staff"),
        "group.created",
        "helper",
        "manager",
    ),
    (
        "groups.add_member",
        lambda ctx: groups.add_member(ctx, ctx.directory.group_by_path("staff"), _user(ctx, "dev")),
        "group.member_added",
        "helper",
        "manager",
    ),
    (
        "roles.create",
        lambda ctx: roles.create(ctx, "Reader", ["users:accounts:read"]),
        "role.created",
        "manager",
        "admin",
    ),
    (
        "roles.add_permissions",
        lambda ctx: roles.add_permissions(
            ctx, ctx.directory.role_by_name("Helpdesk"), ["users:accounts:update"]
        ),
        "role.permissions_added",
        "manager",
        "admin",
    ),
    (
        "roles.delete",
        lambda ctx: roles.delete(ctx, ctx.directory.role_by_name("Auditor")),
        "role.deleted",
        "manager",
        "admin",
    ),
    (
        "org.create_company",
        lambda ctx: org.create_company(ctx, "globex", "Globex"),
        "org.company_created",
        "manager",
        "admin",
    ),
    (
        "org.place_user",
        lambda ctx: org.place_user(
            ctx, _user(ctx, "nobody"), company=ctx.directory.company("acme")
        ),
        "user.placed",
        "helper",
        "manager",
    ),
    (
        "clients.create",
        lambda ctx: clients.create(ctx, "app", redirect_uris=["https://app.example/cb"]),
        "client.created",
        "manager",
        "admin",
    ),
    (
        "clients.update",
        lambda ctx: clients.update(ctx, "plain", name="Plain app"),
        "client.updated",
        "manager",
        "admin",
    ),
    (
        "clients.new_initial_access_token",
        lambda ctx: clients.new_initial_access_token(ctx, 3600),
        "client.initial_access_token_created",
        "manager",
        "admin",
    ),
    (
        "claim_rules.add",
        lambda ctx: claim_rules.add(
            ctx, {"target": "department", "source": {"type": "department_path"}}
        ),
        "claims.rule_added",
        "manager",
        "admin",
    ),
]


@pytest.mark.parametrize(
    ("op", "action", "without", "with_"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_without_the_permission_allowed_with_it(realm, op, action, without, with_):
    assert "is required" in refused(realm, as_user(realm, without), op)
    allowed(realm, as_user(realm, with_), op, action)


def test_the_audit_row_says_who_from_where(realm):
    actor = as_user(realm, "manager")
    allowed(realm, actor, lambda ctx: groups.create(ctx, "audited"), "group.created")
    row = audit_rows(realm.svc)[-1]
    assert (row.actor, row.target, row.ip, row.request_id) == (
        realm.ids["manager"][1],
        "audited",
        "192.0.2.7",
        "req-1",
    )


def test_the_operator_may_do_everything(realm):
    operator = Actor.operator()
    created = allowed(
        realm,
        operator,
        lambda ctx: users.create(
            ctx,
            NewUser("ops", "ops@example.org"),
            password="S3cret-enough!",
            roles=["Administrator"],
        ),
        "user.created",
    )
    assert created.password_hash and created.password_hash != "S3cret-enough!"
    assert audit_rows(realm.svc)[-1].actor == "cli"
    assert "S3cret" not in repr(audit_rows(realm.svc)[-1].details)


def test_an_inactive_administrator_is_refused(realm):
    refused(realm, as_user(realm, "gone"), lambda ctx: groups.create(ctx, "x"))


def test_nobody_hands_out_more_than_they_hold(realm):
    """A User Manager may assign users' roles, but not a role carrying permissions they lack
    (Administrator: '*'), nor create a role with them, nor give them to a group."""
    manager = as_user(realm, "manager")
    msg = refused(
        realm,
        manager,
        lambda ctx: users.assign_role(
            ctx, _user(ctx, "dev"), ctx.directory.role_by_name("Administrator")
        ),
    )
    assert "you do not hold" in msg
    refused(
        realm,
        manager,
        lambda ctx: users.create(ctx, NewUser("boss", "boss@example.org"), roles=["Administrator"]),
    )
    # A role holding what they hold is fine.
    allowed(
        realm,
        manager,
        lambda ctx: users.assign_role(
            ctx, _user(ctx, "dev"), ctx.directory.role_by_name("Helpdesk")
        ),
        "user.role_assigned",
    )


def test_a_group_with_roles_is_as_strong_as_its_roles(realm):
    with transaction(realm.svc, Actor.operator()) as ctx:
        root = groups.create(ctx, "admins")
        groups.assign_role(ctx, root, ctx.directory.role_by_name("Administrator"))
        groups.create(ctx, "ops", parent="admins")
    manager = as_user(realm, "manager")
    # Membership of a subgroup inherits the parent's Administrator role: refused.
    refused(
        realm,
        manager,
        lambda ctx: groups.add_member(
            ctx, ctx.directory.group_by_path("admins/ops"), _user(ctx, "dev")
        ),
    )
    refused(
        realm,
        manager,
        lambda ctx: groups.move(
            ctx, ctx.directory.group_by_path("staff"), ctx.directory.group_by_path("admins")
        ),
    )


def test_a_delegated_admin_acts_inside_their_department_only(realm):
    lead = as_user(realm, "lead")
    helpdesk = "Helpdesk"
    # Given only within the department the lead holds it over: for every department it would
    # be more than the lead holds (tests/attacks/test_attack_admin.py, privilege escalation).
    refused(
        realm,
        lead,
        lambda ctx: users.assign_role(ctx, _user(ctx, "dev"), ctx.directory.role_by_name(helpdesk)),
    )

    def in_the_department(ctx):
        return users.assign_role(
            ctx,
            _user(ctx, "dev"),
            ctx.directory.role_by_name(helpdesk),
            scope_department=_user(ctx, "dev").department,
        )

    # The lead's grants cover Helpdesk's permissions there, but not the role itself: a delegated
    # administrator gives only roles they hold (tests/test_delegation.py).
    message = refused(realm, lead, in_the_department)
    assert "you do not hold the role Helpdesk" in message
    call(
        realm,
        Actor.operator(),
        lambda ctx: users.assign_role(
            ctx,
            _user(ctx, "lead"),
            ctx.directory.role_by_name(helpdesk),
            scope_department=_user(ctx, "dev").department,
        ),
    )
    allowed(
        realm,
        lead,
        lambda ctx: users.assign_role(
            ctx,
            _user(ctx, "dev"),
            ctx.directory.role_by_name(helpdesk),
            scope_department=_user(ctx, "dev").department,
        ),
        "user.role_assigned",
    )
    refused(
        realm,
        lead,
        lambda ctx: users.assign_role(
            ctx, _user(ctx, "seller"), ctx.directory.role_by_name(helpdesk)
        ),
    )
    # Without a target only global grants count: a scoped admin creates no users.
    refused(realm, lead, lambda ctx: users.create(ctx, NewUser("x1", "x1@example.org")))
    # Placing someone in the department moves them into the scope; out of it is refused,
    # because the user must be in scope both before and after.
    refused(
        realm,
        lead,
        lambda ctx: org.place_user(
            ctx, _user(ctx, "dev"), department=ctx.directory.department("acme/Sales")
        ),
    )


def test_a_service_account_acts_with_its_service_roles(realm):
    robot, plain = Actor.service("robot"), Actor.service("plain")
    with realm.svc.sessions() as db:
        assert "users:*:*" in service_account_grants(db, "robot")
    refused(realm, plain, lambda ctx: groups.create(ctx, "bots"))
    allowed(realm, robot, lambda ctx: groups.create(ctx, "bots"), "group.created")
    assert audit_rows(realm.svc)[-1].actor == "client:robot"
    refused(realm, robot, lambda ctx: roles.create(ctx, "Bot", ["*"]))


def test_service_providers(realm):
    from idp.saml.demo import DEMO_SP_ENTITY_ID, seed_demo_sp

    with realm.svc.sessions.begin() as db:
        seed_demo_sp(db, realm.svc)
    manager, admin = as_user(realm, "manager"), as_user(realm, "admin")
    refused(realm, manager, service_providers.list_all)
    assert [s.entity_id for s in call(realm, admin, service_providers.list_all)] == [
        DEMO_SP_ENTITY_ID
    ]

    def update(ctx):
        return service_providers.update_settings(ctx, DEMO_SP_ENTITY_ID, {"sign_assertion": True})

    refused(realm, manager, update)
    row = allowed(realm, admin, update, "saml.sp_updated")
    assert row.settings["sign_assertion"] is True

    def remove(ctx):
        return service_providers.remove(ctx, DEMO_SP_ENTITY_ID)

    refused(realm, manager, remove)
    allowed(realm, admin, remove, "saml.sp_removed")
    assert call(realm, admin, service_providers.list_all) == []


class FakeSessions:
    """The SSO session store as the running app has it: live session ids."""

    def __init__(self, live: set[str]) -> None:
        self.live = set(live)
        self.ended: list[str] = []
        # What outlives a session (refresh tokens) is revoked by these listeners.
        self.signout_listeners = SignoutListeners()
        self.signouts: list[UserSignout] = []
        self.signout_listeners.add(self.signouts.append)

    def peek(self, sid):
        return {"sid": sid} if sid in self.live else None

    def destroy(self, sid, propagate=True):
        if sid not in self.live:
            return None
        self.live.discard(sid)
        self.ended.append(sid)
        return {"sid": sid}


def test_sessions_list_and_log_out_everywhere(realm):
    user_id = realm.ids["dev"][0]
    with realm.svc.sessions.begin() as db:
        for sid in ("s-live-1", "s-live-2", "s-dead"):
            db.add(SsoSessionIndex(sid=sid, user_id=user_id, amr="pwd"))
    store = FakeSessions({"s-live-1", "s-live-2"})
    nobody, helper = as_user(realm, "nobody"), as_user(realm, "helper")

    refused(realm, nobody, lambda ctx: sessions.list_for_user(ctx, _user(ctx, "dev"), store))
    listed = call(realm, helper, lambda ctx: sessions.list_for_user(ctx, _user(ctx, "dev"), store))
    # Shown by the index's ids (hashes of the cookies, idp.sso.sessions), the ended one pruned.
    assert sorted(s.id for s in listed) == ["s-live-1", "s-live-2"]

    refused(realm, nobody, lambda ctx: sessions.end_all(ctx, _user(ctx, "dev"), store))
    assert store.ended == []
    ended = allowed(
        realm,
        helper,
        lambda ctx: sessions.end_all(ctx, _user(ctx, "dev"), store),
        "session.revoked",
    )
    assert ended == 2 and sorted(store.ended) == ["s-live-1", "s-live-2"]
    assert [(e.user_id, e.offline) for e in store.signouts] == [(user_id, True)]
    with realm.svc.sessions() as db:
        left = db.scalar(select(func.count()).select_from(SsoSessionIndex))
    assert left == 0


def test_client_updates_reach_the_client_cache_after_commit(realm):
    from idp.oidc.clients import GENERATION_KEY

    before = realm.svc.store.get(GENERATION_KEY) or 0
    with pytest.raises(Forbidden), transaction(realm.svc, as_user(realm, "manager")) as ctx:
        clients.update(ctx, "plain", name="nope")
    assert (realm.svc.store.get(GENERATION_KEY) or 0) == before
    call(realm, Actor.operator(), lambda ctx: clients.update(ctx, "plain", name="Plain"))
    assert realm.svc.store.get(GENERATION_KEY) == before + 1


def test_storage_access_denied_is_a_forbidden():
    assert issubclass(AccessDenied, Forbidden)


def test_reads_check_their_permission_and_write_no_audit_row(realm):
    """Reads check their permission too, and write no audit row."""
    before = len(audit_rows(realm.svc))
    refused(realm, as_user(realm, "nobody"), lambda ctx: users.permissions(ctx, _user(ctx, "dev")))
    grants = call(
        realm, as_user(realm, "admin"), lambda ctx: users.permissions(ctx, _user(ctx, "manager"))
    )
    assert "users:*:*" in grants.everywhere
    assert len(audit_rows(realm.svc)) == before
