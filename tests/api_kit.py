"""Callers of the admin API and SCIM in tests: tokens from the IdP's own token endpoint.

``service_token`` registers a confidential client whose service account holds ``roles`` and
runs the client_credentials grant; ``user_token`` signs a user in on the hosted login page and
runs the authorization code flow (PKCE) for a first-party client, so the token acts as that
user with their permissions and delegation scopes."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import secret_watch
from login_kit import login
from oidc_flow import code_flow_token

__all__ = ["api", "code_flow_token", "login", "service_token", "user_token"]


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def service_token(
    app,
    roles: tuple[str, ...] = ("Administrator",),
    scope: str = "admin",
    client_id: str | None = None,
) -> str:
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    svc = app.extensions["idp"]
    client_id = client_id or "svc-" + secrets.token_hex(4)
    with transaction(svc, Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx,
            client_id,
            name=client_id,
            grant_types=["client_credentials"],
            scope="admin scim",
            roles=list(roles),
        )
    secret_watch.register(secret)
    resp = app.test_client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=_basic(client_id, secret),
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert scope in resp.json["scope"].split(), resp.json
    secret_watch.register(resp.json["access_token"])
    return resp.json["access_token"]


def user_token(app, username: str, password: str, scope: str = "openid admin") -> str:
    """A user's access token from the code flow (the user must hold oauth:scope:admin to get
    the admin scope; the token then acts with their permissions)."""
    return code_flow_token(app, username, password, scope)


def api(client, method: str, path: str, token: str, **kw: Any):
    headers = dict(kw.pop("headers", {}) or {})
    headers["Authorization"] = f"Bearer {token}"
    return client.open(path, method=method, headers=headers, **kw)
