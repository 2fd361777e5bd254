"""RequestedAuthnContext (saml-core 3.3.2.2.1) mapped to the login's acr levels.

Each known class reference has a level (1 = one factor, 2 = multi-factor). ``exact`` and
``minimum`` ask for at least the lowest level listed, ``better`` for more than the highest,
``maximum`` for no more than the lowest (every session qualifies). A request naming only
unknown classes cannot be met: NoAuthnContext.
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


class NoAuthnContext(Exception):
    pass


def wanted_acr(classes: list[str], comparison: str | None) -> list[str]:
    """The acr_values to put in the protocol-neutral AuthnRequest."""
    if not classes:
        return []
    levels = [CLASS_LEVELS[c] for c in classes if c in CLASS_LEVELS]
    if not levels:
        raise NoAuthnContext("none of the requested authentication contexts is offered")
    comparison = comparison or "exact"
    if comparison == "maximum":
        return []
    if comparison == "better":
        level = max(levels) + 1
        if level not in _ACR_OF_LEVEL:
            raise NoAuthnContext("no authentication context better than the one requested")
        return [_ACR_OF_LEVEL[level]]
    return [_ACR_OF_LEVEL[min(levels)]]


def class_ref_for(acr: str, requested: list[str], comparison: str | None) -> str:
    """The AuthnContextClassRef to state: a requested class our level meets, else ours."""
    level = ACR_LEVELS.get(acr, 1)
    comparison = comparison or "exact"
    for c in requested:
        lv = CLASS_LEVELS.get(c)
        if lv is None:
            continue
        if (comparison in ("exact", "minimum") and lv == level) or (
            comparison == "maximum" and lv >= level
        ):
            return c
    if comparison == "minimum":
        for c in requested:
            if CLASS_LEVELS.get(c, 99) <= level:
                return c
    return _DEFAULT_CLASS.get(level, PPT)
