"""Who may hold the scopes that act on the IdP itself (``admin``, ``scim``).

A user holds scope S when their effective permissions allow ``oauth:scope:S``; a client's
service account (client_credentials) when its service roles (with their composites and
permission groups) do.
"""

from __future__ import annotations

from sqlalchemy import select

from ..core import rbac
from ..services import Services
from ..storage.claims import has_permission
from ..storage.models import (
    ClientServiceRole,
    PermissionGroup,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
)
from .clients import OAuthClient


def service_account_grants(db, client_id: str) -> set[str]:
    roots = list(db.scalars(select(ClientServiceRole.role_id).where(
        ClientServiceRole.client_id == client_id)))
    if not roots:
        return set()
    children: dict[int, list[int]] = {}
    for parent, child in db.execute(select(RoleComposite.role_id, RoleComposite.child_id)):
        children.setdefault(parent, []).append(child)
    role_ids = rbac.role_closure(roots, children)
    grants = list(db.scalars(select(RolePermission.permission).where(
        RolePermission.role_id.in_(role_ids))))
    for perms in db.scalars(select(PermissionGroup.permissions).join(
            RolePermissionGroup,
            RolePermissionGroup.permission_group_id == PermissionGroup.id).where(
            RolePermissionGroup.role_id.in_(role_ids))):
        grants.extend(perms)
    normalized = set()
    for grant in grants:
        try:
            normalized.add(rbac.normalize_grant(grant))
        except rbac.PermissionError_:
            continue
    return normalized


def actor_may_hold_scope(svc: Services, client: OAuthClient, user_id: int | None,
                         scope: str) -> bool:
    permission = f"oauth:scope:{scope}"
    with svc.sessions() as db:
        if user_id is not None:
            return has_permission(db, svc.store, user_id, permission)
        return rbac.allows(service_account_grants(db, client.client_id), permission)
