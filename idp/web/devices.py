"""Readable device names from a User-Agent header (ua-parser, the Browserscope rules), for the
sessions of the account area and the admin console: "Chrome 120 on Linux", "Mobile Safari 17
on iPhone". Raw strings are never shown as a name; an unknown agent is "Unknown device"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from flask_babel import gettext as _
from ua_parser import parse

from ..backends.geoip import GeoIp
from ..manage.sessions import SessionInfo


@dataclass(frozen=True)
class Device:
    browser: str | None  # "Chrome 120"
    os: str | None  # "Android 14"
    device: str | None  # "iPhone", "Pixel 7"; None for desktops

    @property
    def name(self) -> str:
        where = self.device or self.os
        if self.browser and where:
            return _("%(browser)s on %(where)s", browser=self.browser, where=where)
        return self.browser or where or _("Unknown device")


@lru_cache(maxsize=1024)
def _parsed(user_agent: str) -> tuple[str | None, str | None, str | None]:
    result = parse(user_agent[:512])
    browser = os = device = None
    if result.user_agent and result.user_agent.family != "Other":
        browser = " ".join(p for p in (result.user_agent.family, result.user_agent.major) if p)
    if result.os and result.os.family != "Other":
        os = " ".join(p for p in (result.os.family, result.os.major) if p)
    if result.device and result.device.family not in ("Other", "Generic Smartphone", "Mac"):
        device = result.device.family
    return browser, os, device


def describe(user_agent: str | None) -> Device:
    """The device behind a User-Agent (all parts None when there is none)."""
    if not user_agent:
        return Device(None, None, None)
    return Device(*_parsed(user_agent))


@dataclass(frozen=True)
class SessionView:
    """One SSO session as the console and the API show it: the manage layer's facts, the
    device read from its User-Agent and the place of its IP address (None when unknown)."""

    session: SessionInfo
    device: Device
    location: str | None


def session_views(geoip: GeoIp, sessions: Iterable[SessionInfo]) -> list[SessionView]:
    """The sessions with their device and location ([geoip] database; None without one)."""
    out = []
    for s in sessions:
        place = geoip.locate(s.ip) if s.ip else None
        out.append(SessionView(s, describe(s.user_agent), place.label() if place else None))
    return out
