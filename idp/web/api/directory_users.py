"""``/api/v1/users/from-directory`` and ``/api/v1/users/{user_id}/directory-refresh``: local
users linked to the directory (LDAP) (``idp.manage.directory_users``, as the console's "wrap an
existing directory account" and "refresh from directory", and ``idp ldap refresh``).

A well-formed request that the directory's state refuses answers 404 (no single directory
account of that name) or 409 (no directory configured, a local account in the way, a user that
is not a directory user); 503 when no directory server can be reached.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...errors import ValidationError
from ...manage import directory_users, users
from .common import EXACT_QUERY, ApiModel, Strict
from .framework import PREFIX, ApiProblem, Call, Reply, operation
from .users import UserOut, render


class FromDirectory(Strict):
    model_config = EXACT_QUERY

    username: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="the account's login name in the directory (found with `[ldap] user_filter`)"
    )


class DirectoryRefreshOut(ApiModel):
    username: str
    change: str = Field(description="created, updated, unchanged, deactivated or conflict")
    status: str = Field(description="the user's status afterwards")
    groups: list[str] = Field(description="the directory groups read")
    message: str | None = None


def _unavailable() -> ApiProblem:
    return ApiProblem(
        503,
        "Directory unavailable",
        "The directory cannot be reached. Please try again later.",
        kind="directory-unavailable",
        headers={"Retry-After": "30"},
    )


@operation(
    "POST",
    "/users/from-directory",
    tag="users",
    summary="Add the local user of a directory account",
    body=FromDirectory,
    response=UserOut,
    status=201,
    errors=(409, 503),
    description="`users:accounts:create`. Finds the directory (LDAP) account by its login "
    "name and creates the local user linked to it now, as its first sign-in would (an "
    "existing one is read again). 404 when the directory has no single account of that name; "
    "409 when no directory is configured or a local account is in the way; 503 when the "
    "directory cannot be reached.",
)
def add_user_from_directory(call: Call) -> Reply:
    from ...backends.ldap import DirectoryUnavailable  # ldap3: on first use, not at start

    body: FromDirectory = call.body
    try:
        added = directory_users.add(call.svc, call.actor, body.username)
    except DirectoryUnavailable:
        raise _unavailable() from None
    except ValidationError as exc:
        raise ApiProblem(409, "Conflict", str(exc), kind="conflict") from None
    with call.transaction() as ctx:
        out = render(ctx, users.get(ctx, added.uuid))
    return Reply(status=201, body=out, headers={"Location": f"{PREFIX}/users/{out.id}"})


@operation(
    "POST",
    "/users/{user_id}/directory-refresh",
    tag="users",
    summary="Read a directory user again",
    response=DirectoryRefreshOut,
    errors=(409, 503),
    description="`users:accounts:update` over the user. Re-reads the entry (found again by DN, "
    "else by login name), its attributes and groups; a user gone from the directory becomes "
    "inactive. 409 for a user that is not a directory user or when no directory is "
    "configured; 503 when the directory cannot be reached.",
)
def refresh_directory_user(call: Call, user_id: str) -> Reply:
    from ...backends.ldap import DirectoryUnavailable  # ldap3: on first use, not at start

    try:
        result = directory_users.refresh_user(call.svc, call.actor, user_id)
    except DirectoryUnavailable:
        raise _unavailable() from None
    except ValidationError as exc:
        raise ApiProblem(409, "Conflict", str(exc), kind="conflict") from None
    return Reply(body=DirectoryRefreshOut(**result))
