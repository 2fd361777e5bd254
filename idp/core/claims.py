"""The claims mapper, pure: mapping rules (data) turn one user into OIDC claims and SAML
attributes. Storage (``idp.storage.claims``) loads the rules and the user into a ``Subject``.

OIDC: claims released by scope follow OpenID Connect Core 1.0 §5.4; individually requested
claims (the ``claims`` request parameter, §5.5) are released when a rule produces them. Claims
without a value are omitted, not sent as null (§5.3.2). SAML: attributes follow the SAML 2.0
core §2.7.3.1 (Name, NameFormat, FriendlyName, one AttributeValue per value) with the
eduPerson / X.500 OID names that SPs recognise (SAML V2.0 X.500/LDAP Attribute Profile).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# Claims the token machinery owns (RFC 7519 §4.1, OIDC Core §2 and §3.3.2.11, RFC 7800,
# OIDC Session/Front-channel logout, RFC 9068). A rule may never produce them.
REGISTERED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "s_hash",
        "sid",
        "cnf",
        "client_id",
        "scope",
        "events",
        "_claim_names",
        "_claim_sources",
    }
)

# OIDC Core §5.4: the claims each standard scope requests.
STANDARD_SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": (
        "name",
        "family_name",
        "given_name",
        "middle_name",
        "nickname",
        "preferred_username",
        "profile",
        "picture",
        "website",
        "gender",
        "birthdate",
        "zoneinfo",
        "locale",
        "updated_at",
    ),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}

# The user attributes a rule may read; anything else (password hashes, internals) is refused.
USER_ATTRIBUTES = frozenset(
    {
        "uuid",
        "username",
        "email",
        "email_verified",
        "given_name",
        "middle_name",
        "family_name",
        "display_name",
        "name",
        "phone",
        "phone_verified",
        "avatar",
        "locale",
        "timezone",
        "color",
        "status",
        "start_date",
        "end_date",
        "source",
        "external_id",
        "ldap_dn",
        "created_at",
        "updated_at",
    }
)

SOURCE_TYPES = (
    "attribute",
    "custom_field",
    "groups",
    "roles",
    "client_roles",
    "department",
    "department_path",
    "company",
    "position",
    "static",
    "template",
)

NAME_FORMATS = {
    "uri": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
    "basic": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
    "unspecified": "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified",
}

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TEMPLATE_FIELD = re.compile(r"^(custom\.)?[a-z][a-z0-9_]{0,63}$")
_CLAIM_SEGMENT = re.compile(r"^[^\s\x00-\x1f]{1,200}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}$")  # RFC 6749 §3.3 scope-token
_MAX_TEMPLATE = 500


class ClaimRuleError(ValueError):
    """A rule that cannot be saved or used; the message is safe to show to an admin."""


# --- templates ---------------------------------------------------------------------------------

# Template variables: the user attributes, the organization, and custom fields as custom.<name>.
TEMPLATE_VARIABLES = USER_ATTRIBUTES | {"company", "department", "department_path", "position"}


class SafeTemplate:
    """``{given_name} {family_name}``-style text over a flat dict of plain values.

    Parsed with ``string.Formatter().parse`` only to split text from fields; rendering never
    calls ``str.format``, so there is no attribute access, indexing, conversion or format spec:
    a field is a whitelisted name looked up in a dict, nothing more."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ClaimRuleError("a template must be a non-empty string")
        if len(text) > _MAX_TEMPLATE:
            raise ClaimRuleError(f"a template is at most {_MAX_TEMPLATE} characters")
        if "{{" in text or "{%" in text:
            raise ClaimRuleError("templates use {name} fields; expressions are not supported")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ClaimRuleError(f"template is not well formed: {exc}") from None
        self.parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in parsed:
            if name is None:
                self.parts.append((literal, None))
                continue
            if conversion or spec:
                raise ClaimRuleError(f"template field {{{name}}}: no conversions or format specs")
            if not _TEMPLATE_FIELD.match(name) or (
                not name.startswith("custom.") and name not in TEMPLATE_VARIABLES
            ):
                raise ClaimRuleError(
                    f"template field {{{name}}} is not a known variable "
                    "(user attributes, company, department, department_path, position, "
                    "custom.<field>)"
                )
            self.parts.append((literal, name))
        self.text = text

    def render(self, variables: Mapping[str, Any]) -> str:
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                out.append(_plain(variables.get(name)))
        return " ".join("".join(out).split())


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ",".join(_plain(v) for v in value)
    return ""  # anything else is not a plain value and renders as nothing


# --- rules -------------------------------------------------------------------------------------


def split_claim_name(target: str) -> list[str]:
    """``address.street_address`` -> nested object; ``\\.`` keeps a dot inside a name
    (namespaced claims such as ``https://example\\.com/roles``)."""
    parts = re.split(r"(?<!\\)\.", target)
    return [p.replace("\\.", ".") for p in parts]


@dataclass(frozen=True)
class Rule:
    source: dict[str, Any]
    target: str | None = None
    saml_name: str | None = None
    saml_friendly_name: str | None = None
    saml_name_format: str = "uri"
    multi: bool = False
    join: str = ","
    case: str | None = None
    prefix: str = ""
    omit_if_empty: bool = True
    value_type: str = "auto"
    scope: str | None = None
    enabled: bool = True
    template: SafeTemplate | None = field(default=None, compare=False, repr=False)

    @property
    def target_path(self) -> list[str]:
        return split_claim_name(self.target) if self.target else []


_RULE_KEYS = {
    "source",
    "target",
    "saml_name",
    "saml_friendly_name",
    "saml_name_format",
    "multi",
    "join",
    "case",
    "prefix",
    "omit_if_empty",
    "value_type",
    "seed",
    "description",
}

_SOURCE_KEYS: dict[str, set[str]] = {
    "attribute": {"name"},
    "custom_field": {"name"},
    "groups": {"full_path", "include_ancestors"},
    "roles": {"include_client_roles"},
    "client_roles": {"client", "qualify"},
    "department": {"locale"},
    "department_path": {"locale", "separator"},
    "company": {"field", "locale"},
    "position": {"locale"},
    "static": {"value"},
    "template": {"template"},
}


def check_claim_target(target: str) -> str:
    if not isinstance(target, str) or not target or len(target) > 255:
        raise ClaimRuleError("target must be a claim name of 1-255 characters")
    parts = split_claim_name(target)
    if any(not _CLAIM_SEGMENT.match(p) for p in parts):
        raise ClaimRuleError(f"target {target!r} has an empty or invalid segment")
    if parts[0] in REGISTERED_CLAIMS:
        raise ClaimRuleError(
            f"target {parts[0]!r} is a registered JWT/OIDC claim set by the token service; "
            "choose another name"
        )
    return target


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ClaimRuleError(f"{key} must be true or false")
    return value


def _opt_str(data: Mapping[str, Any], key: str, max_len: int = 200) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ClaimRuleError(f"{key} must be a string of at most {max_len} characters")
    return value


def parse_source(source: Any) -> tuple[dict[str, Any], SafeTemplate | None]:
    if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES:
        raise ClaimRuleError(f"source must be an object whose type is one of {SOURCE_TYPES}")
    kind = source["type"]
    unknown = set(source) - {"type"} - _SOURCE_KEYS[kind]
    if unknown:
        raise ClaimRuleError(f"source {kind!r} does not take {sorted(unknown)}")
    template = None
    if kind == "attribute" and source.get("name") not in USER_ATTRIBUTES:
        raise ClaimRuleError(
            f"attribute {source.get('name')!r} is not readable; one of {sorted(USER_ATTRIBUTES)}"
        )
    if kind == "custom_field" and not _IDENT.match(str(source.get("name", ""))):
        raise ClaimRuleError("custom_field needs the field's name")
    if kind == "static":
        value = source.get("value")
        ok_scalar = isinstance(value, (str, bool, int, float))
        ok_list = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not (ok_scalar or ok_list):
            raise ClaimRuleError("static value must be a string, number, boolean or string list")
    if kind == "template":
        template = SafeTemplate(source.get("template"))
    if kind == "company" and source.get("field", "name") not in ("name", "slug"):
        raise ClaimRuleError("company field is 'name' or 'slug'")
    for key in ("full_path", "include_ancestors", "include_client_roles", "qualify"):
        if key in source:
            _bool(source, key, False)
    for key in ("locale", "separator", "client"):
        _opt_str(source, key)
    return dict(source), template


def parse_rule(data: Any, *, scope: str | None = None, enabled: bool = True) -> Rule:
    """Validate a stored rule (a JSON object) into a ``Rule``; raises ClaimRuleError."""
    if not isinstance(data, dict):
        raise ClaimRuleError("a rule is a JSON object")
    unknown = set(data) - _RULE_KEYS
    if unknown:
        raise ClaimRuleError(f"unknown rule keys {sorted(unknown)}")
    source, template = parse_source(data.get("source"))
    target = data.get("target")
    if target is not None:
        check_claim_target(target)
    saml_name = _opt_str(data, "saml_name", 1000)
    if target is None and not saml_name:
        raise ClaimRuleError("a rule needs a target (OIDC claim) or a saml_name (SAML attribute)")
    name_format = data.get("saml_name_format", "uri" if saml_name and ":" in saml_name else "basic")
    if name_format not in NAME_FORMATS:
        raise ClaimRuleError(f"saml_name_format is one of {sorted(NAME_FORMATS)}")
    case = data.get("case")
    if case not in (None, "lower", "upper"):
        raise ClaimRuleError("case is 'lower', 'upper' or absent")
    value_type = data.get("value_type", "auto")
    if value_type not in ("auto", "string", "boolean", "integer"):
        raise ClaimRuleError("value_type is 'auto', 'string', 'boolean' or 'integer'")
    if scope is not None and not _SCOPE.match(scope):
        raise ClaimRuleError(f"scope {scope!r} is not a valid scope name")
    return Rule(
        source=source,
        target=target,
        saml_name=saml_name,
        saml_friendly_name=_opt_str(data, "saml_friendly_name"),
        saml_name_format=name_format,
        multi=_bool(data, "multi", False),
        join=_opt_str(data, "join", 20) if data.get("join") is not None else ",",
        case=case,
        prefix=_opt_str(data, "prefix") or "",
        omit_if_empty=_bool(data, "omit_if_empty", True),
        value_type=value_type,
        scope=scope,
        enabled=enabled,
        template=template,
    )


# --- the subject -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgName:
    """A name with translations ({"de": ...}); ``pick`` falls back de-CH -> de -> name."""

    name: str
    names: Mapping[str, str] = field(default_factory=dict)
    slug: str | None = None

    def pick(self, locale: str | None) -> str:
        if locale:
            tag = locale.replace("_", "-")
            for candidate in (tag, tag.split("-")[0]):
                for key, value in self.names.items():
                    if key.lower() == candidate.lower() and value:
                        return value
        return self.name


@dataclass
class Subject:
    """One user, flattened into plain data for the mapper."""

    attributes: dict[str, Any]
    custom: dict[str, Any] = field(default_factory=dict)
    # Direct memberships as (name, path); ancestors of each as paths, for include_ancestors.
    groups: list[tuple[str, str]] = field(default_factory=list)
    ancestor_groups: list[tuple[str, str]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    client_roles: dict[str, list[str]] = field(default_factory=dict)
    company: OrgName | None = None
    department: OrgName | None = None
    department_path: list[OrgName] = field(default_factory=list)
    position: OrgName | None = None

    def template_variables(self) -> dict[str, Any]:
        out = {k: self.attributes.get(k) for k in USER_ATTRIBUTES}
        out.update({f"custom.{k}": v for k, v in self.custom.items()})
        out["company"] = self.company.name if self.company else None
        out["department"] = self.department.name if self.department else None
        out["department_path"] = "/".join(d.name for d in self.department_path) or None
        out["position"] = self.position.name if self.position else None
        return out


def _locale(source: Mapping[str, Any], subject: Subject) -> str | None:
    wanted = source.get("locale")
    if wanted == "user":
        return subject.attributes.get("locale")
    return wanted


def source_values(rule: Rule, subject: Subject, client_id: str | None) -> list[Any]:
    """The raw values a rule's source yields for this subject (empty when none)."""
    src = rule.source
    kind = src["type"]
    if kind == "attribute":
        value = subject.attributes.get(src["name"])
        return [] if value is None else [value]
    if kind == "custom_field":
        value = subject.custom.get(src["name"])
        if value is None:
            return []
        return list(value) if isinstance(value, list) else [value]
    if kind == "groups":
        pairs = list(subject.groups)
        if src.get("include_ancestors"):
            pairs += [p for p in subject.ancestor_groups if p not in pairs]
        if src.get("full_path"):
            return sorted({"/" + path for _, path in pairs})
        return sorted({name for name, _ in pairs})
    if kind == "roles":
        names = set(subject.roles)
        if src.get("include_client_roles") and client_id:
            names |= set(subject.client_roles.get(client_id, ()))
        return sorted(names)
    if kind == "client_roles":
        cid = src.get("client") or client_id
        if not cid:
            return []
        names = sorted(subject.client_roles.get(cid, ()))
        return [f"{cid}:{n}" for n in names] if src.get("qualify") else names
    locale = _locale(src, subject)
    if kind == "department":
        return [subject.department.pick(locale)] if subject.department else []
    if kind == "department_path":
        if not subject.department_path:
            return []
        return [(src.get("separator") or "/").join(d.pick(locale) for d in subject.department_path)]
    if kind == "company":
        if not subject.company:
            return []
        if src.get("field") == "slug":
            return [subject.company.slug] if subject.company.slug else []
        return [subject.company.pick(locale)]
    if kind == "position":
        return [subject.position.pick(locale)] if subject.position else []
    if kind == "static":
        value = src["value"]
        return list(value) if isinstance(value, list) else [value]
    if kind == "template":
        assert rule.template is not None
        text = rule.template.render(subject.template_variables())
        return [text] if text else []
    raise ClaimRuleError(f"unknown source type {kind!r}")


def _typed(value: Any, value_type: str) -> Any:
    if value_type == "string":
        return _plain(value)
    if value_type == "boolean":
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    if value_type == "integer":
        if isinstance(value, datetime):
            return int(value.timestamp())
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, datetime):
        return int(value.timestamp())  # OIDC times (updated_at) are seconds since the epoch
    if isinstance(value, date):
        return value.isoformat()
    return value


def formatted_values(rule: Rule, values: Iterable[Any]) -> list[Any]:
    out = []
    for v in values:
        if rule.case or rule.prefix:
            v = _plain(v)
            if rule.case == "lower":
                v = v.lower()
            elif rule.case == "upper":
                v = v.upper()
            v = rule.prefix + v
        v = _typed(v, rule.value_type)
        if v is None or v == "":
            continue
        out.append(v)
    return out


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def shape(rule: Rule, values: list[Any]) -> Any:
    """Multi-valued rules give a list; single-valued ones one value, several joined."""
    if rule.multi:
        return values
    if not values:
        return ""
    if len(values) == 1:
        return values[0]
    return rule.join.join(_plain(v) for v in values)


# --- merging and mapping -----------------------------------------------------------------------


def merge_rules(defaults: list[Rule], overrides: list[Rule], key: str) -> list[Rule]:
    """Realm defaults, with every default replaced by the per-client / per-SP rules with the
    same ``key`` ("target" or "saml_name"). A disabled override suppresses the default."""
    overridden = {getattr(r, key) for r in overrides if getattr(r, key)}
    kept = [r for r in defaults if getattr(r, key) and getattr(r, key) not in overridden]
    return [r for r in [*kept, *overrides] if r.enabled and getattr(r, key)]


def _put(claims: dict[str, Any], path: list[str], value: Any, multi: bool) -> None:
    node = claims
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    last = path[-1]
    if last in node:
        existing = node[last]
        if multi and isinstance(existing, list) and isinstance(value, list):
            node[last] = existing + [v for v in value if v not in existing]
        return  # the first rule (in order) wins for single values
    node[last] = value


def released(
    rule: Rule, scopes: set[str], requested: set[str], requestable: set[str] | None = None
) -> bool:
    """A rule is released by its scope, or when its claim is requested by name (OIDC Core
    §5.5) and its scope is one the client may be granted (``requestable``; None: any)."""
    if rule.scope is None or rule.scope in scopes:
        return True
    if rule.target_path[0] not in requested:
        return False
    return requestable is None or rule.scope in requestable


def release_scopes(rules: list[Rule]) -> dict[str, set[str | None]]:
    """For each top-level OIDC claim name: the scopes whose rules produce it (None: a rule
    without a scope, always released)."""
    out: dict[str, set[str | None]] = {}
    for rule in rules:
        if rule.target and rule.enabled:
            out.setdefault(rule.target_path[0], set()).add(rule.scope)
    return out


def map_oidc(
    rules: list[Rule],
    subject: Subject,
    *,
    scopes: Iterable[str],
    client_id: str | None,
    requested: Iterable[str] = (),
    requestable_scopes: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The claims released for these scopes, and the individually requested claim names whose
    scope is in ``requestable_scopes`` (the scopes the client may be granted; None: any)."""
    scope_set, requested_set = set(scopes), set(requested)
    requestable = None if requestable_scopes is None else set(requestable_scopes)
    claims: dict[str, Any] = {}
    for rule in rules:
        if not rule.target or not released(rule, scope_set, requested_set, requestable):
            continue
        if rule.target_path[0] in REGISTERED_CLAIMS:
            continue  # refused when saved; kept out even if a row was edited behind our back
        value = shape(rule, formatted_values(rule, source_values(rule, subject, client_id)))
        if _is_empty(value) and rule.omit_if_empty:
            continue
        _put(claims, rule.target_path, value, rule.multi)
    return claims


@dataclass(frozen=True)
class SamlAttribute:
    name: str
    name_format: str
    friendly_name: str | None
    values: list[str]


def map_saml(rules: list[Rule], subject: Subject) -> list[SamlAttribute]:
    out: dict[str, SamlAttribute] = {}
    for rule in rules:
        if not rule.saml_name:
            continue
        shaped = shape(rule, formatted_values(rule, source_values(rule, subject, None)))
        values = [_plain(v) for v in (shaped if isinstance(shaped, list) else [shaped])]
        values = [v for v in values if v != ""]
        if not values and rule.omit_if_empty:
            continue
        if rule.saml_name in out:
            prev = out[rule.saml_name]
            merged = prev.values + [v for v in values if v not in prev.values]
            out[rule.saml_name] = SamlAttribute(
                prev.name, prev.name_format, prev.friendly_name, merged
            )
            continue
        out[rule.saml_name] = SamlAttribute(
            name=rule.saml_name,
            name_format=NAME_FORMATS[rule.saml_name_format],
            friendly_name=rule.saml_friendly_name,
            values=values,
        )
    return list(out.values())


# --- the default rule set ----------------------------------------------------------------------


def _attr(name: str) -> dict[str, Any]:
    return {"type": "attribute", "name": name}


# (scope, rule): seeded at init as realm-wide defaults. "seed" names each so seeding is idempotent.
DEFAULT_RULES: list[tuple[str | None, dict[str, Any]]] = [
    (
        "profile",
        {
            "seed": "name",
            "target": "name",
            "source": _attr("name"),
            "saml_name": "urn:oid:2.16.840.1.113730.3.1.241",
            "saml_friendly_name": "displayName",
        },
    ),
    (
        "profile",
        {
            "seed": "given_name",
            "target": "given_name",
            "source": _attr("given_name"),
            "saml_name": "urn:oid:2.5.4.42",
            "saml_friendly_name": "givenName",
        },
    ),
    (
        "profile",
        {
            "seed": "family_name",
            "target": "family_name",
            "source": _attr("family_name"),
            "saml_name": "urn:oid:2.5.4.4",
            "saml_friendly_name": "sn",
        },
    ),
    ("profile", {"seed": "middle_name", "target": "middle_name", "source": _attr("middle_name")}),
    (
        "profile",
        {
            "seed": "preferred_username",
            "target": "preferred_username",
            "source": _attr("username"),
            "saml_name": "urn:oid:0.9.2342.19200300.100.1.1",
            "saml_friendly_name": "uid",
        },
    ),
    ("profile", {"seed": "picture", "target": "picture", "source": _attr("avatar")}),
    ("profile", {"seed": "zoneinfo", "target": "zoneinfo", "source": _attr("timezone")}),
    ("profile", {"seed": "locale", "target": "locale", "source": _attr("locale")}),
    ("profile", {"seed": "updated_at", "target": "updated_at", "source": _attr("updated_at")}),
    (
        "email",
        {
            "seed": "email",
            "target": "email",
            "source": _attr("email"),
            "saml_name": "urn:oid:0.9.2342.19200300.100.1.3",
            "saml_friendly_name": "mail",
        },
    ),
    (
        "email",
        {"seed": "email_verified", "target": "email_verified", "source": _attr("email_verified")},
    ),
    (
        "phone",
        {
            "seed": "phone_number",
            "target": "phone_number",
            "source": _attr("phone"),
            "saml_name": "urn:oid:2.5.4.20",
            "saml_friendly_name": "telephoneNumber",
        },
    ),
    (
        "phone",
        {
            "seed": "phone_number_verified",
            "target": "phone_number_verified",
            "source": _attr("phone_verified"),
        },
    ),
    *[
        (
            "address",
            {
                "seed": f"address.{part}",
                "target": f"address.{part}",
                "source": {"type": "custom_field", "name": part},
            },
        )
        for part in (
            "formatted",
            "street_address",
            "locality",
            "region",
            "postal_code",
            "country",
        )
    ],
    (
        "groups",
        {
            "seed": "groups",
            "target": "groups",
            "source": {"type": "groups"},
            "multi": True,
            "omit_if_empty": False,
            "saml_name": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
            "saml_friendly_name": "isMemberOf",
        },
    ),
    (
        "roles",
        {
            "seed": "roles",
            "target": "roles",
            "source": {"type": "roles", "include_client_roles": True},
            "multi": True,
            "omit_if_empty": False,
            "saml_name": "Role",
            "saml_name_format": "basic",
            "saml_friendly_name": "Role",
        },
    ),
]
