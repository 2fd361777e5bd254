"""Times on the account pages, in the person's time zone (their profile's ``timezone``, else
UTC) and the page's language (Babel): ``when(dt)`` -> "7 Dec 2026, 10:15:00", ``ago(dt)`` ->
"3 months ago". Stored times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import dates as babel_dates
from flask_babel import format_timedelta, get_locale

from .current import svc


def zone_of(user: Any) -> Any:
    """The person's time zone (profile), else UTC."""
    try:
        return ZoneInfo(user.timezone) if user.timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def formatters(user: Any) -> dict[str, Any]:
    """Template helpers: ``when``, ``ago`` and ``zone`` (the zone's name, so a page can say
    which one it uses)."""
    zone = zone_of(user)
    locale = get_locale()

    def when(moment: datetime | None, form: str = "medium") -> str:
        moment = _aware(moment)
        if moment is None:
            return ""
        return babel_dates.format_datetime(moment, form, tzinfo=zone, locale=locale)

    def ago(moment: datetime | None) -> str:
        moment = _aware(moment)
        if moment is None:
            return ""
        now = _aware(svc().clock.utcnow())
        return format_timedelta(moment - now, add_direction=True)

    return {"when": when, "ago": ago, "zone": user.timezone or "UTC"}
