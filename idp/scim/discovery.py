"""The discovery resources (RFC 7643 §5-7, RFC 7644 §4): ServiceProviderConfig, the two
ResourceTypes, and the Schemas of :mod:`idp.scim.models` as they are (so what they publish is
exactly what this server keeps)."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    Meta,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
)

from .models import EnterpriseUser, FullUser, Group, User
from .service import MAX_RESULTS


def service_provider_config(base: str) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="OAuth Bearer Token",
                description="An access token of this IdP with the scope scim "
                "(RFC 6750, in the Authorization header).",
                spec_uri="https://www.rfc-editor.org/rfc/rfc6750",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )


def resource_types(base: str) -> list[ResourceType]:
    out = []
    for model, description in ((FullUser, "User accounts"), (Group, "Groups")):
        rt = ResourceType.from_resource(model)
        rt.description = description
        rt.meta = Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/{rt.id}")
        out.append(rt)
    return out


def schemas(base: str) -> list[Schema]:
    out = []
    for model in (User, Group, EnterpriseUser):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
        out.append(schema)
    return out


def find(items: list[Any], key: str) -> Any | None:
    """One discovery resource by its id (ResourceType ids compare case-insensitively)."""
    for item in items:
        if str(item.id) == key or str(item.id).lower() == key.lower():
            return item
    return None
