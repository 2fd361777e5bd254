"""The protocol-neutral authentication request and result (design idea 1).

``/authorize`` and ``/saml/sso`` parse their protocol, then either reuse an SSO session or store
an ``AuthnRequest`` under an id and send the browser to ``/login?r=<id>``. The login pages run
their steps and finish with an ``AuthnResult``, then send the browser to ``resume_url`` where the
protocol engine picks the request up again. Neither side knows the other's protocol.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

# Authentication Method Reference values (RFC 8176) and the acr levels we emit.
AMR_PWD = "pwd"
AMR_OTP = "otp"
AMR_HARDWARE_KEY = "hwk"
AMR_MFA = "mfa"
ACR_SINGLE = "urn:idp:acr:1fa"
ACR_MFA = "urn:idp:acr:mfa"
ACR_LEVELS = {ACR_SINGLE: 1, ACR_MFA: 2}


@dataclass
class AuthnRequest:
    """What a relying party asked of the login."""

    protocol: str  # "oidc", "saml", "account", "admin"
    resume_url: str  # where the login sends the browser when done (relative to the issuer)
    client_id: str | None = None  # OIDC client_id or SAML SP entityID
    client_name: str | None = None
    prompt: list[str] = field(default_factory=list)  # "login", "consent", "none", ...
    max_age: int | None = None
    acr_values: list[str] = field(default_factory=list)
    login_hint: str | None = None
    ui_locales: list[str] = field(default_factory=list)
    force_authn: bool = False
    is_passive: bool = False
    idp_hint: str | None = None  # the upstream identity provider to sign in with at once
    # Protocol-specific state the engine needs to resume; the login never reads it.
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthnRequest:
        return cls(**data)

    @property
    def wants_fresh_login(self) -> bool:
        return self.force_authn or "login" in self.prompt

    def wanted_acr_level(self) -> int:
        return max((ACR_LEVELS.get(a, 0) for a in self.acr_values), default=0)


@dataclass
class AuthnResult:
    """What the login established about the person at the browser."""

    user_uuid: str
    auth_time: int
    amr: list[str]
    acr: str
    sid: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthnResult:
        return cls(**data)


def public_sid(session_id: str) -> str:
    """The id of the SSO session whose browser cookie holds ``session_id`` (idp.sso.sessions):
    a SHA-256 of the cookie value (144 bits of it, base64url), the only form the server keeps
    (store key, index rows) or shows (OIDC ``sid``, session lists). Not reversible: an id read
    from the database is no cookie."""
    return base64.urlsafe_b64encode(
        hashlib.sha256(b"sid:" + session_id.encode()).digest()[:18]
    ).decode()


def acr_for(amr: list[str]) -> str:
    """The acr a set of methods reaches: two factors make ``mfa``, else single-factor."""
    return ACR_MFA if AMR_MFA in amr or len(set(amr) - {AMR_MFA}) >= 2 else ACR_SINGLE


def session_satisfies(result: AuthnResult, request: AuthnRequest, now: float) -> bool:
    """May an existing SSO session answer this request without a new login?"""
    if request.wants_fresh_login:
        return False
    if request.max_age is not None and now - result.auth_time > request.max_age:
        return False
    return ACR_LEVELS.get(result.acr, 0) >= request.wanted_acr_level()
