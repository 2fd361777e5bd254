"""Users and groups as SCIM resources (RFC 7643 §4), and a wanted SCIM state as the changes
the management operations make.

Reading: :func:`user_resource` / :func:`group_resource` build the resource from the rows, with
``meta`` (RFC 7643 §3.1) and ``meta.version``, a weak ETag over the whole representation (RFC
7644 §3.14): it changes whenever anything the client can read does, group memberships
included.

Writing: :func:`user_changes` compares a wanted resource (a POST or PUT body, or the current
resource with a PATCH applied to it) with the user and says what differs, as the keys of
``idp.manage.users.update``; the manager and the employee number are returned apart, since
they go through ``idp.manage.org.place_user`` and the custom fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from scim2_models import Context as ScimContext
from scim2_models import Meta
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..storage.models import Group, GroupMember, User
from .filters import EMPLOYEE_NUMBER_FIELD
from .models import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    USER_SCHEMA,
    Email,
    EnterpriseUser,
    FullUser,
    GroupMembership,
    Manager,
    Name,
    PhoneNumber,
)
from .models import Group as ScimGroup
from .models import (
    GroupMember as ScimMember,
)


@dataclass(frozen=True)
class Urls:
    """Where the resources live: ``base`` is the absolute URL of ``/scim/v2``."""

    base: str

    def user(self, uuid: str) -> str:
        return f"{self.base}/Users/{uuid}"

    def group(self, group_id: int | str) -> str:
        return f"{self.base}/Groups/{group_id}"


def version_of(data: dict[str, Any]) -> str:
    """A weak entity tag of a representation (without its own ``meta.version``)."""
    body = {k: v for k, v in data.items() if k != "meta"}
    meta = {k: v for k, v in (data.get("meta") or {}).items() if k != "version"}
    raw = json.dumps({"body": body, "meta": meta}, sort_keys=True, default=str)
    return f'W/"{hashlib.sha256(raw.encode()).hexdigest()[:27]}"'


def _stamp(resource: Any) -> Any:
    """Set ``meta.version`` from the resource's own representation."""
    dumped = resource.model_dump(scim_ctx=ScimContext.RESOURCE_QUERY_RESPONSE)
    resource.meta.version = version_of(dumped)
    return resource


def formatted_name(user: User) -> str | None:
    parts = [p for p in (user.given_name, user.middle_name, user.family_name) if p]
    return " ".join(parts) or None


def user_resource(db: Session, user: User, urls: Urls) -> FullUser:
    """The SCIM User of ``user`` (with the groups it is directly a member of)."""
    groups = db.execute(
        select(Group.id, Group.path)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id)
        .order_by(Group.path)
    ).all()
    manager = None
    if user.manager_id is not None:
        boss = db.scalar(select(User.uuid).where(User.id == user.manager_id))
        if boss is not None:
            manager = Manager(value=boss, ref=urls.user(boss))
    employee_number = (user.custom or {}).get(EMPLOYEE_NUMBER_FIELD)
    enterprise = EnterpriseUser(
        schemas=[ENTERPRISE_SCHEMA],
        employee_number=str(employee_number) if employee_number is not None else None,
        department=user.department.name if user.department is not None else None,
        manager=manager,
    )
    has_name = any((user.given_name, user.middle_name, user.family_name))
    resource = FullUser(
        schemas=[USER_SCHEMA] + ([ENTERPRISE_SCHEMA] if _has_values(enterprise) else []),
        id=user.uuid,
        external_id=user.external_id,
        user_name=user.username,
        name=Name(
            formatted=formatted_name(user),
            given_name=user.given_name,
            middle_name=user.middle_name,
            family_name=user.family_name,
        )
        if has_name
        else None,
        display_name=user.display_name,
        locale=user.locale,
        timezone=user.timezone,
        active=user.status != "inactive",
        emails=[Email(value=user.email, type="work")] if user.email else None,
        phone_numbers=[PhoneNumber(value=user.phone, type="work")] if user.phone else None,
        groups=[
            GroupMembership(value=str(g.id), ref=urls.group(g.id), display=g.path, type="direct")
            for g in groups
        ]
        or None,
        meta=Meta(
            resource_type="User",
            created=user.created_at,
            last_modified=user.updated_at or user.created_at,
            location=urls.user(user.uuid),
        ),
    )
    if _has_values(enterprise):
        resource[EnterpriseUser] = enterprise
    return _stamp(resource)


def _has_values(ext: EnterpriseUser) -> bool:
    return any(
        getattr(ext, name) is not None for name in ("employee_number", "department", "manager")
    )


def group_resource(
    db: Session, group: Group, urls: Urls, *, members_where: Any = None
) -> ScimGroup:
    """The SCIM Group of ``group`` with its direct members (those ``members_where`` lets the
    caller see, when given: a delegated administrator sees only the users in their scope)."""
    query = (
        select(User.uuid, User.display_name, User.username)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == group.id)
        .order_by(User.username)
    )
    if members_where is not None:
        query = query.where(members_where)
    members = db.execute(query).all()
    resource = ScimGroup(
        schemas=[GROUP_SCHEMA],
        id=str(group.id),
        external_id=group.external_id,
        display_name=group.path,
        members=[ScimMember(value=m.uuid, ref=urls.user(m.uuid), type="User") for m in members]
        or None,
        meta=Meta(
            resource_type="Group",
            created=group.created_at,
            last_modified=group.updated_at or group.created_at,
            location=urls.group(group.id),
        ),
    )
    return _stamp(resource)


# --- a wanted state as changes -------------------------------------------------------------------


def _pick(values: list[Any] | None, preferred: tuple[str, ...]) -> str | None:
    """The one value the IdP keeps of a multi-valued attribute: the first of the preferred
    types, else the first."""
    values = [v for v in values or [] if getattr(v, "value", None)]
    if not values:
        return None
    for kind in preferred:
        for v in values:
            if (v.type or "").lower() == kind:
                return v.value
    return values[0].value


@dataclass
class UserChanges:
    """What a wanted SCIM state changes: ``fields`` for ``manage.users.update``; ``manager``
    set when the manager changes (``""`` to remove them)."""

    fields: dict[str, Any] = field(default_factory=dict)
    manager: str | None = None

    def __bool__(self) -> bool:
        return bool(self.fields) or self.manager is not None


def wanted_fields(resource: FullUser) -> dict[str, Any]:
    """The user's fields as the resource states them (None: cleared)."""
    name = resource.name or Name()
    enterprise = resource[EnterpriseUser] if _extension_present(resource) else None
    wanted: dict[str, Any] = {
        "username": resource.user_name,
        "external_id": resource.external_id,
        "given_name": name.given_name,
        "middle_name": name.middle_name,
        "family_name": name.family_name,
        "display_name": resource.display_name,
        "locale": resource.locale,
        "timezone": resource.timezone,
        "email": _pick(resource.emails, ("work",)),
        "phone": _pick(resource.phone_numbers, ("work", "mobile")),
    }
    if resource.active is not None:
        wanted["active"] = resource.active
    wanted["employee_number"] = enterprise.employee_number if enterprise else None
    wanted["manager"] = (
        enterprise.manager.value if enterprise and enterprise.manager else None
    ) or None
    return wanted


def _extension_present(resource: FullUser) -> bool:
    try:
        return resource[EnterpriseUser] is not None
    except (KeyError, AttributeError):
        return False


def user_changes(db: Session, user: User, resource: FullUser) -> UserChanges:
    """What differs between ``user`` and the wanted ``resource``."""
    wanted = wanted_fields(resource)
    out = UserChanges()
    for key in (
        "username",
        "external_id",
        "given_name",
        "middle_name",
        "family_name",
        "display_name",
        "locale",
        "timezone",
        "email",
        "phone",
    ):
        now = getattr(user, key)
        if _norm(wanted[key]) != _norm(now):
            if key == "email" and wanted[key] and now and wanted[key].lower() == now.lower():
                continue
            out.fields[key] = wanted[key]
    if "active" in wanted and wanted["active"] != (user.status != "inactive"):
        out.fields["active"] = wanted["active"]
    current_number = (user.custom or {}).get(EMPLOYEE_NUMBER_FIELD)
    current_number = str(current_number) if current_number is not None else None
    if _norm(wanted["employee_number"]) != _norm(current_number):
        out.fields["custom"] = {EMPLOYEE_NUMBER_FIELD: wanted["employee_number"]}
    current_manager = None
    if user.manager_id is not None:
        current_manager = db.scalar(select(User.uuid).where(User.id == user.manager_id))
    if (wanted["manager"] or None) != current_manager:
        out.manager = wanted["manager"] or ""
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def wanted_members(resource: ScimGroup) -> list[str]:
    """The member ids a group resource states, in order, without repeats."""
    seen: dict[str, None] = {}
    for m in resource.members or []:
        if m.value:
            seen.setdefault(m.value, None)
    return list(seen)
