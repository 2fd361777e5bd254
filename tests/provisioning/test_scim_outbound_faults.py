"""Outbound SCIM provisioning when the downstream misbehaves (RFC 7644 §3.12): a stub SCIM
server on a loopback port scripts the faults; time moves on the frozen clock.

Down or 5xx: the item stays queued and is retried with backoff, then pushed. 429 / 503 wait
exactly their Retry-After. 400 and an answer that is not JSON fail the item at once, with the
reason. Two pushers draining at once push each item once. A target URL the outbound policy
refuses is never stored."""

from __future__ import annotations

import json
import threading

import pytest
from provisioning_kit import OUTBOUND_LOOPBACK, Stub, add_target, drain
from sqlalchemy import func, select

from idp.errors import ValidationError
from idp.manage import Actor, transaction
from idp.manage import users as manage_users
from idp.provisioning import targets
from idp.provisioning.worker import DrainReport, Pusher, backoff, claim
from idp.storage.directory import NewUser
from idp.storage.models_provisioning import (
    ProvisioningObject,
    ProvisioningQueueItem,
    ProvisioningTarget,
)

BASE = 30


@pytest.fixture
def app(make_app, clock):
    return make_app(
        clock=clock,
        outbound=OUTBOUND_LOOPBACK,
        provisioning={"retry_base_seconds": BASE, "retry_max_seconds": 600, "max_attempts": 4},
    )


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def _new_user(svc, username="ann"):
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.create(ctx, NewUser(username, f"{username}@example.org"))


def _item(svc):
    with svc.sessions() as db:
        return db.scalars(select(ProvisioningQueueItem)).one()


def _due_in(svc, item) -> float:
    return (item.next_attempt_at - svc.clock.utcnow()).total_seconds()


def test_a_downstream_that_is_down_is_retried_with_backoff_then_succeeds(app, stub, clock):
    svc = app.extensions["idp"]
    url = stub.url
    stub.close()  # nothing listens on the port now
    add_target(svc, url, "token")
    _new_user(svc)
    report = drain(svc)
    assert (report.pushed, report.retried) == (0, 1)
    item = _item(svc)
    assert (item.state, item.attempts, item.last_error) == ("pending", 1, "cannot connect")
    assert BASE / 2 <= _due_in(svc, item) <= BASE
    clock.advance(_due_in(svc, item) - 1)
    assert drain(svc).retried == 0  # not due yet: one second short
    clock.advance(2)
    assert drain(svc).retried == 1
    item = _item(svc)
    assert item.attempts == 2 and BASE <= _due_in(svc, item) <= 2 * BASE

    # The downstream is back on the same port.
    back = Stub(int(url.rsplit(":", 1)[1].split("/")[0]))
    try:
        clock.advance(2 * BASE + 1)
        assert drain(svc).pushed == 1
        assert [b["userName"] for b in back.posts()] == ["ann"]
        with svc.sessions() as db:
            assert db.scalar(select(func.count()).select_from(ProvisioningQueueItem)) == 0
    finally:
        back.close()


def test_a_500_is_retried(app, stub, clock):
    svc = app.extensions["idp"]
    stub.script["POST /Users"] = [(500, b'{"detail": "boom"}', {})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    assert drain(svc).retried == 1
    item = _item(svc)
    assert item.state == "pending" and item.last_error == "POST /Users: HTTP 500: boom"
    clock.advance(BASE + 1)
    assert drain(svc).pushed == 1
    assert len(stub.posts()) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(app, stub, clock, status):
    svc = app.extensions["idp"]
    stub.script["POST /Users"] = [(status, b"", {"Retry-After": "120"})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    assert drain(svc).retried == 1
    assert _due_in(svc, _item(svc)) == 120
    clock.advance(119)
    assert drain(svc).pushed == 0
    clock.advance(2)
    assert drain(svc).pushed == 1


def test_a_400_fails_at_once_with_its_error(app, stub):
    svc = app.extensions["idp"]
    error = {"status": "400", "scimType": "invalidValue", "detail": "userName is not allowed"}
    stub.script["POST /Users"] = [(400, json.dumps(error).encode(), {})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    report = drain(svc)
    assert (report.failed, report.retried) == (1, 0)
    item = _item(svc)
    assert item.state == "failed" and item.attempts == 1
    assert item.last_error == "POST /Users: HTTP 400: invalidValue - userName is not allowed"
    assert drain(svc).failed == 0  # a failed item is not pushed again by itself

    with transaction(svc, Actor.operator("test")) as ctx:
        status = targets.status(ctx, item.target_id)
    assert status["queue"] == {"pending": 0, "failed": 1}
    assert status["failed"][0]["name"] == "ann"
    assert status["failed"][0]["error"] == item.last_error
    with transaction(svc, Actor.operator("test")) as ctx:
        assert targets.retry(ctx, item.target_id, item.id) == 1
    assert drain(svc).pushed == 1


def test_garbage_json_fails_the_item_without_a_crash(app, stub):
    svc = app.extensions["idp"]
    stub.script["POST /Users"] = [(201, b"<html>not json", {})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    assert drain(svc).failed == 1
    assert _item(svc).last_error == "POST /Users: the answer is not SCIM JSON"


def test_retries_give_up_after_max_attempts(app, stub, clock):
    svc = app.extensions["idp"]
    stub.script["POST /Users"] = [(502, b"", {})] * 4
    add_target(svc, stub.url, "token")
    _new_user(svc)
    for _ in range(4):
        drain(svc)
        clock.advance(601)
    item = _item(svc)
    assert (item.state, item.attempts) == ("failed", 4)


def test_backoff_doubles_up_to_the_cap_with_jitter(app):
    svc = app.extensions["idp"]
    for attempts, full in ((1, 30), (2, 60), (3, 120), (6, 600), (20, 600)):
        for _ in range(20):
            assert full / 2 <= backoff(svc, attempts) <= full


def test_two_pushers_at_once_push_each_item_once(app, stub):
    svc = app.extensions["idp"]
    add_target(svc, stub.url, "token")
    names = [f"user{n}" for n in range(12)]
    for name in names:
        _new_user(svc, name)
    start = threading.Barrier(2)
    reports = []

    def run():
        start.wait()
        reports.append(drain(svc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.pushed for r in reports) == len(names)
    assert sorted(b["userName"] for b in stub.posts()) == sorted(names)


def test_a_change_while_pushing_is_pushed_again(app, stub):
    svc = app.extensions["idp"]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    [item_id] = claim(svc, "w1", 10)
    with transaction(svc, Actor.operator("test")) as ctx:
        user = manage_users.get(ctx, _item(svc).object_id)
        manage_users.update(ctx, user, {"display_name": "New"})
    item = _item(svc)
    assert (item.state, item.again) == ("running", True)
    assert drain(svc).pushed == 0  # claimed: nobody else pushes it
    Pusher(svc).push(item_id, "w1", DrainReport())  # the first pusher ends its push
    item = _item(svc)
    assert (item.state, item.again, item.claimed_by) == ("pending", False, "w1")
    assert drain(svc).pushed == 1  # the change made meanwhile
    assert [m for m, _p, _b in stub.calls if m in ("POST", "PATCH")] == ["POST", "PATCH"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://scim.example.org/scim/v2", "only https URLs are fetched"),
        ("https://127.0.0.1/scim/v2", "the host resolves to a loopback address"),
        ("https://10.1.2.3/scim/v2", "the host resolves to a private address"),
        ("https://169.254.169.254/latest", "the host resolves to a link-local address"),
    ],
)
def test_a_refused_url_is_never_stored(make_app, clock, url, reason):
    app = make_app(clock=clock)  # the default outbound policy: https, public addresses only
    svc = app.extensions["idp"]
    with pytest.raises(ValidationError) as err:
        add_target(svc, url, "token")
    assert str(err.value) == f"the base URL is refused: {reason}"
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(ProvisioningTarget)) == 0


def test_a_fault_of_ours_is_logged_and_retried_not_a_crash(app, stub, monkeypatch):
    svc = app.extensions["idp"]
    add_target(svc, stub.url, "token")
    _new_user(svc)

    def broken(*_args, **_kw):
        raise RuntimeError("bug")

    monkeypatch.setattr("idp.provisioning.worker.user_payload", broken)
    assert drain(svc).retried == 1
    item = _item(svc)
    assert (item.state, item.last_error) == ("pending", "an internal error (see the server log)")
    assert stub.posts() == []


def test_a_409_on_create_adopts_the_user_found_then(app, stub):
    svc = app.extensions["idp"]
    found = {"totalResults": 1, "Resources": [{"id": "theirs-7", "userName": "ann"}]}
    stub.script["GET /Users"] = [
        (200, b'{"totalResults": 0, "Resources": []}', {}),
        (200, json.dumps(found).encode(), {}),
    ]
    stub.script["POST /Users"] = [(409, b'{"scimType": "uniqueness"}', {})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    assert drain(svc).pushed == 1
    assert [(m, p.split("?")[0]) for m, p, _b in stub.calls] == [
        ("GET", "/scim/Users"), ("POST", "/scim/Users"), ("GET", "/scim/Users"),
        ("GET", "/scim/ServiceProviderConfig"), ("PATCH", "/scim/Users/theirs-7"),
    ]
    with svc.sessions() as db:
        assert db.scalar(select(ProvisioningObject.remote_id)) == "theirs-7"


def test_a_target_without_patch_gets_put(app, stub):
    svc = app.extensions["idp"]
    stub.script["GET /ServiceProviderConfig"] = [(200, b'{"patch": {"supported": false}}', {})]
    add_target(svc, stub.url, "token")
    _new_user(svc)
    drain(svc)
    with transaction(svc, Actor.operator("test")) as ctx:
        user = manage_users.get(ctx, _remote_user_uuid(svc))
        manage_users.update(ctx, user, {"display_name": "Ann E."})
    assert drain(svc).pushed == 1
    method, path, body = stub.calls[-1]
    assert (method, path) == ("PUT", "/scim/Users/remote-1")
    assert body["id"] == "remote-1" and body["displayName"] == "Ann E."


def _remote_user_uuid(svc) -> str:
    with svc.sessions() as db:
        return db.scalar(select(ProvisioningObject.object_id))
