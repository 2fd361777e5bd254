"""What every command module shares: the failure type, building the services, output, and
parsing of dates and durations. Imports nothing else of ``idp.cli`` (no cycles)."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ..errors import ValidationError
from ..services import Services, build_services, load_effective_settings

if TYPE_CHECKING:  # the management layer is imported by the commands that use it (not serve)
    from ..manage import Context


class CliFailure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def services() -> Services:
    svc = build_services(load_effective_settings())
    svc.check_database()
    return svc


def require_migrated(svc: Services) -> None:
    from ..storage.migrate import current_revision, head_revision

    if current_revision(svc.engine) != head_revision():
        raise CliFailure(
            "the database is not initialised or not up to date: run `idp init` "
            "(or `idp db upgrade`)"
        )


def ready() -> Services:
    """The services over a database that is reachable and migrated."""
    svc = services()
    require_migrated(svc)
    return svc


def with_logout(svc: Services) -> Services:
    """Have the sessions a command ends reach the relying parties as the web app's do (it
    registers the same listeners in create_app): OIDC back-channel logout, the refresh tokens
    of those sessions, SAML logout by SOAP or on the browser's next page. Pair with
    :func:`drain`."""
    # Imported here: pysaml2 warns on import, before main() has silenced warnings, and every
    # command promises one line on stderr when it fails.
    from ..oidc import logout as oidc_logout
    from ..oidc.fetch import poster
    from ..saml import logout as saml_logout

    oidc_logout.listen(svc)
    saml_logout.listen(svc, poster(svc))
    return svc


def drain(svc: Services) -> None:
    """Wait for the queued back-channel and SOAP logouts before the process ends (each is
    bounded by its timeout and retries), so none is lost with the exiting process."""
    for pool in (svc.oidc_backchannel_pool, svc.saml_backchannel_pool):
        if pool is not None:
            pool.shutdown(wait=True)


def as_operator(svc: Services) -> AbstractContextManager[Context]:
    """A management transaction acting as the local operator (every permission: they own the
    machine and the database)."""
    from ..manage import Actor, transaction

    return transaction(svc, Actor.operator("cli"))


def out(as_json: bool, obj: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(obj) if as_json else text)


def emit(as_json: bool, obj: dict[str, Any], text: str) -> None:
    """``out`` for objects with dates and other values JSON has no type for."""
    click.echo(json.dumps(obj, default=str) if as_json else text)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliFailure(f"{name} must be a date YYYY-MM-DD, not {value!r}", 2) from None


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str | None, now: datetime) -> datetime | None:
    """``30d`` / ``12h`` / ``90m`` from now, or an ISO 8601 time (UTC when no offset)."""
    if not value:
        return None
    m = _DURATION.match(value.strip())
    if m:
        return now + timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"--expires must be a duration like 30d / 12h or an ISO time, not {value!r}"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_names(items: tuple[str, ...]) -> dict[str, str]:
    """``--name-in LANG=NAME`` options as a dict of translations."""
    names = {}
    for item in items:
        lang, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--name-in takes LANG=NAME, not {item!r}")
        names[lang.strip()] = value.strip()
    return names


def one_line(text: Any) -> str:
    return " ".join(str(text).split())
