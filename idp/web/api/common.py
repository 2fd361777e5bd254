"""Shapes every part of the API shares: pagination, the list envelope, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

T = TypeVar("T")


class ApiModel(BaseModel):
    """Every model of the API: its validator and serializer are built on first use, not when
    the module is imported (``defer_build``). A worker imports all of the API's ~250 models at
    start, and most of them never serve a request in that worker's life."""

    model_config = ConfigDict(defer_build=True)


class Strict(ApiModel):
    """A request body: unknown fields are refused (no mass assignment of ids, hashes, roles)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PageQuery(Strict):
    page: int = Field(1, ge=1, le=1_000_000, description="1-based page number")
    per_page: Literal[10, 25, 50, 100] = Field(25, description="items per page")

    @field_validator("per_page", mode="before")
    @classmethod
    def _from_query_string(cls, value: object) -> object:
        # A query string is text; the choice is among numbers.
        digits = isinstance(value, str) and value.isascii() and value.isdigit()
        return int(value) if digits else value


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})"
)


def _rfc3339_text(value: object) -> object:
    # pydantic would also take a number of seconds since 1970; the API takes RFC 3339 only.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("an RFC 3339 date-time such as 2030-01-31T12:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    # A time past what UTC can hold (year 9999 with a negative offset) is the end of time.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.max if value.year > 1 else datetime.min).replace(tzinfo=UTC)


QueryDateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]
"""A date-time in a query string: RFC 3339 text with an offset, taken in UTC."""


class Page(ApiModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int


def drop_null_defaults(schema: dict[str, Any]) -> None:
    """A member that may be left out but not sent as null publishes no ``"default": null``
    (its type does not allow null)."""
    for prop in schema.get("properties", {}).values():
        nullable = any(alt.get("type") == "null" for alt in prop.get("anyOf", ()))
        if "default" in prop and prop["default"] is None and not nullable:
            del prop["default"]


# For models whose published constraints (lengths, patterns) must judge the value as sent:
# ``Strict`` strips surrounding whitespace first, so a value longer than its maxLength, or not
# matching its pattern, could be accepted once stripped.
EXACT_QUERY = ConfigDict(
    extra="forbid",
    str_strip_whitespace=False,
    json_schema_extra=drop_null_defaults,
    defer_build=True,
)


def anchored(body: str) -> str:
    """A whole-value pattern that means the same to JSON Schema (ECMA 262) and to Python's
    ``re.search`` (whose ``$`` also matches before a final newline)."""
    return rf"^(?:{body})$(?!\n)"


def matching(pattern: str) -> Any:
    """Annotated metadata: publish ``pattern`` and enforce it as JSON Schema reads it."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.search(value):
            raise ValueError("has characters or a form that is not accepted here")
        return value

    return (Field(json_schema_extra={"pattern": pattern}), AfterValidator(check))


UUID = anchored(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
