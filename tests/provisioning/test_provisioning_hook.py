"""The one queueing hook (idp.storage.provisioning) sees changes made anywhere, not only through
idp.manage: a user created over inbound SCIM, a GDPR erasure (a bulk delete, told only to the
targets that hold the user); group creation, rename and deletion. Disabled targets and targets
whose scope does not cover the object queue nothing. On PostgreSQL the queue's upsert and the
claim work the same, and two pushers at once push each item once."""

from __future__ import annotations

import threading

import pytest
from api_kit import service_token
from provisioning_kit import OUTBOUND_LOOPBACK, Stub, add_target, drain
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import gdpr as manage_gdpr
from idp.manage import groups as manage_groups
from idp.manage import users as manage_users
from idp.provisioning import targets
from idp.storage.directory import NewUser
from idp.storage.models import Group
from idp.storage.models_provisioning import ProvisioningObject, ProvisioningQueueItem


def _queue(svc) -> list[tuple[str, str, str]]:
    with svc.sessions() as db:
        rows = db.scalars(select(ProvisioningQueueItem).order_by(ProvisioningQueueItem.id))
        return [(q.kind, q.object_id, q.op) for q in rows]


def _clear(svc) -> None:
    with svc.sessions.begin() as db:
        db.execute(ProvisioningQueueItem.__table__.delete())


@pytest.fixture
def target(svc):
    return add_target(svc, "https://127.0.0.1:9/scim/v2", "token", push_groups=True)


@pytest.fixture
def app(make_app, clock):
    # The loopback target is only stored, never reached.
    return make_app(clock=clock, outbound={"allow_private_addresses": True})


def test_inbound_scim_creates_are_queued(app, svc, target):
    token = service_token(app, scope="scim")
    resp = app.test_client().post(
        "/scim/v2/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "erin"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 201
    assert ("user", resp.json["id"], "create") in _queue(svc)


def test_gdpr_erasure_queues_a_delete_for_targets_that_hold_the_user(svc, target):
    with transaction(svc, Actor.operator("test")) as ctx:
        held = manage_users.create(ctx, NewUser("fred", "fred@example.org")).uuid
        never = manage_users.create(ctx, NewUser("gus", "gus@example.org")).uuid
    _clear(svc)
    with svc.sessions.begin() as db:
        db.add(ProvisioningObject(target_id=target, kind="user", object_id=held, remote_id="r1"))
    for uuid in (held, never):
        with transaction(svc, Actor.operator("test")) as ctx:
            manage_gdpr.erase(ctx, manage_users.get(ctx, uuid))
    assert _queue(svc) == [("user", held, "delete")]


def test_group_create_rename_delete(svc, target):
    with transaction(svc, Actor.operator("test")) as ctx:
        group = manage_groups.create(ctx, "sales")
        gid = str(group.id)
    assert _queue(svc) == [("group", gid, "create")]
    _clear(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_groups.rename(ctx, ctx.db.get(Group, int(gid)), "sales-emea")
    assert _queue(svc) == [("group", gid, "update")]
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_groups.delete(ctx, ctx.db.get(Group, int(gid)))
    assert _queue(svc) == [("group", gid, "delete")]


def test_disabled_or_uncovering_targets_queue_nothing(svc, target):
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_groups.create(ctx, "staff")
    _clear(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        targets.update(ctx, target, targets.TargetInput(all_users=False, groups=["staff"]))
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.create(ctx, NewUser("gina", "gina@example.org"))
    assert _queue(svc) == []  # not a member of staff
    with transaction(svc, Actor.operator("test")) as ctx:
        targets.update(ctx, target, targets.TargetInput(all_users=True, enabled=False))
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.create(ctx, NewUser("hal", "hal@example.org"))
    assert _queue(svc) == []


@pytest.mark.postgres
def test_queue_and_claims_on_postgresql(make_app, clock, pg_url):
    app = make_app(clock=clock, database_url=pg_url, outbound=OUTBOUND_LOOPBACK)
    svc = app.extensions["idp"]
    stub = Stub()
    try:
        add_target(svc, stub.url, "token")
        names = [f"pg{n}" for n in range(10)]
        for name in names:
            with transaction(svc, Actor.operator("test")) as ctx:
                user = manage_users.create(ctx, NewUser(name, f"{name}@example.org"))
                manage_users.update(ctx, user, {"display_name": name.upper()})
        assert len(_queue(svc)) == len(names)  # create + update coalesced per user
        start = threading.Barrier(3)
        reports = []

        def run():
            start.wait()
            reports.append(drain(svc))

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(r.pushed for r in reports) == len(names)
        assert sorted(b["userName"] for b in stub.posts()) == names
        assert _queue(svc) == []
    finally:
        stub.close()
