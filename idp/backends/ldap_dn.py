"""Distinguished names compared as RFC 4514 says they are written, not as strings.

``cn=evil,ou=x\\,ou=groups,dc=corp`` ends with the text ``ou=groups,dc=corp`` but is not below
that entry (its second RDN is ``ou="x,ou=groups"``), and ``CN=Ops, OU=Groups, DC=Corp`` is the
entry ``cn=ops,ou=groups,dc=corp``. So a DN is parsed into RDNs (RFC 4514 §3: ``,`` or ``;``
between RDNs, ``+`` between the attribute-value pairs of one RDN, ``\\`` before a special
character or two hex digits, a ``#`` value in hex, the quoted values of RFC 1779) and compared
by key: attribute types case-insensitive, values compared as ``caseIgnoreMatch`` does (case
folded, insignificant spaces dropped: RFC 4518 §2.6.1). ldap3's ``parse_dn`` refuses the spaces
and unescaped ``=`` that directories do write, and keeps the escapes in the values.
"""

from __future__ import annotations

from dataclasses import dataclass

_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_DN = 8192  # longer than any directory allows; a bound on the work per value


class InvalidDn(ValueError):
    """Not a distinguished name."""


@dataclass(frozen=True)
class Ava:
    """One attribute-value pair of an RDN: the type as written, the value unescaped."""

    type: str
    value: str

    @property
    def key(self) -> tuple[str, str]:
        return self.type.lower(), " ".join(self.value.split()).casefold()


def parse(dn: str) -> list[list[Ava]]:
    """The RDNs of ``dn``, leftmost (the entry's own) first. The empty DN has none."""
    if len(dn) > _MAX_DN:
        raise InvalidDn("a DN this long is not accepted")
    if not dn.strip():
        return []
    rdns: list[list[Ava]] = []
    rdn: list[Ava] = []
    i, n = 0, len(dn)
    while True:
        eq = dn.find("=", i)
        if eq < 0:
            raise InvalidDn(f"no '=' after position {i}")
        attr = dn[i:eq].strip()
        if not attr or not all(c.isalnum() or c in "-." for c in attr) or not attr.isascii():
            raise InvalidDn(f"bad attribute type {attr!r}")
        value, i = _value(dn, eq + 1)
        rdn.append(Ava(attr, value))
        if i >= n:
            rdns.append(rdn)
            return rdns
        if dn[i] != "+":
            rdns.append(rdn)
            rdn = []
        i += 1
        if i >= n:
            raise InvalidDn("a DN does not end with a separator")


def _value(dn: str, i: int) -> tuple[str, int]:
    """The value starting at ``i`` (after '='), unescaped; and the index of the separator
    that ends it (or the end of ``dn``)."""
    n = len(dn)
    while i < n and dn[i] == " ":
        i += 1
    if i < n and dn[i] == "#":  # a BER value in hex: compared as the hex text
        j = i + 1
        while j < n and dn[j] in _HEX:
            j += 1
        return dn[i:j].lower(), _after_value(dn, j)
    if i < n and dn[i] == '"':  # RFC 1779 quoting, still written by some directories
        out = bytearray()
        j = i + 1
        while j < n and dn[j] != '"':
            j = _one(dn, j, out)
        if j >= n:
            raise InvalidDn("an unclosed quote")
        return _decode(out), _after_value(dn, j + 1)
    out = bytearray()
    kept = 0  # bytes up to the last escaped or non-space character: trailing spaces go
    while i < n and dn[i] not in ",;+":
        escaped = dn[i] == "\\"
        i = _one(dn, i, out)
        if escaped or dn[i - 1] != " ":
            kept = len(out)
    return _decode(bytes(out[:kept])), i


def _one(dn: str, i: int, out: bytearray) -> int:
    """Append the character at ``i`` (or the escape starting there) to ``out``; next index."""
    if dn[i] != "\\":
        out += dn[i].encode()
        return i + 1
    if i + 1 >= len(dn):
        raise InvalidDn("a DN ends with a backslash")
    if dn[i + 1] in _HEX and i + 2 < len(dn) and dn[i + 2] in _HEX:
        out.append(int(dn[i + 1 : i + 3], 16))
        return i + 3
    out += dn[i + 1].encode()
    return i + 2


def _after_value(dn: str, j: int) -> int:
    while j < len(dn) and dn[j] == " ":
        j += 1
    if j < len(dn) and dn[j] not in ",;+":
        raise InvalidDn(f"unexpected {dn[j]!r} after a value")
    return j


def _decode(raw: bytes) -> str:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise InvalidDn("an escaped value is not UTF-8") from None


def key(dn: str) -> tuple[frozenset[tuple[str, str]], ...]:
    """What two DNs naming the same entry have in common (raises InvalidDn)."""
    return tuple(frozenset(ava.key for ava in rdn) for rdn in parse(dn))


def normalized(dn: str) -> str:
    """A string for ``key(dn)``: the same for every spelling of a DN; the DN lower-cased when it
    cannot be parsed (it then equals only itself)."""
    try:
        parsed = key(dn)
    except InvalidDn:
        return dn.lower()
    return ",".join("+".join(sorted(f"{t}={v!r}" for t, v in rdn)) for rdn in parsed)


def within(dn: str, base: str) -> bool:
    """Whether the entry ``dn`` is ``base`` or below it (an unparseable DN is in no base)."""
    try:
        entry, top = key(dn), key(base)
    except InvalidDn:
        return False
    return len(entry) >= len(top) and entry[len(entry) - len(top) :] == top


def first_value(dn: str) -> tuple[str, str]:
    """The type and unescaped value of the first attribute of the entry's own RDN."""
    rdns = parse(dn)
    if not rdns:
        raise InvalidDn("the empty DN has no RDN")
    return rdns[0][0].type, rdns[0][0].value
