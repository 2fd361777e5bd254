"""Shapes every part of the API shares: pagination, the list envelope, timestamps."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")


class Strict(BaseModel):
    """A request body: unknown fields are refused (no mass assignment of ids, hashes, roles)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PageQuery(Strict):
    page: int = Field(1, ge=1, le=1_000_000, description="1-based page number")
    per_page: Literal[10, 25, 50, 100] = Field(25, description="items per page")

    @field_validator("per_page", mode="before")
    @classmethod
    def _from_query_string(cls, value: object) -> object:
        # A query string is text; the choice is among numbers.
        return int(value) if isinstance(value, str) and value.isdigit() else value


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int
