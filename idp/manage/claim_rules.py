"""Claim mapping rules (docs/claims.md): list, add, delete.

Permissions: ``claims:rules:read`` / ``claims:rules:create`` / ``claims:rules:delete``.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from ..storage.claims import delete_rule, list_rules, save_rule
from ..storage.models import ClaimRule
from .context import Context


def list_all(
    ctx: Context, *, client_id: str | None = None, sp_entity_id: str | None = None
) -> list[ClaimRule]:
    """The realm rules, or one client's / SP's own rules."""
    ctx.require("claims:rules:read")
    return list_rules(ctx.db, client_id=client_id, sp_entity_id=sp_entity_id)


def add(
    ctx: Context,
    rule: dict[str, Any],
    *,
    client_id: str | None = None,
    sp_entity_id: str | None = None,
    scope: str | None = None,
    sort_order: int = 1000,
    enabled: bool = True,
) -> ClaimRule:
    ctx.require("claims:rules:create")
    row = save_rule(
        ctx.db,
        rule,
        client_id=client_id,
        sp_entity_id=sp_entity_id,
        scope=scope,
        sort_order=sort_order,
        enabled=enabled,
    )
    ctx.audit(
        "claims.rule_added",
        str(row.id),
        client_id=client_id,
        sp_entity_id=sp_entity_id,
        scope=scope,
        enabled=enabled,
        rule=rule,
    )
    return row


def delete(
    ctx: Context,
    rule_id: int,
    *,
    client_id: str | None = None,
    sp_entity_id: str | None = None,
) -> None:
    """Delete a rule; with ``client_id`` (``sp_entity_id``) only a rule of that client (SP):
    NotFound for a rule of anyone else, nothing deleted."""
    ctx.require("claims:rules:delete")
    if client_id is not None or sp_entity_id is not None:
        row = ctx.db.get(ClaimRule, rule_id)
        if row is None or (row.client_id, row.sp_entity_id) != (client_id, sp_entity_id):
            raise NotFound(f"no claim rule {rule_id} here")
    delete_rule(ctx.db, rule_id)
    ctx.audit("claims.rule_deleted", str(rule_id))
