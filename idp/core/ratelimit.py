"""Rate-limit policy: which counters a rule keeps, and whether their counts refuse a request.

Pure policy, computed from counters kept elsewhere (``idp.storage.ratelimit``: the short-lived
store, shared by every worker and node). Windows are fixed and aligned to the clock (a window of
300 s starts at every multiple of 300 s since the epoch), so the counter of a window is named by
its start and the time until it frees is known without reading the store: ``Retry-After`` is the
rest of the window. A burst can meet the end of one window and the start of the next (at most
twice the limit in one window's time); the limits are set with that in mind.

Every rule counts per client address and per account (the account, client, or e-mail address
the request names, whether or not it exists); either limit refuses. Per address alone would let
many addresses spray one account, per account alone one address spray many accounts.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ADDRESS, ACCOUNT = "address", "account"

# The rules and what each counts (the settings of [rate_limits] are named after them).
# "failures": only failed attempts are counted (a credential that did not work);
# "sends": every request is counted (it sends a message or makes an account).
RULES: dict[str, str] = {
    "client_auth": "failures",
    "bearer": "failures",
    "reset": "sends",
    "magic_link": "sends",
    "registration": "sends",
    "mfa_send": "sends",
    "mfa_code": "failures",
    "userinfo": "failures",
    "client_registration": "sends",
    "email_link": "sends",
}
# The settings' names of the account limits, where they are not ``<rule>_per_account``.
_ACCOUNT_SETTING = {"client_auth": "per_client"}


@dataclass(frozen=True)
class Rule:
    """``per_address`` / ``per_account`` counted events allowed in ``window`` seconds (0: no limit
    of that kind)."""

    name: str
    per_address: int
    per_account: int
    window: int

    def limit(self, scope: str) -> int:
        return self.per_address if scope == ADDRESS else self.per_account

    def window_end(self, now: float) -> int:
        """The end of the window ``now`` falls in."""
        return (math.floor(now / self.window) + 1) * self.window

    def key(self, scope: str, subject: str, now: float) -> str:
        """The counter of ``subject`` (an address or an account's keyed hash) in this window."""
        return f"rl:{self.name}:{scope}:{self.window_end(now) - self.window}:{subject}"

    def retry_after(self, now: float) -> int:
        """Whole seconds until this window frees (at least 1)."""
        return max(1, math.ceil(self.window_end(now) - now))


@dataclass(frozen=True)
class Verdict:
    """A refusal: the rule, which limit was reached, and the seconds until it frees."""

    rule: str
    scope: str
    retry_after: int


def judge(
    rule: Rule, counts: Mapping[str, int], now: float, *, after_count: bool
) -> Verdict | None:
    """A refusal when a count reached its limit, else None. ``counts`` is per scope; with
    ``after_count`` the counts include this request (a send: the limit-th is still allowed),
    without it they are the failures before it (the limit-th failure refuses the next one)."""
    for scope, count in counts.items():
        limit = rule.limit(scope)
        if limit > 0 and (count > limit if after_count else count >= limit):
            return Verdict(rule.name, scope, rule.retry_after(now))
    return None


def address_subject(ip: str | None) -> str | None:
    """The address a rule counts: IPv4 as it is, IPv6 by its /64 (one subscriber's network:
    counting single IPv6 addresses would let one host take a fresh one per request)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)


def rules_from_settings(settings: Mapping[str, Any]) -> dict[str, Rule]:
    """The rules of the ``[rate_limits]`` settings (all off when ``enabled`` is false). The
    e-mail / SMS code sends per account and their window are ``[mfa] max_sends`` and
    ``send_window_seconds``, on whatever ``enabled`` says (they are the MFA policy's)."""
    section, mfa = settings["rate_limits"], settings["mfa"]
    on = bool(section["enabled"])
    rules = {}
    for name in RULES:
        if name == "mfa_send":
            rules[name] = Rule(name, int(section["mfa_send_per_address"]) if on else 0,
                               int(mfa["max_sends"]), int(mfa["send_window_seconds"]))
            continue
        account = f"{name}_{_ACCOUNT_SETTING.get(name, 'per_account')}"
        rules[name] = Rule(
            name,
            int(section[f"{name}_per_address"]) if on else 0,
            int(section[account]) if on and account in section else 0,
            int(section[f"{name}_window_seconds"]),
        )
    return rules
