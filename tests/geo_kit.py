"""Small MaxMind databases for the location tests, written with mmdb-writer in the layout of
GeoLite2-City (country / city / location records), so the real ``maxminddb`` reader reads them."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Documentation / test-net ranges would be non-global (never looked up), so the fixtures use
# real public ranges with made-up places.
PLACES = {
    "81.2.69.0/24": ("GB", "United Kingdom", "London", 51.5142, -0.0931),
    "89.160.20.0/24": ("SE", "Sweden", "Linköping", 58.4167, 15.6167),
    "175.16.199.0/24": ("CN", "China", "Changchun", 43.88, 125.3228),
    "2001:218::/32": ("JP", "Japan", None, 35.69, 139.69),
}


def write_city_db(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    for net, (code, country, city, lat, lon) in PLACES.items():
        record = {
            "country": {"iso_code": code, "names": {"en": country}},
            "location": {"latitude": lat, "longitude": lon},
        }
        if city:
            record["city"] = {"names": {"en": city}}
        writer.insert_network(IPSet([net]), record)
    writer.to_db_file(str(path))
    return path
