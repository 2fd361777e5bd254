"""The configuration file: its YAML form and its shape (docs/configuration.md, "Configuration as
code"). Reading refuses duplicate keys, unknown keys and wrong types with one line that names
the place (``clients.web.enabled: ...``)."""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from ...errors import ValidationError

VERSION = 1
# client_secret: ${env:NAME}: the secret itself is never written into the file.
ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PermissionGroupSpec(_Strict):
    description: str | None = None
    permissions: list[str] = Field(default_factory=list)


class RoleSpec(_Strict):
    description: str | None = None
    permissions: list[str] = Field(default_factory=list)
    permission_groups: list[str] = Field(default_factory=list)
    # Composite roles: a global role by name, a client's role as client_id/name.
    includes: list[str] = Field(default_factory=list)


class GroupSpec(_Strict):
    description: str | None = None
    roles: list[str] = Field(default_factory=list)
    groups: dict[str, GroupSpec] = Field(default_factory=dict)


class ClaimRuleSpec(_Strict):
    order: int = 1000
    scope: str | None = None
    enabled: bool = True
    rule: dict[str, Any]


class ClientSpec(_Strict):
    name: str | None = None
    enabled: bool = True
    first_party: bool = False
    # ${env:NAME}; left out: a client that has a secret keeps it.
    client_secret: str | None = None
    service_roles: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    # None (left out): the client's own claim rules are not managed by the file.
    claim_rules: list[ClaimRuleSpec] | None = None


class ServiceProviderSpec(_Strict):
    # Where the metadata was fetched from (kept as the SP's origin; apply never fetches it).
    metadata_url: str | None = None
    metadata: str
    settings: dict[str, Any] = Field(default_factory=dict)
    claim_rules: list[ClaimRuleSpec] | None = None


class PoliciesSpec(_Strict):
    password_policy: dict[str, Any] | None = None
    lockout: dict[str, Any] | None = None
    mfa: dict[str, Any] | None = None
    session: dict[str, Any] | None = None
    registration: dict[str, Any] | None = None
    branding: dict[str, Any] | None = None
    devices: dict[str, Any] | None = None
    notifications: dict[str, Any] | None = None


class Document(_Strict):
    """A section left out (None) is not managed by the file: nothing of its kind changes."""

    version: Literal[1]
    policies: PoliciesSpec | None = None
    permission_groups: dict[str, PermissionGroupSpec] | None = None
    roles: dict[str, RoleSpec] | None = None
    groups: dict[str, GroupSpec] | None = None
    clients: dict[str, ClientSpec] | None = None
    saml_service_providers: dict[str, ServiceProviderSpec] | None = None
    claim_rules: list[ClaimRuleSpec] | None = None


def where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            out += " (key)"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "the file"


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "literal_error": f"must be {VERSION}",
}


def parse(data: Any) -> Document:
    """The document from loaded YAML; ValidationError names the first problem's place."""
    if not isinstance(data, dict):
        raise ValidationError("the file must be a YAML mapping with version: 1")
    try:
        return Document.model_validate(data)
    except PydanticError as exc:
        err = exc.errors()[0]
        message = _MESSAGES.get(err["type"], err["msg"])
        raise ValidationError(f"{where(err['loc'])}: {message}") from None


# --- YAML ----------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (the second would silently win)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            mark = key_node.start_mark
            raise ValidationError(f"line {mark.line + 1}: key {key!r} is given twice")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValidationError(f"not valid YAML: {at}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"not valid YAML: {' '.join(str(exc).split())}") from None


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a file for people: every value written out, no &anchors


def _str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_yaml(document: dict[str, Any], comments: list[str] = ()) -> str:
    """The document as YAML, in the document's own key order, comments first."""
    head = "".join(f"# {line}\n" for line in comments)
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,  # long values (metadata XML) stay on one line
    )
    return head + body
