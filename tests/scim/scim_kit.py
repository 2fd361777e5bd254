"""Callers of /scim/v2 in tests: a service account's token with the scope ``scim``, and a
client that sends SCIM JSON with it."""

from __future__ import annotations

import json
from typing import Any

from api_kit import service_token

SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_token(app, roles: tuple[str, ...] = ("Administrator",)) -> str:
    return service_token(app, roles=roles, scope="scim")


class Scim:
    """``Scim(app, token).get("/Users")``: requests under /scim/v2 with the token."""

    def __init__(self, app, token: str) -> None:
        self.client = app.test_client()
        self.token = token

    def call(self, method: str, path: str, body: Any = None, **kw: Any):
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        if body is not None:
            kw["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
            headers.setdefault("Content-Type", SCIM)
        return self.client.open("/scim/v2" + path, method=method, headers=headers, **kw)

    def get(self, path: str, **kw: Any):
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any):
        return self.call("POST", path, body, **kw)

    def put(self, path: str, body: Any, **kw: Any):
        return self.call("PUT", path, body, **kw)

    def patch(self, path: str, body: Any, **kw: Any):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any):
        return self.call("DELETE", path, **kw)


def patch_op(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def new_user(username: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": username, **extra}
