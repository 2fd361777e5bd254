"""What the directory screens (groups, roles, permission groups, access, organisation) share:
reading form and query values, and turning ``idp.manage``'s typed errors into pages.

A screen runs its change in :func:`attempt`: Forbidden becomes the 403 page, NotFound the 404
page, and a Conflict or ValidationError comes back as the message to show beside the field
(the transaction has rolled back, so nothing changed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from flask import abort, request

from ...errors import Conflict, Forbidden, NotFound, ValidationError

T = TypeVar("T")


@contextmanager
def refusals() -> Iterator[None]:
    """Forbidden -> 403 page, NotFound -> 404 page (reads and changes alike)."""
    try:
        yield
    except Forbidden as exc:
        abort(403, description=str(exc))
    except NotFound as exc:
        abort(404, description=str(exc))


def attempt(fn: Callable[[], T]) -> tuple[T | None, str | None]:
    """(result, None) when the change went through, (None, message) when it was refused as a
    conflict or invalid input; 403 / 404 pages for Forbidden / NotFound."""
    with refusals():
        try:
            return fn(), None
        except (Conflict, ValidationError) as exc:
            return None, str(exc)


def text(name: str, limit: int = 2000) -> str:
    """A stripped form field ('' when absent), cut to a sane length."""
    return (request.form.get(name) or "").strip()[:limit]


def optional(name: str) -> str | None:
    return text(name) or None


def permission_lines(raw: str) -> list[str]:
    """Permissions typed one per line (or separated by commas / spaces)."""
    return [p for p in raw.replace(",", " ").split() if p]


class BadTime(ValueError):
    pass


def until(name: str) -> datetime | None:
    """A datetime-local form value, read as UTC (the form says so); None when empty."""
    raw = text(name, 40)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadTime(raw) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
