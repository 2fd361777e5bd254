"""One role, group, OIDC client and SAML SP to hang network rules on, for the tests of the
IP rules' API, console and CLI; and their stored rules read back."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from idp.manage import Actor, iprules, transaction
from idp.manage import clients as manage_clients
from idp.manage import groups as manage_groups
from idp.manage import roles as manage_roles

SP = "https://wiki.example.org/sp"


@dataclass
class Scopes:
    role: int
    group: int
    client: str
    sp: str

    def key(self, kind: str) -> int | str:
        return getattr(self, kind)


def sp_metadata(entity_id: str) -> str:
    return (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{entity_id}"><md:SPSSODescriptor protocolSupportEnumeration='
        '"urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding='
        '"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )


def make_scopes(svc) -> Scopes:
    from idp.saml.registry import SpRegistry

    with transaction(svc, Actor.operator("test")) as ctx:
        role = manage_roles.create(ctx, "contractors-role", [])
        group = manage_groups.create(ctx, "contractors")
        manage_clients.create(
            ctx,
            "web",
            name="web",
            redirect_uris=["https://rp.example.org/cb"],
            grant_types=["authorization_code"],
            scope="openid",
        )
        SpRegistry(ctx.db).add(sp_metadata(SP), origin="manual")
        return Scopes(role.id, group.id, "web", SP)


def provider_id(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def rules(svc, kind: str, key: int | str) -> dict[str, list[str]]:
    with transaction(svc, Actor.operator("test")) as ctx:
        return iprules.get(ctx, kind, key).as_dict()
