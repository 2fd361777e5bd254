"""``/api/v1/clients/{client_id}/claim-rules`` and ``/api/v1/saml/providers/{provider_id}/
attribute-rules``: the claim mapping rules of one OIDC client or one SAML SP (``docs/claims.md``;
``idp.manage.claim_rules``, as the console's client and SP pages and ``idp claims``).

A rule is the mapper's JSON object; the mapper judges it when it is saved, and a rule it
refuses (an unknown source, a registered claim as target, a template with code in it) answers
409 naming why, nothing stored: the schema cannot say everything the mapper checks.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool

from ...errors import NotFound, ValidationError
from ...manage import claim_rules, clients
from ...manage import service_providers as sps
from ...storage.models import ClaimRule
from .common import ApiModel, Strict
from .framework import PREFIX, ApiProblem, Call, Reply, operation
from .saml_providers import entity_id_of
from .shapes import json_int


class ClaimRuleIn(Strict):
    rule: dict[str, Any] = Field(
        description="the mapping rule (docs/claims.md): `source`, and `target` (OIDC) or "
        "`saml_name` (SAML), with the format options",
        json_schema_extra={
            "examples": [{"target": "department", "source": {"type": "department"}}]
        },
    )
    scope: str | None = Field(
        None, max_length=200, description="the scope that releases the rule (OIDC); null: always"
    )
    enabled: StrictBool = Field(
        True, description="a disabled rule of a client removes the realm default it names"
    )
    sort_order: json_int(0, 1_000_000) = 1000


class ClaimRuleOut(ApiModel):
    id: int
    rule: dict[str, Any]
    scope: str | None
    enabled: bool
    sort_order: int


class ClaimRuleList(ApiModel):
    items: list[ClaimRuleOut]


def _out(row: ClaimRule) -> ClaimRuleOut:
    return ClaimRuleOut(
        id=row.id,
        rule=dict(row.rule or {}),
        scope=row.scope,
        enabled=row.enabled,
        sort_order=row.sort_order,
    )


def _refused(exc: ValidationError) -> ApiProblem:
    return ApiProblem(
        409,
        "Rule refused",
        f"the claims mapper refuses this rule: {exc}",
        kind="rule-refused",
        errors=[{"field": "rule", "message": str(exc)}],
    )


def _add(call: Call, owner: dict[str, str], check, location: str) -> Reply:
    body: ClaimRuleIn = call.body
    try:
        with call.transaction() as ctx:
            check(ctx)
            row = claim_rules.add(
                ctx,
                body.rule,
                scope=body.scope,
                enabled=body.enabled,
                sort_order=body.sort_order,
                **owner,
            )
            out = _out(row)
    except ValidationError as exc:
        raise _refused(exc) from None
    return Reply(status=201, body=out, headers={"Location": f"{location}/{out.id}"})


# --- one OIDC client ----------------------------------------------------------------------------


@operation(
    "GET",
    "/clients/{client_id}/claim-rules",
    tag="clients",
    summary="List a client's claim rules",
    response=ClaimRuleList,
    description="The client's own rules (they override the realm defaults with the same "
    "`target`); `claims:rules:read`.",
)
def list_client_claim_rules(call: Call, client_id: str) -> Reply:
    with call.transaction() as ctx:
        clients.get(ctx, client_id)
        items = [_out(r) for r in claim_rules.list_all(ctx, client_id=client_id)]
    return Reply(body=ClaimRuleList(items=items))


@operation(
    "POST",
    "/clients/{client_id}/claim-rules",
    tag="clients",
    summary="Add a claim rule to a client",
    body=ClaimRuleIn,
    response=ClaimRuleOut,
    status=201,
    errors=(409,),
    description="`claims:rules:create`. 409 when the claims mapper refuses the rule "
    "(docs/claims.md), nothing stored.",
)
def add_client_claim_rule(call: Call, client_id: str) -> Reply:
    return _add(
        call,
        {"client_id": client_id},
        lambda ctx: clients.get(ctx, client_id),
        f"{PREFIX}/clients/{client_id}/claim-rules",
    )


@operation(
    "DELETE",
    "/clients/{client_id}/claim-rules/{rule_id}",
    tag="clients",
    summary="Remove a client's claim rule",
    status=204,
    description="`claims:rules:delete`. 404 for a rule that is not this client's.",
)
def delete_client_claim_rule(call: Call, client_id: str, rule_id: str) -> Reply:
    number = _rule_id(rule_id)
    with call.transaction() as ctx:
        clients.get(ctx, client_id)
        claim_rules.delete(ctx, number, client_id=client_id)
    return Reply(status=204)


# --- one SAML SP --------------------------------------------------------------------------------


@operation(
    "GET",
    "/saml/providers/{provider_id}/attribute-rules",
    tag="saml",
    summary="List a service provider's attribute rules",
    response=ClaimRuleList,
    description="The SP's own rules (they override the realm defaults with the same "
    "`saml_name`); `claims:rules:read`.",
)
def list_sp_attribute_rules(call: Call, provider_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    with call.transaction() as ctx:
        sps.get(ctx, entity_id)
        items = [_out(r) for r in claim_rules.list_all(ctx, sp_entity_id=entity_id)]
    return Reply(body=ClaimRuleList(items=items))


@operation(
    "POST",
    "/saml/providers/{provider_id}/attribute-rules",
    tag="saml",
    summary="Add an attribute rule to a service provider",
    body=ClaimRuleIn,
    response=ClaimRuleOut,
    status=201,
    errors=(409,),
    description="`claims:rules:create`. 409 when the claims mapper refuses the rule, nothing "
    "stored.",
)
def add_sp_attribute_rule(call: Call, provider_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    return _add(
        call,
        {"sp_entity_id": entity_id},
        lambda ctx: sps.get(ctx, entity_id),
        f"{PREFIX}/saml/providers/{provider_id}/attribute-rules",
    )


@operation(
    "DELETE",
    "/saml/providers/{provider_id}/attribute-rules/{rule_id}",
    tag="saml",
    summary="Remove a service provider's attribute rule",
    status=204,
    description="`claims:rules:delete`. 404 for a rule that is not this SP's.",
)
def delete_sp_attribute_rule(call: Call, provider_id: str, rule_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    number = _rule_id(rule_id)
    with call.transaction() as ctx:
        sps.get(ctx, entity_id)
        claim_rules.delete(ctx, number, sp_entity_id=entity_id)
    return Reply(status=204)


def _rule_id(text: str) -> int:
    """A path's rule id; 404 for anything that is not one (as for an unknown id)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound(f"no claim rule {text[:40]!r}")
    return int(text)
