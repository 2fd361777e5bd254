"""``/api/v1/saml/providers/from-url`` and ``/api/v1/saml/providers/{provider_id}/refresh``:
add a SAML SP from the URL of its metadata, and fetch that metadata again
(``idp.manage.metadata_fetch``, as the console's "Add service provider" by URL and "Fetch
metadata again").

The URL is fetched only through the outbound fetcher: https (unless ``[outbound] allow_http``),
no loopback, private, link-local or other non-public address (unless ``[outbound]
allow_private_addresses``), no redirect, bounded time and size. A URL refused by those rules
is refused before any connection. A well-formed request that fails because of what it meets (a
refused or unreachable URL, an answer that is not usable metadata, an SP already registered,
an SP not added from a URL) answers 409 with the reason, nothing changed.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...errors import ValidationError
from ...manage import metadata_fetch
from .common import EXACT_QUERY, Strict, anchored, matching
from .framework import PREFIX, ApiProblem, Call, Reply, operation
from .saml_providers import SpAddQuery, SpOut, _out, entity_id_of

MetadataUrl = Annotated[
    str,
    Field(
        max_length=metadata_fetch.MAX_SP_URL,
        description="https URL of the SP's metadata (http only when `[outbound] allow_http`)",
    ),
    *matching(anchored(r"https?://[!-~]+")),
]


class SpFromUrl(Strict):
    model_config = EXACT_QUERY  # the URL is judged as sent

    url: MetadataUrl
    settings: SpAddQuery = Field(None, description="settings to store with the new SP")


def _failed(exc: ValidationError) -> ApiProblem:
    if isinstance(exc, metadata_fetch.FetchFailed):
        return ApiProblem(
            409,
            "Metadata not fetched",
            f"the URL was not fetched: {exc.reason}",
            kind="metadata-not-fetched",
            errors=[{"field": "url", "message": exc.reason}],
        )
    return ApiProblem(
        409,
        "Unusable metadata",
        f"this is not usable SAML 2.0 SP metadata: {exc}",
        kind="unusable-metadata",
    )


@operation(
    "POST",
    "/saml/providers/from-url",
    tag="saml",
    summary="Add a SAML service provider from its metadata URL",
    body=SpFromUrl,
    response=SpOut,
    status=201,
    errors=(409,),
    description="The IdP fetches the metadata through its outbound rules (SSRF: a non-public "
    "address is refused before any connection) and registers the SP with origin `url:<url>`, "
    "which `refresh` fetches again later. `saml:providers:create`. 409 when the URL is refused "
    "or fails, when the answer is not usable SP metadata, or when the entity is already "
    "registered; nothing changed.",
)
def add_saml_provider_from_url(call: Call) -> Reply:
    body: SpFromUrl = call.body
    settings = body.settings.model_dump(exclude_none=True) if body.settings else {}
    try:
        with call.transaction() as ctx:
            out = _out(metadata_fetch.add_sp_from_url(ctx, body.url, settings=settings))
    except ValidationError as exc:
        raise _failed(exc) from None
    return Reply(status=201, body=out, headers={"Location": f"{PREFIX}/saml/providers/{out.id}"})


@operation(
    "POST",
    "/saml/providers/{provider_id}/refresh",
    tag="saml",
    summary="Fetch an SP's metadata again from its URL",
    response=SpOut,
    errors=(409,),
    description="For an SP added from a URL (origin `url:…`): its metadata is fetched again "
    "(a new certificate, new endpoints); its settings, rules and enabled state stay. "
    "`saml:providers:create` and `saml:providers:update`. 409 for an SP added otherwise, a "
    "refused or failed URL, or metadata that is unusable or for another entity; nothing "
    "changed.",
)
def refresh_saml_provider(call: Call, provider_id: str) -> Reply:
    entity_id = entity_id_of(provider_id)
    try:
        with call.transaction() as ctx:
            out = _out(metadata_fetch.refetch_sp(ctx, entity_id))
    except ValidationError as exc:
        raise _failed(exc) from None
    return Reply(body=out)
