"""The page arguments of every console list: ``page`` and ``per_page`` from the query string,
read the same way everywhere (a bad value falls back to the default, never an error)."""

from __future__ import annotations

from flask import request

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PER_PAGE = 25
MAX_PAGE = 100_000


def whole_number(value: object) -> int | None:
    """A positive whole number written in ASCII digits, else None."""
    raw = str(value or "").strip()
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= 2**31 - 1:
        return int(raw)
    return None


def paging(page_arg: str = "page") -> tuple[int, int]:
    """(page, per_page) from the query string, clamped to what the pager offers."""
    page = min(whole_number(request.args.get(page_arg)) or 1, MAX_PAGE)
    per_page = whole_number(request.args.get("per_page")) or DEFAULT_PER_PAGE
    return page, per_page if per_page in PAGE_SIZES else DEFAULT_PER_PAGE
