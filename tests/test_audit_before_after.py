"""Admin changes record their values before and after (issue 19), in the shape of user.updated
and client.updated (``fields`` / ``before`` / ``after``): SAML service provider settings and
enabling, and role assignments with their delegation scope (assigned, re-assigned with a new
expiry, removed) through the REST API."""

from __future__ import annotations

from datetime import timedelta

from api_kit import api, service_token
from ip_rules_kit import sp_metadata
from login_kit import make_user
from sqlalchemy import select

from idp.manage import Actor, transaction
from idp.manage import org as manage_org
from idp.manage import service_providers as sps
from idp.storage import audit as chain
from idp.storage.models import AuditEvent, User

SP = "https://sp.example.org"


def _last(svc, action: str) -> AuditEvent:
    with svc.sessions() as db:
        row = db.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc())
        ).first()
        db.expunge(row)
        return row


def test_sp_changes_record_before_and_after(svc):
    with transaction(svc, Actor.operator("test")) as ctx:
        sps.add(ctx, sp_metadata(SP), settings={"sign_assertion": True})
    with transaction(svc, Actor.operator("test")) as ctx:
        sps.update_settings(ctx, SP, {"sign_assertion": False, "allow_sha1": True})
    row = _last(svc, "saml.sp_updated")
    assert row.target == SP and row.actor == "test"
    assert row.details["fields"] == ["allow_sha1", "sign_assertion"]
    assert row.details["before"] == {"allow_sha1": None, "sign_assertion": True}
    assert row.details["after"] == {"allow_sha1": True, "sign_assertion": False}
    # Replacing the settings as a whole: what went is after = null.
    with transaction(svc, Actor.operator("test")) as ctx:
        sps.set_settings(ctx, SP, {"sign_response": True})
    row = _last(svc, "saml.sp_updated")
    assert row.details["replaced"] is True
    assert row.details["before"] == {
        "allow_sha1": True,
        "sign_assertion": False,
        "sign_response": None,
    }
    assert row.details["after"] == {
        "allow_sha1": None,
        "sign_assertion": None,
        "sign_response": True,
    }
    with transaction(svc, Actor.operator("test")) as ctx:
        sps.set_enabled(ctx, SP, False)
    row = _last(svc, "saml.sp_disabled")
    assert (row.details["before"], row.details["after"]) == ({"enabled": True}, {"enabled": False})
    assert chain.verify_chain(svc.engine).ok


def test_scoped_role_assignments_record_before_and_after(app, clock):
    svc = app.extensions["idp"]
    make_user(svc, "dana")
    with svc.sessions() as db:
        uuid = db.scalar(select(User.uuid).where(User.username == "dana"))
    with transaction(svc, Actor.operator("test")) as ctx:
        company = manage_org.create_company(ctx, "acme", "Acme")
        company_id = company.id
    token = service_token(app)
    client = app.test_client()
    path = f"/api/v1/users/{uuid}/roles"
    body = {"role": "Helpdesk", "scope_company": "acme"}
    assert api(client, "POST", path, token, json=body).status_code == 200
    row = _last(svc, "user.role_assigned")
    scoped = {"scope_company_id": company_id, "scope_department_id": None}
    assert row.target == uuid and row.details["role"] == "Helpdesk"
    assert row.details["before"] == []
    assert row.details["after"] == [dict(scoped, expires_at=None)]
    # Assigned again with an end: the same assignment, its expiry before and after.
    ends = (clock.utcnow() + timedelta(days=7)).replace(microsecond=0)
    again = api(client, "POST", path, token, json=dict(body, expires_at=ends.isoformat()))
    assert again.status_code == 200
    row = _last(svc, "user.role_assigned")
    assert row.details["before"] == [dict(scoped, expires_at=None)]
    assert row.details["after"] == [dict(scoped, expires_at=ends.isoformat())]
    gone = api(client, "DELETE", f"{path}/Helpdesk", token)
    assert gone.status_code in (200, 204)
    row = _last(svc, "user.role_removed")
    assert row.details["before"] == [dict(scoped, expires_at=ends.isoformat())]
    assert row.details["after"] == [] and row.details["removed"] == 1
