"""Helpers for the admin API's directory areas (groups, roles, organization, custom fields):
callers with given roles, the whole database as data to prove a refusal changed nothing, and
the audit rows an operation wrote."""

from __future__ import annotations

from typing import Any

from api_kit import api, service_token, user_token
from login_kit import GOOD, make_user
from sqlalchemy import inspect, select, text

from idp.errors import NotFound
from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, User

PROBLEM = "application/problem+json"

# A cache, not data: permission checks may fill it.
_NOT_DATA = {"kv_store"}


def snapshot(svc) -> dict[str, list]:
    """Every row of every table (but the short-lived store), once the mail queued so far has
    gone out (a queued mail is a row of mail_outbox until it is delivered)."""
    assert svc.mail_queue.wait_idle(15), "mail still queued after 15 s"
    with svc.engine.connect() as conn:
        tables = sorted(set(inspect(conn).get_table_names()) - _NOT_DATA)
        # Table names come from the database's own catalogue, not from input.
        return {
            t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"'))))  # noqa: S608
            for t in tables
        }


def audit_actions(svc, after_id: int = 0) -> list[str]:
    with svc.sessions() as db:
        return list(
            db.scalars(
                select(AuditEvent.action).where(AuditEvent.id > after_id).order_by(AuditEvent.id)
            )
        )


def last_audit_id(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0


def admin_user(
    app,
    username: str,
    roles: list[str],
    *,
    scope_company: str | None = None,
    global_roles: tuple[str, ...] = (),
) -> str:
    """A user holding ``roles`` (everywhere, or only in the company ``scope_company``),
    ``global_roles`` everywhere, and a role that lets them obtain the admin scope; their
    access token from the code flow."""
    svc = app.extensions["idp"]
    make_user(svc, username, GOOD)
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        user = d.user_by_username(username)
        try:
            api_role = d.role_by_name("API access")
        except NotFound:
            api_role = d.create_role("API access", ["oauth:scope:admin"])
        d.assign_role(user, api_role)
        company = d.company(scope_company) if scope_company else None
        for name in roles:
            d.assign_role(user, d.role_by_name(name), scope_company=company)
        for name in global_roles:
            d.assign_role(user, d.role_by_name(name))
    return user_token(app, username, GOOD)


def user_uuid(svc, username: str) -> str:
    with svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == username))


class Caller:
    """One token against the test client: ``caller.get("/groups")`` and so on, with paths
    relative to /api/v1."""

    def __init__(self, client, token: str) -> None:
        self.client, self.token = client, token

    def __call__(self, method: str, path: str, **kw: Any):
        return api(self.client, method, "/api/v1" + path, self.token, **kw)

    def get(self, path: str, **kw: Any):
        return self("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self("POST", path, json=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any):
        return self("PUT", path, json=body if body is not None else {}, **kw)

    def patch(self, path: str, body: Any, etag: str | None = None, **kw: Any):
        headers = {"If-Match": etag} if etag else {}
        return self("PATCH", path, json=body, headers=headers, **kw)

    def delete(self, path: str, etag: str | None = None, **kw: Any):
        headers = {"If-Match": etag} if etag else {}
        return self("DELETE", path, headers=headers, **kw)


def service_caller(app, roles: tuple[str, ...] = ("Administrator",)) -> Caller:
    return Caller(app.test_client(), service_token(app, roles=roles))


def refused(app, status: int, request) -> Any:
    """``request()`` is answered with ``status`` as problem+json and no row changes."""
    svc = app.extensions["idp"]
    before = snapshot(svc)
    resp = request()
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == PROBLEM
    assert snapshot(svc) == before
    return resp
