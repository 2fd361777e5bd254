"""The acr / step-up policy: what the MFA policy (``[mfa] policies``, ``core.policy``) asks of
a user signing in for a request, and the acr a reused SSO session must then have.

The protocol engines ask :func:`required_acr_values` (or :func:`required_acr_for`, holding the
user) before an SSO session answers a request: a single-factor session must not answer a
client or SP whose policy demands MFA; the login steps up instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from ..core.authn import ACR_MFA, AuthnRequest
from ..core.policy import MfaPolicy, MfaRequirement, MfaSubject, mfa_requirement
from ..core.steps import enrolled_factors
from ..storage.models import Group, GroupMember, Role
from ..storage.rbac import grants_for
from .users import load_user

if TYPE_CHECKING:  # the container's type only: it is built above the hub
    from ..services import Services


def mfa_policy(svc: Services) -> MfaPolicy:
    """The ``[mfa]`` policy, parsed once per app (``Services.mfa_policy``)."""
    return svc.mfa_policy


def requirement(svc: Services, db: Any, user: Any, req: AuthnRequest | None) -> MfaRequirement:
    """What the MFA policy says about this user signing in for ``req`` (None = no client)."""
    now = svc.clock.utcnow()
    rules = mfa_policy(svc)
    # Group and role rules are the only ones that look at memberships: without such a rule
    # (the usual case) the login reads neither.
    kinds = {rule.kind for rule in rules.rules}
    groups: list[str] = []
    if "group" in kinds:
        groups = db.scalars(
            select(Group.path)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id)
            .where(or_(GroupMember.expires_at.is_(None), GroupMember.expires_at > now))
        ).all()
    roles: list[str] = []
    if "role" in kinds:
        role_ids = grants_for(db, svc.store, user.id, clock=svc.clock).role_ids
        roles = db.scalars(select(Role.name).where(Role.id.in_(role_ids))).all() if role_ids else []
    subject = MfaSubject(
        username=user.username,
        groups=tuple(groups),
        roles=tuple(roles),
        protocol=req.protocol if req else None,
        client_id=req.client_id if req else None,
        user_required=user.require_mfa,
        created_at=user.created_at,
    )
    return mfa_requirement(rules, subject, now)


def required_acr_values(svc: Services, req: AuthnRequest, user_uuid: str) -> list[str]:
    """For the protocol engines, before they reuse an SSO session for ``req``: ``[ACR_MFA]``
    when an MFA policy covers this user at this client/SP (a single-factor session must then
    not answer it; the login steps up), else ``[]``. Users in their grace period without a
    factor get ``[]``, as at the login."""
    with svc.sessions() as db:
        user = load_user(db, uuid=user_uuid)
        return required_acr_for(svc, db, user, req) if user is not None else []


def required_acr_for(svc: Services, db: Any, user: Any, req: AuthnRequest) -> list[str]:
    """``required_acr_values`` for a caller that holds the user already (one query less)."""
    need = requirement(svc, db, user, req)
    if not need.required:
        return []
    if need.grace and not enrolled_factors(svc, user, db):
        return []
    return [ACR_MFA]
