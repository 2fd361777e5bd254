"""Concurrent-session limits of roles and groups (docs/sessions.md):
``GET`` / ``PUT /roles/{id}/session-limit`` and ``/groups/{id}/session-limit``."""

from __future__ import annotations

from pydantic import Field, field_validator

from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...manage import session_limits as manage_limits
from .common import ApiModel, Strict
from .framework import Call, Reply, operation
from .shapes import path_id


class SessionLimitOut(ApiModel):
    max_sessions: int | None = Field(
        description="Most SSO sessions each holder / member may have at once; null = none"
    )


class SessionLimitIn(Strict):
    max_sessions: int | None = Field(
        ge=1, le=manage_limits.MAX, description="1 to 10000, or null to remove the limit"
    )

    @field_validator("max_sessions", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        # A number (2 or 2.0, both JSON integers), never "2" or true.
        if isinstance(value, bool | str):
            raise ValueError("a whole number, or null")
        return value


@operation(
    "GET",
    "/roles/{role_id}/session-limit",
    tag="roles",
    summary="Read a role's concurrent-session limit",
    response=SessionLimitOut,
)
def read_role_limit(call: Call, role_id: str) -> Reply:
    """``roles:roles:read``."""
    with call.transaction() as ctx:
        role = manage_roles.get(ctx, path_id(role_id, "role"))
        value = manage_limits.of_role(ctx, role)
    return Reply(body=SessionLimitOut(max_sessions=value))


@operation(
    "PUT",
    "/roles/{role_id}/session-limit",
    tag="roles",
    summary="Set a role's concurrent-session limit",
    body=SessionLimitIn,
    response=SessionLimitOut,
)
def set_role_limit(call: Call, role_id: str) -> Reply:
    """``roles:roles:update``. The smallest limit that applies to a user wins
    ([session] max_per_user, their roles', their groups')."""
    body: SessionLimitIn = call.body
    with call.transaction() as ctx:
        role = manage_roles.get(ctx, path_id(role_id, "role"))
        manage_limits.set_for_role(ctx, role, body.max_sessions)
    return Reply(body=SessionLimitOut(max_sessions=body.max_sessions))


@operation(
    "GET",
    "/groups/{group_id}/session-limit",
    tag="groups",
    summary="Read a group's concurrent-session limit",
    response=SessionLimitOut,
)
def read_group_limit(call: Call, group_id: str) -> Reply:
    """``groups:groups:read``."""
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        value = manage_limits.of_group(ctx, group)
    return Reply(body=SessionLimitOut(max_sessions=value))


@operation(
    "PUT",
    "/groups/{group_id}/session-limit",
    tag="groups",
    summary="Set a group's concurrent-session limit",
    body=SessionLimitIn,
    response=SessionLimitOut,
)
def set_group_limit(call: Call, group_id: str) -> Reply:
    """``groups:groups:update``. Applies to the members of the group and of groups inside it."""
    body: SessionLimitIn = call.body
    with call.transaction() as ctx:
        group = manage_groups.get(ctx, path_id(group_id, "group"))
        manage_limits.set_for_group(ctx, group, body.max_sessions)
    return Reply(body=SessionLimitOut(max_sessions=body.max_sessions))
