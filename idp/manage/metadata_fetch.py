"""SAML metadata fetched from a URL an administrator gives (an SP's metadata URL, a federation's
aggregate), only through the outbound fetcher (``idp.oidc.fetch``): https, no loopback,
private, link-local or otherwise non-public address unless ``[outbound]`` allows it, no
redirect followed, bounded by ``[outbound] timeout`` / ``max_bytes`` and by
``[saml] max_metadata_bytes``. Never ``file://`` and never a bare ``urllib`` call.

The caller checks the permission first (``fetch_sp_metadata`` checks ``saml:providers:create``
itself), so nobody without it can make the IdP connect anywhere."""

from __future__ import annotations

from typing import Any

from ..errors import Conflict, ValidationError
from ..oidc.fetch import OutboundError, outbound
from ..saml.registry import parse_entity
from ..storage.models import SamlServiceProvider
from . import service_providers as sps
from .context import Context

ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9"
URL_ORIGIN = "url:"
# The SP remembers where it came from as ``origin`` (at most 300 characters): "url:" + the URL.
MAX_SP_URL = 300 - len(URL_ORIGIN)


class FetchFailed(ValidationError):
    """The URL was refused or failed; ``reason`` is short and safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch(ctx: Context, url: str) -> bytes:
    """The document at ``url``, or FetchFailed with the reason."""
    if len(url) > 2000:
        raise FetchFailed("the URL is longer than 2000 characters")
    try:
        answer = outbound(ctx.svc).request("GET", url, headers={"Accept": ACCEPT})
    except OutboundError as exc:
        raise FetchFailed(exc.reason) from None
    if answer.status != 200:
        raise FetchFailed(f"the server answered HTTP {answer.status}")
    limit = ctx.svc.settings.saml.max_metadata_bytes
    if len(answer.body) > limit:
        raise FetchFailed(f"the metadata is larger than {limit} bytes")
    return answer.body


def fetch_sp_metadata(ctx: Context, url: str) -> bytes:
    """An SP's metadata from its URL, for someone who may add SPs."""
    ctx.require("saml:providers:create")
    return fetch(ctx, url)


class NotFromUrl(Conflict):
    """The SP was not added from a URL, so there is nothing to fetch again."""


def add_sp_from_url(
    ctx: Context, url: str, *, settings: dict[str, Any] | None = None
) -> SamlServiceProvider:
    """Register an SP from the metadata at ``url`` (remembered as its origin ``url:<url>`` for
    :func:`refetch_sp`). FetchFailed when the URL is refused (SSRF rules, before connecting) or
    fails; ValidationError when the document is not usable SP metadata; Conflict when the
    entity is already registered."""
    ctx.require("saml:providers:create")
    if len(url) > MAX_SP_URL:
        raise FetchFailed(f"the URL is longer than {MAX_SP_URL} characters")
    data = fetch(ctx, url)
    return sps.add(ctx, data, origin=URL_ORIGIN + url, settings=settings or {})


def refetch_sp(ctx: Context, entity_id: str) -> SamlServiceProvider:
    """Fetch an URL-added SP's metadata again (a new certificate, new endpoints); its settings,
    rules and enabled state stay. NotFromUrl for an SP added otherwise; FetchFailed /
    ValidationError (metadata for another entity, unusable metadata) change nothing."""
    ctx.require("saml:providers:create")
    ctx.require("saml:providers:update")
    row = sps.get(ctx, entity_id)
    if not row.origin.startswith(URL_ORIGIN):
        raise NotFromUrl(f"{entity_id} was not added from a URL ({row.origin})")
    origin, was_enabled = row.origin, row.enabled
    data = fetch(ctx, origin.removeprefix(URL_ORIGIN))
    entity = parse_entity(data)
    if (entity.get("entityID") or "").strip() != entity_id:
        raise ValidationError("the metadata at the URL is for another entity")
    row = sps.add(ctx, data, origin=origin, replace=True)
    # New metadata is no reason to turn on an SP an administrator turned off.
    row.enabled = was_enabled
    ctx.db.flush()
    return row
