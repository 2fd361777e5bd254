"""[geoip] database: locations from a local MaxMind file, "unknown" without one, never a lookup
of private addresses, and a clear refusal to start on a file that cannot be read."""

from __future__ import annotations

import pytest

from idp.app import create_app
from idp.backends.geoip import GeoIp
from idp.errors import StartupError
from tests.geo_kit import write_city_db


@pytest.fixture(scope="module")
def city_db(tmp_path_factory):
    return write_city_db(tmp_path_factory.mktemp("geo") / "city.mmdb")


def test_locates_public_addresses_from_the_file(city_db):
    geo = GeoIp(str(city_db))
    london = geo.locate("81.2.69.160")
    assert london.country == "GB" and london.city == "London"
    assert london.label() == "London, United Kingdom"
    assert geo.locate("2001:218:1::1").label() == "Japan"
    # An IPv4 address written as IPv4-mapped IPv6 is the same place.
    assert geo.locate("::ffff:89.160.20.112").country == "SE"


def test_unknown_private_and_malformed_addresses_have_no_location(city_db):
    geo = GeoIp(str(city_db))
    for ip in ("8.8.8.8", "10.0.0.1", "127.0.0.1", "::1", "192.168.1.1", "not-an-ip", "", None):
        assert geo.locate(ip) is None, ip


def test_without_a_database_every_location_is_unknown():
    geo = GeoIp("")
    assert not geo.enabled
    assert geo.locate("81.2.69.160") is None


def test_distance_between_places(city_db):
    geo = GeoIp(str(city_db))
    london, changchun = geo.locate("81.2.69.1"), geo.locate("175.16.199.1")
    # London - Changchun is about 8,100 km on the great circle.
    assert 7900 < london.km_to(changchun) < 8300
    assert london.km_to(london) == 0


def test_an_unreadable_database_stops_the_start(tmp_path):
    bad = tmp_path / "broken.mmdb"
    bad.write_bytes(b"not a maxmind database")
    with pytest.raises(StartupError, match="geoip"):
        create_app({"instance_dir": str(tmp_path / "i"), "geoip": {"database": str(bad)}})
    with pytest.raises(StartupError, match="geoip"):
        create_app(
            {
                "instance_dir": str(tmp_path / "j"),
                "geoip": {"database": str(tmp_path / "nope.mmdb")},
            }
        )
