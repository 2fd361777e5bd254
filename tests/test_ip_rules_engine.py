"""The network rule engine (idp.core.iprules) and the X-Forwarded-For reading, alone."""

from __future__ import annotations

import pytest

from idp.core.iprules import (
    InvalidNetwork,
    Rules,
    canonical,
    forwarded_client,
    parse_address,
    parse_network,
    parse_networks,
)


def test_deny_wins_over_allow_and_an_empty_allow_list_lets_any_address_in():
    rules = Rules.of(["10.0.0.0/8"], ["10.6.0.0/16"])
    assert rules.permits("10.1.2.3")
    assert not rules.permits("10.6.0.1")
    assert not rules.permits("192.0.2.1")
    only_deny = Rules.of([], ["192.0.2.0/24"])
    assert only_deny.permits("198.51.100.7")
    assert not only_deny.permits("192.0.2.200")
    assert Rules().permits("203.0.113.9") and Rules().permits(None)


def test_ipv6_rules_and_mixed_families():
    rules = Rules.of(["2001:db8::/32"])
    assert rules.permits("2001:db8:1::5")
    assert not rules.permits("2001:db9::1")
    assert not rules.permits("10.0.0.1")  # an IPv4 address is never inside an IPv6 network
    assert not Rules.of(["10.0.0.0/8"]).permits("2001:db8::1")


def test_ipv4_mapped_ipv6_addresses_are_judged_as_ipv4():
    assert parse_address("::ffff:10.1.2.3") == parse_address("10.1.2.3")
    assert Rules.of(["10.0.0.0/8"]).permits("::ffff:10.1.2.3")
    assert not Rules.of([], ["10.0.0.0/8"]).permits("::ffff:10.9.9.9")
    # A mapped network is the IPv4 network it stands for.
    assert str(parse_network("::ffff:10.0.0.0/104")) == "10.0.0.0/8"


def test_slash_zero_covers_its_family_only():
    assert Rules.of([], ["0.0.0.0/0"]).permits("2001:db8::1")
    assert not Rules.of([], ["0.0.0.0/0"]).permits("198.51.100.1")
    assert not Rules.of([], ["::/0"]).permits("2001:db8::1")
    assert Rules.of(["0.0.0.0/0", "::/0"]).permits("2001:db8::1")


def test_unreadable_addresses_are_refused_by_any_rule_set():
    rules = Rules.of([], ["192.0.2.0/24"])
    for bad in (None, "", "not-an-ip", "10.0.0.1, 10.0.0.2", "1" * 80):
        assert not rules.permits(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "not an IP address or CIDR network"),
        ("banana", "not an IP address or CIDR network"),
        ("", "not an IP address or CIDR network"),
        ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32"),
    ],
)
def test_invalid_networks_are_refused_with_a_clear_message(text, message):
    with pytest.raises(InvalidNetwork, match=message):
        parse_network(text)


def test_entries_are_written_the_standard_way_and_duplicates_dropped():
    assert canonical([" 10.0.0.0/8", "192.0.2.7", "2001:DB8::/32", "10.0.0.0/8"]) == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]


# --- X-Forwarded-For ---------------------------------------------------------------------------


def test_no_trusted_proxy_means_the_header_is_never_read():
    assert forwarded_client("192.0.2.1", "203.0.113.5", 0) is None


def test_one_proxy_takes_the_right_most_entry_not_the_forged_left_one():
    # The client forged "1.1.1.1"; the proxy appended what it saw (198.51.100.7).
    assert forwarded_client("10.0.0.2", "1.1.1.1, 198.51.100.7", 1) == "198.51.100.7"


def test_two_proxies_take_the_second_entry_from_the_right():
    header = "1.1.1.1, 198.51.100.7, 10.0.0.3"
    assert forwarded_client("10.0.0.2", header, 2) == "198.51.100.7"
    assert forwarded_client("10.0.0.2", "198.51.100.7", 2) is None  # fewer entries than proxies


def test_a_peer_outside_the_trusted_networks_is_not_believed():
    trusted = parse_networks(["10.0.0.0/8"])
    assert forwarded_client("10.0.0.2", "198.51.100.7", 1, trusted) == "198.51.100.7"
    assert forwarded_client("203.0.113.9", "198.51.100.7", 1, trusted) is None
    # With two proxies the inner one must be a trusted proxy too.
    assert forwarded_client("10.0.0.2", "198.51.100.7, 10.0.0.3", 2, trusted) == "198.51.100.7"
    assert forwarded_client("10.0.0.2", "198.51.100.7, 203.0.113.1", 2, trusted) is None


@pytest.mark.parametrize(
    "header", ["", "garbage", "198.51.100.7, <script>", " , ", "999.1.1.1", "a" * 300]
)
def test_garbage_headers_are_ignored(header):
    assert forwarded_client("10.0.0.2", header, 1) is None
