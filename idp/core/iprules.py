"""Network rules and client addresses, with the standard library's ``ipaddress`` only.

``Rules`` is one allow / deny list pair (global, per role or group, per client or SP, the
console, the API): a deny match refuses, then an empty allow list lets any address in, else
the address must match one allow entry. An address that cannot be read is refused by any
non-empty rule set (fail closed). IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, what a
dual-stack socket reports for an IPv4 peer) are judged as the IPv4 address they carry.

``forwarded_client`` picks the client's address out of ``X-Forwarded-For`` the way nginx's
``real_ip`` module does: only a peer that is a trusted proxy is believed, and only as many
entries from the right as there are trusted proxies in front of us."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW = "allow"
DENY = "deny"
ACTIONS = (ALLOW, DENY)
# Longest text accepted as a network ("ffff:...:ffff/128" is 43 characters).
_MAX_TEXT = 50


class InvalidNetwork(ValueError):
    """A rule entry that is not an address or a CIDR network; the message says which and why.
    ``suggestion``: the network probably meant, when only host bits after the prefix were
    wrong."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


def parse_address(text: str | None) -> Address | None:
    """The address in ``text`` (IPv4-mapped IPv6 unwrapped, an IPv6 zone dropped), or None."""
    if not text or len(text) > _MAX_TEXT:
        return None
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> Network:
    """``text`` as a network: "10.0.0.0/8", "2001:db8::/32", or one address (a /32 or /128).
    Host bits after the prefix are refused rather than silently dropped: "10.1.2.3/8" is
    more likely a typing slip than a wish to allow all of 10.0.0.0/8."""
    raw = str(text).strip()
    if not raw or len(raw) > _MAX_TEXT:
        raise InvalidNetwork(f"{str(text)[:60]!r} is not an IP address or CIDR network")
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise InvalidNetwork(f"{raw!r} is not an IP address or CIDR network") from None
        raise InvalidNetwork(
            f"{raw!r} has host bits set after the prefix (did you mean {loose}?)", str(loose)
        ) from exc
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is not None and network.prefixlen >= 96:
        # ::ffff:10.0.0.0/104 means 10.0.0.0/8: addresses are unwrapped the same way.
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """Every entry parsed (``InvalidNetwork`` for the first bad one), duplicates dropped."""
    seen: dict[Network, None] = {}
    for text in texts:
        seen[parse_network(text)] = None
    return tuple(seen)


def canonical(texts: Iterable[str]) -> list[str]:
    """The entries as stored and shown: parsed, written the standard way, duplicates dropped."""
    return [str(n) for n in parse_networks(texts)]


def _matches(address: Address, networks: Sequence[Network]) -> bool:
    # An IPv4 address is never inside an IPv6 network and the reverse: ``in`` says False.
    return any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class Rules:
    """One scope's rules. Empty = no restriction."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> Rules:
        return cls(parse_networks(allow), parse_networks(deny))

    def __bool__(self) -> bool:
        return bool(self.allow or self.deny)

    def permits(self, address: Address | str | None) -> bool:
        if not self:
            return True
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            address = parse_address(address)
        if address is None:
            return False
        if _matches(address, self.deny):
            return False
        return not self.allow or _matches(address, self.allow)


def forwarded_client(
    peer: str | None,
    forwarded_for: str | None,
    trusted_proxies: int,
    trusted_networks: Sequence[Network] = (),
) -> str | None:
    """The client's address when ``peer`` (the socket's other end) is the last of
    ``trusted_proxies`` proxies, each of which appended the address it saw to
    ``X-Forwarded-For``: the entry ``trusted_proxies`` places from the right. None when the
    header may not be believed: no trusted proxies, a peer (or an intermediate proxy) outside
    ``trusted_networks`` when those are given, fewer entries than proxies, or an entry that is
    not an address. Entries further left were written by whoever sent the request and are
    never used."""
    if trusted_proxies < 1 or not forwarded_for:
        return None
    peer_address = parse_address(peer)
    if peer_address is None:
        return None
    if trusted_networks and not _matches(peer_address, trusted_networks):
        return None
    entries = [e.strip() for e in forwarded_for.split(",")]
    if len(entries) < trusted_proxies or len(entries) > 64:
        return None
    chosen = entries[len(entries) - trusted_proxies :]
    addresses = [parse_address(e) for e in chosen]
    if any(a is None for a in addresses):
        return None
    # The entries right of the client's are the proxies between it and the peer.
    hops = [a for a in addresses[1:] if a is not None]
    if trusted_networks and not all(_matches(h, trusted_networks) for h in hops):
        return None
    return str(addresses[0])


def forwarded_value(header: str | None, trusted_proxies: int) -> str | None:
    """The entry ``trusted_proxies`` places from the right of a comma-separated
    ``X-Forwarded-Proto`` / ``-Host`` header (each proxy appends one), or None."""
    if trusted_proxies < 1 or not header:
        return None
    entries = [e.strip() for e in header.split(",")]
    if len(entries) < trusted_proxies:
        return None
    return entries[len(entries) - trusted_proxies] or None
