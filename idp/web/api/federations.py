"""``/api/v1/saml/federations``: SAML federation metadata aggregates (``docs/api.md``,
"SAML federations"): list them with their last refresh, validity, entity count and last error,
and refresh one now.

Federations are added with ``idp saml federation add`` or ``[saml] federation_sources``; the API
shows and refreshes them (``idp.manage.federations``). A refresh started here fetches the
aggregate only through the outbound fetcher (https, public addresses, bounded time and size,
as ``[outbound]`` says); a refresh that fails answers ``ok: false`` with the reason, which is
also recorded on the federation."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...manage import federations
from .common import ApiModel
from .framework import Call, Reply, operation


class FederationOut(ApiModel):
    name: str
    url: str
    entity_count: int = Field(description="service providers imported at the last refresh")
    last_refresh: datetime | None
    valid_until: datetime | None = Field(description="the aggregate's validUntil")
    next_refresh: datetime | None
    last_error: str | None = Field(description="why the last refresh failed; null when it worked")


class FederationList(ApiModel):
    items: list[FederationOut]


class Refused(ApiModel):
    entity_id: str
    reason: str


class RefreshOut(ApiModel):
    federation: str
    ok: bool = Field(description="false when the aggregate was not fetched or not trusted")
    error: str | None
    entities: int | None
    added: int | None
    updated: int | None
    removed: int | None
    skipped: int | None
    refused: list[Refused]


def _out(row) -> FederationOut:
    return FederationOut(
        name=row.name,
        url=row.url,
        entity_count=row.entity_count or 0,
        last_refresh=row.last_refresh,
        valid_until=row.valid_until,
        next_refresh=row.next_refresh,
        last_error=row.last_error,
    )


@operation(
    "GET",
    "/saml/federations",
    tag="saml",
    summary="List SAML federations",
    response=FederationList,
)
def list_federations(call: Call) -> Reply:
    with call.transaction() as ctx:
        items = [_out(f) for f in federations.list_all(ctx)]
    return Reply(body=FederationList(items=items))


@operation(
    "POST",
    "/saml/federations/{name}/refresh",
    tag="saml",
    summary="Refresh a SAML federation now",
    response=RefreshOut,
    description="Fetch, verify and import the aggregate now. A failure (unreachable, refused "
    "URL, bad signature, expired) answers `ok: false` with the reason, recorded on the "
    "federation; the SPs of the last good aggregate stay until its validUntil passes.",
)
def refresh_federation(call: Call, name: str) -> Reply:
    with call.transaction() as ctx:
        outcome = federations.refresh(ctx, name)
    result = outcome.result or {}
    return Reply(
        body=RefreshOut(
            federation=outcome.federation,
            ok=outcome.ok,
            error=outcome.error,
            entities=result.get("entities"),
            added=result.get("added"),
            updated=result.get("updated"),
            removed=result.get("removed"),
            skipped=result.get("skipped"),
            refused=[Refused(**r) for r in result.get("refused", [])],
        )
    )
