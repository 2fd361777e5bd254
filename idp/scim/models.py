"""The SCIM resources this server serves (RFC 7643 §4): the core User with the Enterprise
extension, and the core Group, each holding exactly the attributes the IdP stores.

They are scim2-models resources with the standard schema URNs, trimmed to what is kept: the
``/Schemas`` endpoint publishes them as they are (so a client knows what round-trips), filters
are validated against them (an attribute not here is ``invalidFilter``), and PATCH paths resolve
against them. Attributes of the standard schemas that are not here (``title``, ``addresses``...)
are dropped from a request, as Entra ID and Okta send them whether a service keeps them or not.

Where the IdP is the master of a value, the attribute is ``readOnly``: ``groups`` (RFC 7643
§4.1.2), and the Enterprise ``department``, which names the user's place in the IdP's
organization tree (placed with ``idp users place`` or the admin API).
"""

from typing import Annotated, Any, ClassVar, Union

from pydantic import Field
from scim2_models import (
    URN,
    CaseExact,
    ComplexAttribute,
    Extension,
    Mutability,
    Reference,
    Required,
    Resource,
    Returned,
    Uniqueness,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Name(ComplexAttribute):
    formatted: Annotated[str | None, Mutability.read_only, Returned.request] = None
    """The full name, composed from the parts (given, middle, family); returned when asked
    for (``attributes=name.formatted``)."""

    family_name: str | None = None
    given_name: str | None = None
    middle_name: str | None = None


class Email(ComplexAttribute):
    value: str | None = None
    """The user's one e-mail address: of several sent, the primary, else the ``work`` one,
    else the first. Reported with the type ``work``."""

    type: str | None = Field(None, examples=["work"])


class PhoneNumber(ComplexAttribute):
    value: str | None = None
    """The user's one phone number: of several sent, the primary, else ``work``, else
    ``mobile``, else the first. Reported with the type ``work``."""

    type: str | None = Field(None, examples=["work"])


class GroupMembership(ComplexAttribute):
    value: Annotated[str | None, Mutability.read_only] = None
    ref: Annotated[Reference["Group"] | None, Mutability.read_only] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display: Annotated[str | None, Mutability.read_only] = None
    type: Annotated[str | None, Mutability.read_only] = Field(None, examples=["direct"])


class User(Resource[Any]):
    __schema__ = URN(USER_SCHEMA)

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = None
    name: Name | None = None
    display_name: str | None = None
    locale: str | None = Field(None, examples=["en-US", "de-DE", "fr", "pt-BR"])
    """A language tag (BCP 47)."""

    timezone: str | None = Field(
        None, examples=["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
    )
    """An IANA time zone name."""
    active: Annotated[bool | None, Required.true] = None
    """Every account has an administrative status, so it always has a value: a creation
    without it makes an active user, a replacement without it keeps the status."""
    emails: list[Email] | None = None
    phone_numbers: list[PhoneNumber] | None = None
    groups: Annotated[list[GroupMembership] | None, Mutability.read_only] = None

    Name: ClassVar[type[ComplexAttribute]] = Name
    Emails: ClassVar[type[ComplexAttribute]] = Email
    PhoneNumbers: ClassVar[type[ComplexAttribute]] = PhoneNumber
    Groups: ClassVar[type[ComplexAttribute]] = GroupMembership


class Manager(ComplexAttribute):
    value: Annotated[str | None, CaseExact.true] = None
    """The id of the manager's User resource."""

    ref: Reference["User"] | None = Field(None, serialization_alias="$ref", validation_alias="$ref")


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE_SCHEMA)

    employee_number: str | None = None
    """Kept in the user's custom field ``employee_number`` (docs/scim.md)."""

    department: Annotated[str | None, Mutability.read_only] = None
    """The name of the user's department in the IdP's organization tree."""

    manager: Manager | None = None

    Manager: ClassVar[type[ComplexAttribute]] = Manager


class GroupMember(ComplexAttribute):
    value: Annotated[str | None, Mutability.immutable, CaseExact.true, Required.true] = None
    ref: Annotated[Reference[Union["User", "Group"]] | None, Mutability.immutable] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])


class Group(Resource[Any]):
    __schema__ = URN(GROUP_SCHEMA)

    display_name: Annotated[str | None, Required.true] = None
    members: list[GroupMember] | None = None

    Members: ClassVar[type[ComplexAttribute]] = GroupMember


FullUser = User[EnterpriseUser]

__all__ = [
    "ENTERPRISE_SCHEMA",
    "GROUP_SCHEMA",
    "USER_SCHEMA",
    "EnterpriseUser",
    "FullUser",
    "Group",
    "Returned",
    "User",
]
