"""``POST /api/v1/users/batch``: one action over many users (``idp.manage.users_batch``; the
console's batch bar does the same; ``docs/api.md``, "Batch actions")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, RootModel

from ...manage import users_batch
from ..password import send_reset_link
from .common import ApiModel, Strict
from .framework import Call, Reply, operation

# A value with no control characters that is not blank (a blank role would be refused by data).
_VALUE = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=_VALUE)]
UserIds = Annotated[
    list[UserId],
    Field(
        min_length=1,
        max_length=users_batch.MAX_USERS,
        description="The users' ids (uuids); repeats count once",
    ),
]
RoleName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=_VALUE, description="The global role's name")
]
GroupPath = Annotated[
    str,
    Field(min_length=1, max_length=1000, pattern=_VALUE, description="The group's path (staff/it)"),
]


# One body shape per action (a oneOf with a discriminator in the OpenAPI document), so what
# an action needs is part of the schema: assign_role carries a role, group actions a group.
class PlainBatchIn(Strict):
    action: Literal["password_reset", "deactivate", "end_sessions"]
    user_ids: UserIds


class RoleBatchIn(Strict):
    action: Literal["assign_role"]
    user_ids: UserIds
    role: RoleName


class GroupBatchIn(Strict):
    action: Literal["add_to_group", "remove_from_group"]
    user_ids: UserIds
    group: GroupPath


class BatchIn(
    RootModel[Annotated[PlainBatchIn | RoleBatchIn | GroupBatchIn, Field(discriminator="action")]]
):
    """What to do for every user: ``action`` and what that action needs."""


class BatchUserOut(ApiModel):
    id: str = Field(description="The user id as sent")
    username: str | None = Field(description="null when the user was not found")
    ok: bool
    error: str | None = Field(description="Why it failed for this user")


class BatchOut(ApiModel):
    action: str
    done: int
    failed: int
    results: list[BatchUserOut] = Field(description="One per distinct user id, in order")


@operation(
    "POST",
    "/users/batch",
    tag="users",
    summary="Do one action for many users",
    body=BatchIn,
    response=BatchOut,
    errors=(404,),
    description=(
        "Each user is handled like the single-user operation (the permission over that user: "
        "`users:password:reset`, `users:roles:assign`, `users:groups:assign`, "
        "`users:accounts:update`, `users:sessions:revoke`), in a transaction of their own: "
        "a user who fails (not found or out of the caller's reach, not allowed, a conflict) "
        "is reported with the reason and the others are done. `password_reset` mails each "
        "user a reset link. Refused as a whole: an unknown role or group (404), a caller "
        "holding the permission nowhere (403), a body that does not fit its action's shape (400)."
    ),
)
def batch(call: Call) -> Reply:
    body = call.body.root
    req = users_batch.request(
        body.action, body.user_ids, getattr(body, "role", None), getattr(body, "group", None)
    )
    result = users_batch.run(
        call.svc,
        call.actor,
        req,
        sessions=call.svc.sso_sessions,
        send_reset=send_reset_link,
    )
    return Reply(
        body=BatchOut(
            action=result.action,
            done=result.done,
            failed=result.failed,
            results=[BatchUserOut(**vars(r)) for r in result.results],
        )
    )
