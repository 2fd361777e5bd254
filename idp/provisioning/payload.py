"""What a target is sent: the same SCIM User and Group resources the inbound endpoint serves
(``idp.scim.mapping``), shaped for a request to another service provider (RFC 7644 §3.3):

- no ``id`` and no ``meta`` (the target assigns its own), no read-only ``groups``;
- ``externalId`` is the IdP's stable user id (``uuid``, by default), so the target can tell
  which of its users the IdP manages;
- ``active`` is false for every account that may not sign in here (inactive, locked,
  pending, expired) and for a user who left the target's scope;
- the Enterprise ``manager`` is left out (it names a user by the target's id, which the IdP
  may not know yet);
- a group is sent with its path as ``displayName`` and the members the target holds, by
  their ids there.

The per-target ``mapping`` (:data:`DEFAULT_MAPPING`) picks where ``userName`` and
``externalId`` come from and whether the Enterprise extension is sent.

The SCIM resource models (scim2-models) are imported by the two payload builders, not with
this module: the management API and the console check a target's mapping here in every worker.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..storage.models import Group, GroupMember, User
from ..storage.models_provisioning import ProvisioningObject, ProvisioningTarget

DEFAULT_MAPPING: dict[str, Any] = {
    # "username" or "email": the target's userName.
    "userName": "username",
    # "uuid" (the IdP's stable id), "external_id" (the id a provisioning client gave) or "none".
    "externalId": "uuid",
    # Send department and employeeNumber in the Enterprise User extension.
    "enterprise": True,
}
CHOICES = {"userName": ("username", "email"), "externalId": ("uuid", "external_id", "none")}


def mapping_of(target: ProvisioningTarget) -> dict[str, Any]:
    return {**DEFAULT_MAPPING, **(target.mapping or {})}


def mapping_problem(mapping: dict[str, Any]) -> str | None:
    """Why ``mapping`` cannot be used (None when it can)."""
    for key, value in mapping.items():
        if key not in DEFAULT_MAPPING:
            return f"unknown mapping key {key!r}"
        if key in CHOICES and value not in CHOICES[key]:
            return f"mapping {key} must be one of {', '.join(CHOICES[key])}"
        if key == "enterprise" and not isinstance(value, bool):
            return "mapping enterprise must be true or false"
    return None


def user_name(user: User, mapping: dict[str, Any]) -> str | None:
    return user.email if mapping["userName"] == "email" else user.username


def user_payload(db: Session, user: User, target: ProvisioningTarget, *, covered: bool) -> dict:
    from scim2_models import Context as ScimContext

    from ..scim.mapping import Urls, user_resource
    from ..scim.models import ENTERPRISE_SCHEMA, USER_SCHEMA

    mapping = mapping_of(target)
    resource = user_resource(db, user, Urls(""))
    body = resource.model_dump(scim_ctx=ScimContext.RESOURCE_CREATION_REQUEST)
    for key in ("id", "meta", "groups"):
        body.pop(key, None)
    body["userName"] = user_name(user, mapping)
    external = {"uuid": user.uuid, "external_id": user.external_id, "none": None}
    body.pop("externalId", None)
    if external[mapping["externalId"]]:
        body["externalId"] = external[mapping["externalId"]]
    body["active"] = covered and user.status == "active"
    enterprise = body.pop(ENTERPRISE_SCHEMA, None) or {}
    enterprise.pop("manager", None)
    enterprise = {k: v for k, v in enterprise.items() if v is not None}
    body["schemas"] = [USER_SCHEMA]
    if mapping["enterprise"] and enterprise:
        body["schemas"].append(ENTERPRISE_SCHEMA)
        body[ENTERPRISE_SCHEMA] = enterprise
    return body


def group_payload(db: Session, group: Group, target: ProvisioningTarget) -> dict:
    """The group with the members the target holds (by their ids there)."""
    from ..scim.models import GROUP_SCHEMA

    remote_ids = db.scalars(
        select(ProvisioningObject.remote_id)
        .join(User, User.uuid == ProvisioningObject.object_id)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(
            GroupMember.group_id == group.id,
            ProvisioningObject.target_id == target.id,
            ProvisioningObject.kind == "user",
            ProvisioningObject.remote_id.is_not(None),
        )
        .order_by(ProvisioningObject.remote_id)
    ).all()
    body: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "displayName": group.path,
        "externalId": str(group.id),
        "members": [{"value": rid} for rid in remote_ids],
    }
    return body
