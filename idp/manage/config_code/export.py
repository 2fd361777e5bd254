"""What the IdP is configured with now, as the configuration file's plain dict.

The order is stable (resources by name, fields in a fixed order, lists of names sorted, claim
rules by their order), so exporting what was applied gives back the same text. Secrets are
never in it: a client's secret is a reference to an environment variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from ...settings import applied_keys, load_settings
from ...storage.models import (
    ClaimRule,
    ClientServiceRole,
    Group,
    GroupRole,
    PermissionGroup,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    SamlServiceProvider,
)
from .. import claim_rules, permission_groups, policies
from ..clients import SECRET_METHODS
from ..clients import list_all as list_clients
from ..context import Context
from ..service_providers import list_all as list_service_providers
from .schema import VERSION

FEDERATION = "federation:"
URL = "url:"


def secret_variable(client_id: str) -> str:
    """The environment variable an exported client secret refers to."""
    return f"IDP_CLIENT_{re.sub(r'[^A-Z0-9]+', '_', client_id.upper()).strip('_')}_SECRET"


def plain(value: Any) -> Any:
    """JSON/YAML-friendly and stable: mappings with sorted keys, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def role_ref(role_client: str | None, name: str) -> str:
    return name if role_client is None else f"{role_client}/{name}"


def claim_rule_entry(row: ClaimRule) -> dict[str, Any]:
    return {
        "order": row.sort_order,
        "scope": row.scope,
        "enabled": row.enabled,
        "rule": plain(row.rule),
    }


def effective_policies(stored: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]):
    """The policy sections as a node started now would use them: TOML file, stored values,
    then the environment."""
    settings = load_settings(environ=environ, applied=stored or None)
    return {
        section: {key: plain(settings[section][key]) for key in keys}
        for section, keys in applied_keys().items()
    }


def _roles(ctx: Context) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Every role by (client_id, name) in the file's form."""
    db = ctx.db
    ctx.require("roles:roles:read")
    rows = list(db.scalars(select(Role)))
    by_id = {r.id: r for r in rows}
    perms: dict[int, list[str]] = {}
    for role_id, permission in db.execute(
        select(RolePermission.role_id, RolePermission.permission)
    ):
        perms.setdefault(role_id, []).append(permission)
    pgs: dict[int, list[str]] = {}
    for role_id, name in db.execute(
        select(RolePermissionGroup.role_id, PermissionGroup.name).join(
            PermissionGroup, PermissionGroup.id == RolePermissionGroup.permission_group_id
        )
    ):
        pgs.setdefault(role_id, []).append(name)
    includes: dict[int, list[str]] = {}
    for parent, child in db.execute(select(RoleComposite.role_id, RoleComposite.child_id)):
        c = by_id[child]
        includes.setdefault(parent, []).append(role_ref(c.client_id, c.name))
    return {
        (r.client_id, r.name): {
            "description": r.description,
            "permissions": sorted(perms.get(r.id, [])),
            "permission_groups": sorted(pgs.get(r.id, [])),
            "includes": sorted(includes.get(r.id, [])),
        }
        for r in rows
    }


def _groups(ctx: Context) -> dict[str, dict[str, Any]]:
    ctx.require("groups:groups:read")
    db = ctx.db
    roles: dict[int, list[str]] = {}
    for group_id, client_id, name in db.execute(
        select(GroupRole.group_id, Role.client_id, Role.name).join(
            Role, Role.id == GroupRole.role_id
        )
    ):
        roles.setdefault(group_id, []).append(role_ref(client_id, name))
    tree: dict[str, dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for g in db.scalars(select(Group).order_by(Group.path)):
        node = {"description": g.description, "roles": sorted(roles.get(g.id, [])), "groups": {}}
        parent, _, name = g.path.rpartition("/")
        (nodes[parent]["groups"] if parent in nodes else tree)[name] = node
        nodes[g.path] = node
    return _sorted_tree(tree)


def _sorted_tree(tree: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: {**tree[name], "groups": _sorted_tree(tree[name]["groups"])} for name in sorted(tree)
    }


def _rules(ctx: Context, **owner: str | None) -> list[dict[str, Any]]:
    return [claim_rule_entry(r) for r in claim_rules.list_all(ctx, **owner)]


def export(ctx: Context, environ: Mapping[str, str]) -> dict[str, Any]:
    """The whole configuration the file manages, as a plain dict (see docs/configuration.md)."""
    db = ctx.db
    roles = _roles(ctx)
    service_roles: dict[str, list[str]] = {}
    for client_id, name in db.execute(
        select(ClientServiceRole.client_id, Role.name).join(
            Role, Role.id == ClientServiceRole.role_id
        )
    ):
        service_roles.setdefault(client_id, []).append(name)

    clients: dict[str, Any] = {}
    for row in list_clients(ctx):
        meta = plain({k: v for k, v in row.meta.items() if k != "client_name"})
        entry: dict[str, Any] = {
            "name": row.name or row.client_id,
            "enabled": row.enabled,
            "first_party": row.first_party,
        }
        method = row.meta.get("token_endpoint_auth_method", "client_secret_basic")
        if row.secret_hash and method in SECRET_METHODS:
            entry["client_secret"] = "${env:" + secret_variable(row.client_id) + "}"
        entry["service_roles"] = sorted(service_roles.get(row.client_id, []))
        entry["metadata"] = meta
        entry["roles"] = {
            name: spec
            for (cid, name), spec in sorted(roles.items(), key=_by_name)
            if cid == row.client_id
        }
        entry["claim_rules"] = _rules(ctx, client_id=row.client_id)
        clients[row.client_id] = entry

    sps: dict[str, Any] = {}
    for summary in list_service_providers(ctx):
        if summary.origin.startswith(FEDERATION):
            continue
        row = db.get(SamlServiceProvider, summary.entity_id)
        entry = {}
        if row.origin.startswith(URL):
            entry["metadata_url"] = row.origin[len(URL) :]
        entry["metadata"] = row.metadata_xml
        entry["settings"] = plain(row.settings or {})
        entry["claim_rules"] = _rules(ctx, sp_entity_id=row.entity_id)
        sps[row.entity_id] = entry

    return {
        "version": VERSION,
        "policies": effective_policies(policies.stored(ctx), environ),
        "permission_groups": {
            pg.name: {"description": pg.description, "permissions": sorted(pg.permissions or [])}
            for pg in permission_groups.list_all(ctx)
        },
        "roles": {
            name: spec for (cid, name), spec in sorted(roles.items(), key=_by_name) if cid is None
        },
        "groups": _groups(ctx),
        "clients": clients,
        "saml_service_providers": sps,
        "claim_rules": _rules(ctx),
    }


def _by_name(item: tuple[tuple[str | None, str], Any]) -> str:
    return item[0][1]


def federation_managed(ctx: Context) -> list[tuple[str, str]]:
    """(entity_id, federation) of the SPs a federation manages: never in the file."""
    return [
        (s.entity_id, s.origin[len(FEDERATION) :])
        for s in list_service_providers(ctx)
        if s.origin.startswith(FEDERATION)
    ]


def header(ctx: Context) -> list[str]:
    """Comment lines for the top of an exported file."""
    lines = [
        "IdP configuration (idp config export). Apply with: idp config apply FILE [--dry-run]",
        "Client secrets are references ${env:NAME}: set those variables when applying.",
    ]
    fed: dict[str, int] = {}
    for _, name in federation_managed(ctx):
        fed[name] = fed.get(name, 0) + 1
    for name, count in sorted(fed.items()):
        lines.append(
            f"Skipped: {count} SAML service provider(s) of federation {name!r}: the federation "
            "manages them (idp saml federation refresh)."
        )
    return lines
