"""``idp claims``: claim mapping rules (see docs/claims.md)."""

from __future__ import annotations

import json

import click

from ..errors import ValidationError
from ..manage import claim_rules
from .base import as_operator, emit, ready


@click.group("claims")
def claims() -> None:
    """Claim mapping rules (see docs/claims.md)."""


@claims.command("list")
@click.option("--client-id", default=None)
@click.option("--sp", "sp_entity_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def claims_list(client_id, sp_entity_id, as_json):
    """The realm rules, or one client's / SP's own rules."""
    with as_operator(ready()) as ctx:
        rows = [
            {
                "id": r.id,
                "scope": r.scope,
                "enabled": r.enabled,
                "sort_order": r.sort_order,
                "rule": r.rule,
            }
            for r in claim_rules.list_all(ctx, client_id=client_id, sp_entity_id=sp_entity_id)
        ]
    text = "\n".join(
        f"{r['id']:>4} {r['scope'] or '-':10} {'on ' if r['enabled'] else 'off'} "
        f"{json.dumps(r['rule'])}"
        for r in rows
    )
    emit(as_json, {"rules": rows}, text)


@claims.command("add")
@click.argument("rule_json")
@click.option("--client-id", default=None)
@click.option("--sp", "sp_entity_id", default=None)
@click.option("--scope", default=None, help="The OIDC scope that releases it (omit: always).")
@click.option("--order", "sort_order", type=int, default=1000)
@click.option("--disabled", is_flag=True, help="Save disabled (suppresses a realm default).")
@click.option("--json", "as_json", is_flag=True)
def claims_add(rule_json, client_id, sp_entity_id, scope, sort_order, disabled, as_json):
    """Add a rule, e.g. '{"target":"department","source":{"type":"department_path"}}'."""
    try:
        rule = json.loads(rule_json)
    except ValueError as exc:
        raise ValidationError(f"the rule is not JSON: {exc}") from None
    with as_operator(ready()) as ctx:
        row = claim_rules.add(
            ctx,
            rule,
            client_id=client_id,
            sp_entity_id=sp_entity_id,
            scope=scope,
            sort_order=sort_order,
            enabled=not disabled,
        )
        result = {"id": row.id}
    emit(as_json, result, f"added claim rule {result['id']}")


@claims.command("delete")
@click.argument("rule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def claims_delete(rule_id, as_json):
    with as_operator(ready()) as ctx:
        claim_rules.delete(ctx, rule_id)
    emit(as_json, {"deleted": rule_id}, f"deleted claim rule {rule_id}")
