"""RequestedAuthnContext (saml-core 3.3.2.2.1) mapped to the login's acr levels.

Each known class reference has a level (1 = one factor, 2 = multi-factor); that is our
ordering of classes by strength. For the listed classes' levels L, the levels a response may
state are (saml-core 3.3.2.2.1):

- ``exact``: one of the listed classes, so a level in L, stated with a listed class;
- ``minimum``: at least as strong as one listed: any level >= min(L);
- ``maximum``: as strong as possible without exceeding every listed one: any level <= max(L),
  the session's own level if it fits, else the highest one the session also covers;
- ``better``: stronger than any listed: any level > max(L).

The class stated is the one the session achieved (a multi-factor session includes a
password over a protected transport, so it may state a one-factor class when only that is
acceptable; a one-factor session never states a multi-factor class). A session below every
acceptable level is stepped up by the login (``wanted_acr``). A request no level can answer
(only unknown classes, ``better`` than multi-factor) gets NoAuthnContext (saml-core 3.2.2.2).
"""

from __future__ import annotations

from ..core.authn import ACR_LEVELS, ACR_MFA, ACR_SINGLE

PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
REFEDS_MFA = "https://refeds.org/profile/mfa"
CLASS_LEVELS = {
    "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified": 1,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:Password": 1,
    PPT: 1,
    "https://refeds.org/profile/sfa": 1,
    ACR_SINGLE: 1,
    REFEDS_MFA: 2,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract": 2,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered": 2,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken": 2,
    "http://schemas.microsoft.com/claims/multipleauthn": 2,
    ACR_MFA: 2,
}
_ACR_OF_LEVEL = {1: ACR_SINGLE, 2: ACR_MFA}
_DEFAULT_CLASS = {1: PPT, 2: REFEDS_MFA}
LEVELS = tuple(sorted(_ACR_OF_LEVEL))


class NoAuthnContext(Exception):
    pass


def acceptable_levels(classes: list[str], comparison: str | None) -> list[int]:
    """The levels a response to this RequestedAuthnContext may state, lowest first; every
    level when nothing is requested. NoAuthnContext when there is none."""
    if not classes:
        return list(LEVELS)
    listed = sorted({CLASS_LEVELS[c] for c in classes if c in CLASS_LEVELS})
    if not listed:
        raise NoAuthnContext("none of the requested authentication contexts is offered")
    comparison = comparison or "exact"
    if comparison == "minimum":
        out = [lv for lv in LEVELS if lv >= listed[0]]
    elif comparison == "maximum":
        out = [lv for lv in LEVELS if lv <= listed[-1]]
    elif comparison == "better":
        out = [lv for lv in LEVELS if lv > listed[-1]]
    else:
        out = listed
    if not out:
        raise NoAuthnContext("no authentication context better than the one requested")
    return out


def wanted_acr(classes: list[str], comparison: str | None) -> list[str]:
    """The acr_values to put in the protocol-neutral AuthnRequest: the lowest acceptable
    level, so a session below it is stepped up and one at or above it answers."""
    if not classes:
        return []
    return [_ACR_OF_LEVEL[acceptable_levels(classes, comparison)[0]]]


def class_ref_for(acr: str, requested: list[str], comparison: str | None) -> str:
    """The AuthnContextClassRef to state for a session at ``acr``: the highest acceptable
    level the session reached, with a requested class of that level when one is listed
    (``exact`` must use one), else our class for it. NoAuthnContext when the session reached
    no acceptable level (it should have been stepped up) or, for ``exact``, when no listed
    class names a level it reached."""
    level = ACR_LEVELS.get(acr, 1)
    reached = [lv for lv in acceptable_levels(requested, comparison) if lv <= level]
    if not reached:
        raise NoAuthnContext("the sign-in did not reach the requested authentication context")
    stated = reached[-1]
    for c in requested:
        if CLASS_LEVELS.get(c) == stated:
            return c
    return _DEFAULT_CLASS[stated]
