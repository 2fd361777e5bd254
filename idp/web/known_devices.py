"""The device cookie at sign-in and the new-device mail (idp.sso.devices does the recognising).

The cookie (``idp_device``: a random id, HttpOnly, Secure on https, SameSite=Lax, ``[devices]
cookie_days``) is set or renewed at every sign-in. A sign-in from a device not known for that
user mails them — device, time in their zone, address, location — unless it is the first device
of an account that never signed in before, or they turned the mail off (where the policy lets
them, idp.sso.notifications)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from babel import dates as babel_dates
from flask import request
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from ..sso import devices, notifications
from ..storage.models import User
from .account_time import zone_of
from .current import svc
from .devices import describe
from .mailing import mail_locale, queue_mail
from .requestinfo import absolute, audit_now, client_ip


def english_name(user_agent: str | None) -> str:
    """The device's name as stored (the API and the audit log show it); pages name it again
    in their own language from the User-Agent."""
    with force_locale("en"):
        return str(describe(user_agent).name)


def location_label(ip: str | None) -> str | None:
    found = svc().geoip.locate(ip) if ip else None
    return found.label() if found else None


@dataclass(frozen=True)
class SignIn:
    sighting: devices.Sighting
    seen: devices.Seen


def on_sign_in(db: Any, user: User, sid: str, *, signed_in_before: bool) -> SignIn:
    """Recognise the browser of this sign-in, record the new session on it and audit a new
    device. Sends its statements at once; the caller commits, then calls :func:`announce`
    and sets the cookie with :func:`set_cookie`."""
    s = svc()
    ip = client_ip()
    agent = request.user_agent.string or None
    seen = devices.Seen(
        name=english_name(agent),
        user_agent=agent,
        ip=ip,
        location=location_label(ip),
        at=s.clock.utcnow(),
    )
    sighting = devices.record_sign_in(
        db,
        s.hasher,
        user.id,
        request.cookies.get(devices.COOKIE),
        seen,
        signed_in_before=signed_in_before,
        sid=sid,
        keep=s.settings.devices.max_per_user,
    )
    if sighting.new:
        audit_now(
            db,
            "device.new",
            actor=user.uuid,
            target=user.uuid,
            device=seen.name,
            device_id=sighting.device_id,
            location=seen.location,
        )
    return SignIn(sighting, seen)


def announce(db: Any, user: User, signin: SignIn) -> None:
    """After the commit: the new-device mail, when this sign-in calls for one and the user
    gets that kind of mail."""
    if not (signin.sighting.announce and user.email):
        return
    if notifications.wants(db, svc().settings, user.id, "new_device"):
        _mail_new_device(user, signin.seen)


def _mail_new_device(user: User, seen: devices.Seen) -> None:
    locale = mail_locale(user.email, user)
    zone = zone_of(user)
    queue_mail(
        user.email,
        "new_device",
        _l("New sign-in to your account"),
        locale=locale,
        user=user,
        device=_name_in(locale, seen.user_agent),
        when=_when(seen.at, zone, locale),
        zone=user.timezone or "UTC",
        ip=seen.ip,
        location=seen.location,
        sessions_url=absolute("account.sessions_page"),
        devices_url=absolute("account_devices.devices_page"),
        password_url=absolute("account.password"),
    )


def _name_in(locale: str, user_agent: str | None) -> str:
    with force_locale(locale):
        return str(describe(user_agent).name)


def _when(at: datetime, zone: Any, locale: str) -> str:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return babel_dates.format_datetime(moment, "long", tzinfo=zone, locale=locale)


def set_cookie(response: Response, signin: SignIn) -> None:
    s = svc()
    response.set_cookie(
        devices.COOKIE,
        signin.sighting.cookie,
        max_age=s.settings.devices.cookie_days * 86400,
        path="/",
        httponly=True,
        secure=s.settings.issuer.startswith("https://"),
        samesite="Lax",
    )
