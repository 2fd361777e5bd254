"""The stored network rules of roles, groups, clients and SPs (``models_iprules.IpRule``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from ..core.iprules import ALLOW, DENY
from .models_iprules import IpRule

# What a rule hangs on: the scope kind and the column holding its key.
COLUMNS: dict[str, Any] = {
    "role": IpRule.role_id,
    "group": IpRule.group_id,
    "client": IpRule.client_id,
    "sp": IpRule.sp_entity_id,
}


def rules_of(db: Session, kind: str, key: int | str) -> dict[str, list[str]]:
    """{"allow": [...], "deny": [...]} of one role / group / client / SP, in entry order."""
    out: dict[str, list[str]] = {ALLOW: [], DENY: []}
    rows = db.execute(
        select(IpRule.action, IpRule.network).where(COLUMNS[kind] == key).order_by(IpRule.id)
    )
    for action, network in rows:
        out[action].append(network)
    return out


def replace_rules(
    db: Session, kind: str, key: int | str, allow: Iterable[str], deny: Iterable[str]
) -> None:
    """Make ``allow`` / ``deny`` (canonical, checked by the caller) the scope's whole rules."""
    column = COLUMNS[kind]
    db.execute(delete(IpRule).where(column == key))
    for action, networks in ((ALLOW, allow), (DENY, deny)):
        for network in networks:
            db.add(IpRule(**{column.key: key}, action=action, network=network))
    db.flush()


def rules_for_holder(
    db: Session, role_ids: Iterable[int], group_ids: Iterable[int]
) -> dict[tuple[str, int], dict[str, list[str]]]:
    """The rules of these roles and groups, by ("role", id) / ("group", id); scopes without
    rules are absent. One query."""
    roles, groups = list(role_ids), list(group_ids)
    if not roles and not groups:
        return {}
    conditions = []
    if roles:
        conditions.append(IpRule.role_id.in_(roles))
    if groups:
        conditions.append(IpRule.group_id.in_(groups))
    out: dict[tuple[str, int], dict[str, list[str]]] = {}
    rows = db.execute(
        select(IpRule.role_id, IpRule.group_id, IpRule.action, IpRule.network)
        .where(or_(*conditions))
        .order_by(IpRule.id)
    )
    for role_id, group_id, action, network in rows:
        scope = ("role", role_id) if role_id is not None else ("group", group_id)
        out.setdefault(scope, {ALLOW: [], DENY: []})[action].append(network)
    return out


def any_holder_rules(db: Session) -> bool:
    """Does any role or group carry a rule (most installations: none, and no check is due)?"""
    found = db.scalar(
        select(IpRule.id)
        .where(or_(IpRule.role_id.is_not(None), IpRule.group_id.is_not(None)))
        .limit(1)
    )
    return found is not None
