"""The console's provisioning pages: the list of targets with queue depth and failures, a
target's status page (settings without the token, last successful push, failed items with
their error), "Retry" (one item) and "Full sync", audited; CSRF refused; a read-only
administrator sees the page without the buttons."""

from __future__ import annotations

import html as html_lib

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from provisioning_kit import OUTBOUND_LOOPBACK, Stub, add_target, drain
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import users as manage_users
from idp.storage.directory import NewUser
from idp.storage.models import AuditEvent
from idp.storage.models_provisioning import ProvisioningQueueItem


@pytest.fixture
def app(make_app, clock):
    return make_app(clock=clock, outbound=OUTBOUND_LOOPBACK)


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


@pytest.fixture
def failed_target(app, stub):
    svc = app.extensions["idp"]
    make_admin(svc)  # before the target: the administrator is not queued
    stub.script["POST /Users"] = [(400, b'{"detail": "department is unknown"}', {})]
    target_id = add_target(svc, stub.url, "very-secret-token", name="crm")
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_users.create(ctx, NewUser("dora", "dora@example.org"))
    assert drain(svc).failed == 1
    return target_id


def _text(response) -> str:
    return html_lib.unescape(response.get_data(as_text=True))


def _items(svc):
    with svc.sessions() as db:
        return [(q.state, q.attempts) for q in db.scalars(select(ProvisioningQueueItem))]


def test_status_retry_and_full_sync(app, stub, failed_target):
    svc = app.extensions["idp"]
    root = signed_in(app)
    listing = _text(root.get("/admin/provisioning"))
    assert "crm" in listing and stub.url in listing and "Failures" in listing
    page_path = f"/admin/provisioning/{failed_target}"
    assert f'href="{page_path}"' in root.get("/admin/provisioning").get_data(as_text=True)
    page = _text(root.get(page_path))
    assert "POST /Users: HTTP 400: department is unknown" in page and "dora" in page
    assert "very-secret-token" not in page and "Set (never shown)" in page

    with svc.sessions() as db:
        item_id = db.scalar(select(ProvisioningQueueItem.id))
    resp = root.post(f"{page_path}/retry", data={"item": str(item_id)})
    assert resp.status_code == 400  # no CSRF token: refused
    assert _items(svc) == [("failed", 1)]
    csrf = console_csrf(root, page_path)
    resp = root.post(f"{page_path}/retry", data={"item": str(item_id), "csrf_token": csrf},
                     follow_redirects=True)
    assert "1 item queued again." in _text(resp)
    assert _items(svc) == [("pending", 0)]
    assert drain(svc).pushed == 1
    page = _text(root.get(page_path))
    assert "Nothing failed." in page

    resp = root.post(f"{page_path}/full-sync", data={"csrf_token": csrf}, follow_redirects=True)
    assert "2 objects queued." in _text(resp)  # the administrator and dora
    with svc.sessions() as db:
        actions = db.scalars(
            select(AuditEvent.action).where(AuditEvent.action.startswith("provisioning."))
            .order_by(AuditEvent.id)
        ).all()
    assert actions == [
        "provisioning.target_created", "provisioning.retried", "provisioning.full_sync",
    ]


def test_read_only_sees_no_buttons_and_cannot_retry(app, failed_target):
    svc = app.extensions["idp"]
    make_admin(svc, "reader", role="Read-only")
    reader = signed_in(app, "reader")
    before = _items(svc)  # the dora item failed, the reader's own pending
    page_path = f"/admin/provisioning/{failed_target}"
    page = reader.get(page_path)
    assert page.status_code == 200
    assert "Full sync" not in _text(page) and "department is unknown" in _text(page)
    csrf = console_csrf(reader, "/account/")
    resp = reader.post(f"{page_path}/retry", data={"csrf_token": csrf})
    assert resp.status_code == 403
    assert _items(svc) == before
