"""Where an address is: an optional MaxMind GeoLite2 / GeoIP2 City or Country database
(``[geoip] database``), read locally with ``maxminddb``. Without one every answer is "unknown"
(None): the IdP never asks a network service where its users are.

Private, loopback and other non-global addresses are never looked up. The reader maps the file
into memory once per process (MODE_MMAP: several workers share the pages).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from functools import lru_cache
from math import asin, cos, radians, sin, sqrt
from typing import Any

import maxminddb

from ..errors import StartupError

log = logging.getLogger("idp.geoip")

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Location:
    country: str | None  # ISO 3166-1 alpha-2, e.g. "DE"
    country_name: str | None
    city: str | None
    latitude: float | None
    longitude: float | None

    def label(self) -> str:
        """ "Berlin, Germany", "Germany", or the country code alone."""
        country = self.country_name or self.country or ""
        return ", ".join(p for p in (self.city, country) if p)

    def km_to(self, other: Location) -> float | None:
        """Great-circle distance in km (haversine), None when either has no coordinates."""
        if None in (self.latitude, self.longitude, other.latitude, other.longitude):
            return None
        lat1, lon1, lat2, lon2 = map(
            radians, (self.latitude, self.longitude, other.latitude, other.longitude)
        )
        a = sin((lat2 - lat1) / 2) ** 2 + cos(lat1) * cos(lat2) * sin((lon2 - lon1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * asin(sqrt(a))


def _name(record: dict[str, Any], key: str) -> str | None:
    names = (record.get(key) or {}).get("names") or {}
    return names.get("en")


def _location(record: dict[str, Any]) -> Location | None:
    country = record.get("country") or record.get("registered_country") or {}
    where = record.get("location") or {}
    found = Location(
        country=country.get("iso_code"),
        country_name=(country.get("names") or {}).get("en"),
        city=_name(record, "city"),
        latitude=where.get("latitude"),
        longitude=where.get("longitude"),
    )
    return found if found.country or found.latitude is not None else None


class GeoIp:
    """``locate(ip)`` → a Location, or None (no database, a non-global or unknown address)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self._reader: Any = None
        if path:
            try:
                self._reader = maxminddb.open_database(path, maxminddb.MODE_MMAP)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise StartupError(f"[geoip] database {path} cannot be read: {exc}") from None
        self.locate = lru_cache(maxsize=4096)(self._locate)

    @property
    def enabled(self) -> bool:
        return self._reader is not None

    def _locate(self, ip: str | None) -> Location | None:
        if self._reader is None or not ip:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_global:
            return None
        try:
            record = self._reader.get(addr)
        except (ValueError, maxminddb.InvalidDatabaseError):
            log.warning("geoip lookup failed for one address")
            return None
        return _location(record) if isinstance(record, dict) else None
