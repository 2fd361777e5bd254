"""Identity brokering, the protocol-neutral part: who an upstream identity provider says the
person is (``UpstreamIdentity``), how its claims map onto a local account (mapping rules as
data, design idea 10), and which upstream an e-mail domain belongs to (home-realm discovery).

Every upstream protocol (OIDC, plain OAuth 2, SAML) ends in an ``UpstreamIdentity``; the
sign-in hub (``idp.sso.broker``) links, provisions and signs in from it without knowing the
protocol. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# RFC 8176 has no value for "signed in at another identity provider"; "fed" is the value
# Microsoft Entra ID and others emit for federated sign-in, so relying parties know it.
AMR_FEDERATED = "fed"

KINDS = ("oidc", "oauth2", "saml")
SYNC_MODES = ("import", "force")  # profile copied at the first login only, or at every login
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

# Local user fields a mapping rule may fill, and the standard claims that fill them by default
# (OIDC Core §5.1 names; a SAML upstream maps its attributes with rules). The e-mail address is
# the upstream's own (``UpstreamIdentity.email``), never mapped: it decides account matching.
USER_FIELDS = (
    "username",
    "given_name",
    "middle_name",
    "family_name",
    "display_name",
    "phone",
    "locale",
)
DEFAULT_FIELD_CLAIMS = {
    "preferred_username": "username",
    "given_name": "given_name",
    "middle_name": "middle_name",
    "family_name": "family_name",
    "name": "display_name",
    "phone_number": "phone",
    "locale": "locale",
}
MAX_RULES = 100


@dataclass(frozen=True)
class UpstreamIdentity:
    """What an upstream identity provider asserted about the person.

    ``provider``: the upstream's alias here; ``subject``: its stable identifier for the person
    (OIDC ``sub``, OAuth 2 user id, SAML NameID); ``email_verified``: only when the upstream
    itself says the address is verified; ``attributes``: every claim / attribute, each as a
    tuple of strings; ``session_ref``: what upstream logout needs later (an ID token for
    ``id_token_hint``, a SAML SessionIndex), or None."""

    provider: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    session_ref: str | None = None

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name) or ()
        return values[0] if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "subject": self.subject,
            "email": self.email,
            "email_verified": self.email_verified,
            "attributes": {k: list(v) for k, v in self.attributes.items()},
            "session_ref": self.session_ref,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpstreamIdentity:
        return cls(
            provider=data["provider"],
            subject=data["subject"],
            email=data.get("email"),
            email_verified=bool(data.get("email_verified")),
            attributes={k: tuple(v) for k, v in (data.get("attributes") or {}).items()},
            session_ref=data.get("session_ref"),
        )


def attribute_values(value: Any) -> tuple[str, ...]:
    """A claim's value as strings: lists element-wise, scalars as one, objects left out."""
    if value is None or isinstance(value, dict):
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if v is not None and not isinstance(v, dict | list))
    if isinstance(value, bool):
        return ("true" if value else "false",)
    return (str(value),)


def attributes_of(claims: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Claims (an ID token's, a userinfo answer's) as ``UpstreamIdentity.attributes``."""
    out: dict[str, tuple[str, ...]] = {}
    for name, value in claims.items():
        values = attribute_values(value)
        if values:
            out[str(name)] = values
    return out


# --- mapping rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingRule:
    """One rule. ``{"claim": "given_name", "field": "given_name"}`` copies a claim into a user
    field; ``{"claim": "groups", "value": "admins", "group": "Admins"}`` makes members of a
    group (``"role": ...`` gives a role) when the claim holds the value, or holds anything when
    ``value`` is left out; a rule without ``claim`` applies to everyone from this upstream."""

    claim: str | None = None
    value: str | None = None
    field: str | None = None
    group: str | None = None
    role: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def parse_rules(rules: Any) -> list[MappingRule]:
    """The rules of an upstream, checked; ValueError naming the first bad rule."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise ValueError("mapping must be a list of rules")
    if len(rules) > MAX_RULES:
        raise ValueError(f"mapping: at most {MAX_RULES} rules")
    out = []
    for index, rule in enumerate(rules):
        where = f"mapping rule {index + 1}"
        if not isinstance(rule, dict):
            raise ValueError(f"{where}: a rule is an object")
        unknown = set(rule) - {"claim", "value", "field", "group", "role"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if any(not isinstance(v, str) or not v.strip() or len(v) > 300 for v in rule.values()):
            raise ValueError(f"{where}: every value is a non-empty text of at most 300 characters")
        targets = [k for k in ("field", "group", "role") if k in rule]
        if len(targets) != 1:
            raise ValueError(f"{where}: give exactly one of field, group, role")
        if "field" in rule:
            if rule["field"] not in USER_FIELDS:
                raise ValueError(f"{where}: field must be one of {', '.join(USER_FIELDS)}")
            if "claim" not in rule or "value" in rule:
                raise ValueError(f"{where}: a field rule names a claim and no value")
        if "value" in rule and "claim" not in rule:
            raise ValueError(f"{where}: a value needs a claim")
        out.append(MappingRule(**{k: v.strip() for k, v in rule.items()}))
    return out


@dataclass(frozen=True)
class MappedProfile:
    """The local account as the upstream's claims and the rules describe it."""

    fields: dict[str, str]
    groups: tuple[str, ...]
    roles: tuple[str, ...]


def map_identity(identity: UpstreamIdentity, rules: Iterable[MappingRule]) -> MappedProfile:
    """Apply the standard claims, then the rules in order (a later field rule wins)."""
    fields: dict[str, str] = {}
    for claim, name in DEFAULT_FIELD_CLAIMS.items():
        value = identity.first(claim)
        if value:
            fields[name] = value
    if identity.email:
        fields["email"] = identity.email
    groups: list[str] = []
    roles: list[str] = []
    for rule in rules:
        values = identity.attributes.get(rule.claim, ()) if rule.claim else ("",)
        if not values or (rule.value is not None and rule.value not in values):
            continue
        if rule.field:
            fields[rule.field] = values[0]
        elif rule.group and rule.group not in groups:
            groups.append(rule.group)
        elif rule.role and rule.role not in roles:
            roles.append(rule.role)
    return MappedProfile(fields, tuple(groups), tuple(roles))


# --- home-realm discovery -----------------------------------------------------------------------


def login_domain(login: str) -> str | None:
    """The domain of an e-mail address (or ``user@domain`` username), lower-case; else None."""
    local, at, domain = login.strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    if not at or not local or not DOMAIN_RE.match(domain):
        return None
    return domain


def parse_domains(domains: Any) -> list[str]:
    """Home-realm domains of an upstream, lower-case and checked; ValueError for a bad one."""
    if domains is None:
        return []
    if not isinstance(domains, list):
        raise ValueError("hrd_domains must be a list of domain names")
    out: list[str] = []
    for domain in domains:
        name = str(domain).strip().lower().rstrip(".")
        if not DOMAIN_RE.match(name):
            raise ValueError(f"hrd_domains: {domain!r} is not a domain name")
        if name not in out:
            out.append(name)
    return out
