"""Who the assertion is about: NameID (saml-core 8.3) and the released attributes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..storage.models import Group, GroupMember, User
from ..storage.models_saml import SamlPersistentId
from .registry import NAME_ID_FORMATS

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


class NameIdUnavailable(Exception):
    """The chosen NameID format has no value for this user (e.g. no e-mail address)."""


@dataclass(frozen=True)
class IssuedNameId:
    format: str  # short name: persistent, transient, email, unspecified
    value: str
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None

    @property
    def format_uri(self) -> str:
        return NAME_ID_FORMATS[self.format]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "value": self.value,
            "nq": self.name_qualifier,
            "spnq": self.sp_name_qualifier,
        }


@dataclass(frozen=True)
class Attr:
    """One attribute to release; the same shape as the claims mapper's SamlAttribute."""

    name: str
    name_format: str
    friendly_name: str | None
    values: list[str]


def persistent_value(db: Session, user_id: int, sp_entity_id: str) -> str:
    """The user's pairwise persistent identifier at this SP, created on first use."""
    found = db.scalar(
        select(SamlPersistentId.value).where(
            SamlPersistentId.user_id == user_id, SamlPersistentId.sp_entity_id == sp_entity_id
        )
    )
    if found:
        return found
    value = secrets.token_urlsafe(32)
    try:
        with db.begin_nested():
            db.add(SamlPersistentId(sp_entity_id=sp_entity_id, user_id=user_id, value=value))
    except IntegrityError:  # a parallel request of the same user created it first
        return db.scalar(
            select(SamlPersistentId.value).where(
                SamlPersistentId.user_id == user_id,
                SamlPersistentId.sp_entity_id == sp_entity_id,
            )
        )
    return value


def issue_name_id(
    db: Session,
    user: User,
    fmt: str,
    idp_entity_id: str,
    sp_entity_id: str,
    earlier: dict[str, Any] | None = None,
) -> IssuedNameId:
    """The NameID for this response. ``earlier`` is the NameID this SSO session already gave
    the SP (``IssuedNameId.to_dict``): a transient identifier lives as long as the session
    (saml-core 8.3.8), so a repeat SSO to the same SP gets the same one, as it gets the same
    SessionIndex; a new session gets a new one."""
    if fmt == "persistent":
        return IssuedNameId(
            "persistent", persistent_value(db, user.id, sp_entity_id), idp_entity_id, sp_entity_id
        )
    if fmt == "transient":
        if earlier and earlier.get("format") == "transient" and earlier.get("value"):
            return IssuedNameId("transient", earlier["value"], idp_entity_id, sp_entity_id)
        return IssuedNameId("transient", "_" + secrets.token_hex(20), idp_entity_id, sp_entity_id)
    if fmt == "email":
        if not user.email:
            raise NameIdUnavailable("the user has no e-mail address")
        return IssuedNameId("email", user.email)
    return IssuedNameId("unspecified", user.username)


# Attribute names from the eduPerson / inetOrgPerson schemas (urn:oid form, MACE-Dir SAML
# attribute profile) so SP libraries map them to their friendly names themselves.
_OIDS = {
    "uid": "urn:oid:0.9.2342.19200300.100.1.1",
    "mail": "urn:oid:0.9.2342.19200300.100.1.3",
    "givenName": "urn:oid:2.5.4.42",
    "sn": "urn:oid:2.5.4.4",
    "displayName": "urn:oid:2.16.840.1.113730.3.1.241",
    "isMemberOf": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
}


def user_attributes(db: Session, user: User, sp_entity_id: str, now: datetime) -> list[Attr]:
    """The attributes for this SP: from the claims mapper when it is installed, else the
    built-in release of the directory's basic fields."""
    try:
        from ..storage.claims import saml_attributes
    except ImportError:
        return _basic_attributes(db, user, now)
    return [
        Attr(a.name, a.name_format, a.friendly_name, [str(v) for v in a.values])
        for a in saml_attributes(db, user.id, sp_entity_id=sp_entity_id, user=user)
    ]


def _basic_attributes(db: Session, user: User, now: datetime) -> list[Attr]:
    display = user.display_name or " ".join(p for p in (user.given_name, user.family_name) if p)
    groups = db.scalars(
        select(Group.path)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(
            GroupMember.user_id == user.id,
            or_(GroupMember.expires_at.is_(None), GroupMember.expires_at > now),
        )
        .order_by(Group.path)
    ).all()
    values = {
        "uid": [user.username],
        "mail": [user.email] if user.email else [],
        "givenName": [user.given_name] if user.given_name else [],
        "sn": [user.family_name] if user.family_name else [],
        "displayName": [display] if display else [],
        "isMemberOf": list(groups),
    }
    return [Attr(_OIDS[name], NAME_FORMAT_URI, name, vals) for name, vals in values.items() if vals]


def release_filter(attrs: list[Attr], allowed: list[str] | None) -> list[Attr]:
    """Keep only the attributes an SP's settings allow (by URI or friendly name)."""
    if allowed is None:
        return attrs
    wanted = set(allowed)
    return [a for a in attrs if a.name in wanted or (a.friendly_name or "") in wanted]
