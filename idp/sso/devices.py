"""Known devices: the browsers a user signed in from, recognised by a long-lived device cookie.

The cookie holds a random id; the database keeps only its keyed hash, one row per user and
browser, so the same browser is a separate device for each person signing in on it and a
cookie that belongs to someone else (or was made up) is simply a new device. A made-up or stale
value is replaced by a fresh random one rather than adopted, so nobody can plant a value they
know in another person's browser and later pass as that browser. A device is new when no row of
this user has the cookie's hash; the very first device of an account that never signed in
before is not announced (there is nothing to compare it with).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.orm import Session

from ..storage.models_devices import KnownDevice, KnownDeviceSession

COOKIE = "idp_device"
_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")


def cookie_hash(hasher: Any, value: str) -> str:
    """The stored form of a device cookie: a keyed hash, useless without the server's key."""
    return hasher.hash("known-device:" + value)


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def usable(value: str | None) -> str | None:
    """The cookie's value when it has the shape this server gives out, else None."""
    return value if value and _VALUE.fullmatch(value) else None


@dataclass(frozen=True)
class Sighting:
    device_id: int
    new: bool  # no device of this user had the cookie
    announce: bool  # new, and not the first device of an account that never signed in before
    cookie: str  # the value the browser keeps from now on


@dataclass(frozen=True)
class Seen:
    """What one sign-in tells about the browser it came from."""

    name: str
    user_agent: str | None
    ip: str | None
    location: str | None
    at: datetime


def record_sign_in(
    db: Session,
    hasher: Any,
    user_id: int,
    cookie: str | None,
    seen: Seen,
    *,
    signed_in_before: bool,
    sid: str | None = None,
    keep: int = 50,
) -> Sighting:
    """Recognise the browser of a sign-in (or add it), update when and where it was last seen
    and tie the new SSO session ``sid`` to it. A user keeps at most ``keep`` devices: a new
    one beyond that forgets those seen least recently (their sessions go on). Plain statements
    sent at once: this runs on every sign-in."""
    given = usable(cookie)
    wanted = cookie_hash(hasher, given) if given else None
    rows = db.execute(
        select(KnownDevice.id, KnownDevice.cookie_hash, KnownDevice.last_seen_at).where(
            KnownDevice.user_id == user_id
        )
    ).all()
    match = next((r.id for r in rows if wanted is not None and r.cookie_hash == wanted), None)
    facts = {
        "name": seen.name[:200],
        "user_agent": (seen.user_agent or "")[:300] or None,
        "last_seen_at": seen.at,
        "last_ip": seen.ip,
        "last_location": (seen.location or "")[:200] or None,
    }
    conn = db.connection()
    value: str | None
    if match is not None and given is not None:
        conn.execute(update(KnownDevice).where(KnownDevice.id == match).values(**facts))
        device_id, new, value = match, False, given
    else:
        value = given if wanted is not None and _known_elsewhere(db, wanted) else None
        if value is None:
            value = new_cookie_value()
        wanted = cookie_hash(hasher, value)
        if len(rows) >= keep:
            oldest = sorted(rows, key=lambda r: (r.last_seen_at, r.id))[: len(rows) - keep + 1]
            conn.execute(delete(KnownDevice).where(KnownDevice.id.in_([r.id for r in oldest])))
        device_id = conn.execute(
            insert(KnownDevice)
            .values(user_id=user_id, cookie_hash=wanted, first_seen_at=seen.at, **facts)
            .returning(KnownDevice.id)
        ).scalar_one()
        new = True
    if sid:
        conn.execute(insert(KnownDeviceSession).values(sid=sid, device_id=device_id))
    announce = new and (bool(rows) or signed_in_before)
    return Sighting(device_id, new, announce, value)


def _known_elsewhere(db: Session, wanted: str) -> bool:
    """Another person's device has this cookie: the browser is shared, keep its value."""
    return bool(db.scalar(select(exists().where(KnownDevice.cookie_hash == wanted))))


def devices_of(db: Session, user_id: int) -> list[KnownDevice]:
    """The user's known devices, the most recently seen first."""
    return list(
        db.scalars(
            select(KnownDevice)
            .where(KnownDevice.user_id == user_id)
            .order_by(KnownDevice.last_seen_at.desc(), KnownDevice.id.desc())
        )
    )


def current_device_id(db: Session, hasher: Any, user_id: int, cookie: str | None) -> int | None:
    """Which of the user's devices the browser with this cookie is (None: none of them)."""
    value = usable(cookie)
    if value is None:
        return None
    return db.scalar(
        select(KnownDevice.id).where(
            KnownDevice.user_id == user_id, KnownDevice.cookie_hash == cookie_hash(hasher, value)
        )
    )


def device_of(db: Session, user_id: int, device_id: int) -> KnownDevice | None:
    """The user's device with this id (None for another user's or an unknown id)."""
    return db.scalar(
        select(KnownDevice).where(KnownDevice.id == device_id, KnownDevice.user_id == user_id)
    )


def sessions_on(db: Session, device_id: int) -> set[str]:
    """The SSO sessions that began on the device (some may have ended since)."""
    return set(
        db.scalars(select(KnownDeviceSession.sid).where(KnownDeviceSession.device_id == device_id))
    )


def forget(db: Session, device: KnownDevice) -> None:
    """Remove the device: the next sign-in from that browser is a new device again. Its
    sessions are left alone; ending them is the caller's choice (end them first: on SQLite no
    store write may wait behind this delete's write lock)."""
    db.delete(device)  # its session links go with it (ON DELETE CASCADE)
    db.flush()
