"""Field shapes the directory areas share (groups, roles, the organization, custom fields):
ids, names, translations, permissions, and the reply to a creation.

The constraints are written so the published schema says exactly what the server accepts: a
value the schema allows is never refused for its form (only for a conflict), and one it does
not allow is refused, not quietly repaired (these strings are not stripped of white space).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StringConstraints

from ...errors import Conflict, NotFound, ValidationError
from ...manage.org import ID_MAX
from .common import QueryDateTime
from .framework import PREFIX, Reply

# Names: 1-200 characters, no control characters, no surrounding white space.
_EDGE = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_INNER = r"\x00-\x1f\x7f-\x9f"
NAME_PATTERN = rf"^[^{_EDGE}](?:[^{_INNER}]{{0,198}}[^{_EDGE}])?$"
GROUP_NAME_PATTERN = rf"^[^/{_EDGE}](?:[^/{_INNER}]{{0,198}}[^/{_EDGE}])?$"
LANGUAGE_TAG_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$"
# idp.core.rbac.GRANT_RE: module:feature:action, "*" for a whole part, shorter forms allowed.
_PART = r"[a-z][a-z0-9_-]*"
_ACTION = r"[A-Za-z0-9](?:[A-Za-z0-9_.:/-]*[A-Za-z0-9_./-])?"
PERMISSION_PATTERN = rf"^(?:\*|{_PART})(?::(?:\*|{_PART}))?(?::(?:\*|{_ACTION}))?$"

AS_SENT = StringConstraints(strip_whitespace=False)
# Free text in queries and references: no NUL (PostgreSQL refuses it in text).
Text = Annotated[str, AS_SENT, Field(pattern=r"^[^\x00]*$")]


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: 5 or 5.0, never true or "5" (which pydantic would turn into one).
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


# In a JSON body an integer is a JSON number; in a query string it is text. (The bounds come
# before the validator so the published schema carries them.)
def json_int(ge: int, le: int) -> Any:
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]


Id = json_int(1, ID_MAX)
QueryId = Annotated[int, Field(ge=1, le=ID_MAX)]
Flag = StrictBool
Name = Annotated[str, AS_SENT, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
GroupName = Annotated[str, AS_SENT, Field(min_length=1, max_length=200, pattern=GROUP_NAME_PATTERN)]
Description = Annotated[str, AS_SENT, Field(max_length=2000, pattern=r"^[^\x00]*$")]
Permission = Annotated[
    str,
    AS_SENT,
    Field(
        min_length=1,
        max_length=200,
        pattern=PERMISSION_PATTERN,
        examples=["users:accounts:read", "groups:*", "oauth:scope:admin"],
    ),
]
Names = Annotated[
    dict[Annotated[str, AS_SENT, Field(pattern=LANGUAGE_TAG_PATTERN)], Name],
    Field(
        max_length=50,
        description='The name in other languages by language tag: {"de": "Vertrieb"}',
        json_schema_extra={"additionalProperties": False},
    ),
]


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("an RFC 3339 date-time such as 2030-01-31T12:00:00Z")
    return value


DateTimeIn = Annotated[QueryDateTime, BeforeValidator(_text)]
"""A date-time in a JSON body: RFC 3339 text with an offset (not a number), taken in UTC; one
past what UTC can hold is the end of time."""


@contextmanager
def data_refusal() -> Iterator[None]:
    """Around an operation on a request that matches its schema: what the directory still
    refuses depends on the data (a parent in another company, an expiry already past, a
    pattern Python reads otherwise), so it is 409, not 400 (docs/api.md, "Errors")."""
    try:
        yield
    except ValidationError as exc:
        raise Conflict(str(exc)) from None


def path_id(value: str, what: str) -> int:
    """An integer id from a path segment; anything else names nothing (404)."""
    if value.isascii() and value.isdigit() and 0 < int(value) <= ID_MAX:
        return int(value)
    raise NotFound(f"no {what} {value!r}")


def created(path: str, body: BaseModel) -> Reply:
    """201 with the new resource and where it lives."""
    return Reply(status=201, body=body, headers={"Location": PREFIX + path})


def given(model: BaseModel) -> dict[str, Any]:
    """The fields a merge patch sent (absent ones stay as they are; null clears)."""
    return {name: getattr(model, name) for name in model.model_fields_set}
