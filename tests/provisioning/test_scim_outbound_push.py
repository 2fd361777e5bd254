"""Outbound SCIM provisioning against a real downstream: a second instance of this IdP served
on a loopback port, its /scim/v2 the target (RFC 7644 §3.3 create, §3.4.2 lookup by
``userName eq``, §3.5.2 PATCH, §3.6 DELETE), its state read back with scim2-client. Every
change is made through the management services; the queue is drained with the pusher."""

from __future__ import annotations

import secrets

import pytest
from provisioning_kit import OUTBOUND_LOOPBACK, Downstream, add_target, drain, served_idp
from sqlalchemy import func, select

from idp.manage import Actor, transaction
from idp.manage import groups as manage_groups
from idp.manage import users as manage_users
from idp.storage.directory import NewUser
from idp.storage.models_provisioning import ProvisioningObject, ProvisioningQueueItem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    with served_idp(tmp_path_factory.mktemp("downstream")) as (app, url, token):
        yield Downstream(app, url, token)


@pytest.fixture
def app(make_app, clock):
    return make_app(clock=clock, outbound=OUTBOUND_LOOPBACK)


def _name() -> str:
    return "p-" + secrets.token_hex(4)


def _create_user(svc, username: str, **fields):
    with transaction(svc, Actor.operator("test")) as ctx:
        user = manage_users.create(
            ctx, NewUser(username, f"{username}@example.org", given_name="Ann"), fields=fields
        )
        return user.uuid


def _user(ctx, uuid):
    return manage_users.get(ctx, uuid)


def _queue(svc):
    with svc.sessions() as db:
        return db.scalars(select(ProvisioningQueueItem).order_by(ProvisioningQueueItem.id)).all()


def test_user_lifecycle_reaches_the_downstream(app, downstream):
    svc = app.extensions["idp"]
    add_target(svc, downstream.url, downstream.token)
    name = _name()
    uuid = _create_user(svc, name, display_name="Ann Example")
    assert [(q.kind, q.object_id, q.op) for q in _queue(svc)] == [("user", uuid, "create")]

    report = drain(svc)
    assert (report.pushed, report.failed) == (1, 0), report.errors
    remote = downstream.user(name)
    assert remote is not None and remote.active is True
    assert remote.external_id == uuid and remote.display_name == "Ann Example"
    assert remote.emails[0].value == f"{name}@example.org"
    assert _queue(svc) == []

    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.update(ctx, _user(ctx, uuid), {"given_name": "Anna", "family_name": "Ex"})
    drain(svc)
    remote = downstream.user(name)
    assert (remote.name.given_name, remote.name.family_name) == ("Anna", "Ex")

    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.lock(ctx, _user(ctx, uuid))
    assert _queue(svc)[0].op == "deactivate"
    drain(svc)
    assert downstream.user(name).active is False

    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.delete(ctx, _user(ctx, uuid))
    assert [q.op for q in _queue(svc)] == ["delete"]
    drain(svc)
    assert downstream.user(name) is None
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(ProvisioningObject)) == 0


def test_a_pusher_thread_pushes_without_being_asked(make_app, downstream):
    """What each `idp serve` worker runs with [provisioning] serve_drain (idp.serving)."""
    import threading
    import time

    from idp.provisioning.worker import start_in_thread

    app = make_app(outbound=OUTBOUND_LOOPBACK, provisioning={"interval_seconds": 1})
    svc = app.extensions["idp"]
    add_target(svc, downstream.url, downstream.token)
    stop = threading.Event()
    thread = start_in_thread(svc, lambda: not stop.is_set())
    try:
        name = _name()
        _create_user(svc, name)
        deadline = time.monotonic() + 30
        while downstream.user(name) is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert downstream.user(name) is not None and _queue(svc) == []
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and thread.name == "idp-provisioning"


def test_a_sign_in_stamp_queues_nothing_and_updates_coalesce(app, downstream):
    svc = app.extensions["idp"]
    add_target(svc, downstream.url, downstream.token)
    uuid = _create_user(svc, _name())
    drain(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        user = _user(ctx, uuid)
        user.last_login_at = svc.clock.utcnow()
    assert _queue(svc) == []
    for n in range(3):
        with transaction(svc, Actor.operator("test")) as ctx:
            manage_users.update(ctx, _user(ctx, uuid), {"display_name": f"Name {n}"})
    assert [(q.object_id, q.op) for q in _queue(svc)] == [(uuid, "update")]


def test_group_scope_and_memberships(app, downstream):
    svc = app.extensions["idp"]
    team = _name()
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_groups.create(ctx, team)
    add_target(svc, downstream.url, downstream.token, all_users=False, groups=[team],
               push_groups=True)
    inside, outside = _name(), _name()
    uuid_in = _create_user(svc, inside)
    _create_user(svc, outside)
    with transaction(svc, Actor.operator("test")) as ctx:
        group = manage_groups.find(ctx, ctx.db.scalar(_group_id(team)))
        manage_groups.add_member(ctx, group, _user(ctx, uuid_in))
    report = drain(svc)
    assert report.failed == 0, report.errors
    assert downstream.user(outside) is None
    remote_user = downstream.user(inside)
    remote_group = downstream.group(team)
    assert remote_user is not None and remote_group is not None
    assert [m.value for m in remote_group.members or []] == [remote_user.id]

    with transaction(svc, Actor.operator("test")) as ctx:
        group = manage_groups.find(ctx, ctx.db.scalar(_group_id(team)))
        manage_groups.remove_member(ctx, group, _user(ctx, uuid_in))
    drain(svc)
    assert not downstream.group(team).members
    # Out of the target's scope: deactivated there, not deleted.
    assert downstream.user(inside).active is False


def _group_id(path):
    from idp.storage.models import Group

    return select(Group.id).where(Group.path == path)


def test_an_existing_downstream_user_is_adopted(app, downstream):
    svc = app.extensions["idp"]
    name = _name()
    existing = downstream.client.create(downstream.User(user_name=name))
    add_target(svc, downstream.url, downstream.token)
    _create_user(svc, name)
    report = drain(svc)
    assert (report.pushed, report.failed) == (1, 0), report.errors
    remote = downstream.user(name)
    assert remote.id == existing.id and remote.name.given_name == "Ann"
    with svc.sessions() as db:
        assert db.scalar(select(ProvisioningObject.remote_id)) == existing.id


def test_a_bad_token_fails_the_item_with_a_clear_error(app, downstream):
    svc = app.extensions["idp"]
    add_target(svc, downstream.url, "not-a-token")
    name = _name()
    _create_user(svc, name)
    report = drain(svc)
    assert report.failed == 1
    [item] = _queue(svc)
    assert item.state == "failed" and "HTTP 401, the target refused the token" in item.last_error
    assert "not-a-token" not in item.last_error
    assert downstream.user(name) is None
