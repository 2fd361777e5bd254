"""SAML metadata fetched from a URL an administrator gives (an SP's metadata URL, a federation's
aggregate), only through the outbound fetcher (``idp.oidc.fetch``): https, no loopback,
private, link-local or otherwise non-public address unless ``[outbound]`` allows it, no
redirect followed, bounded by ``[outbound] timeout`` / ``max_bytes`` and by
``[saml] max_metadata_bytes``. Never ``file://`` and never a bare ``urllib`` call.

The caller checks the permission first (``fetch_sp_metadata`` checks ``saml:providers:create``
itself), so nobody without it can make the IdP connect anywhere."""

from __future__ import annotations

from ..errors import ValidationError
from ..oidc.fetch import OutboundError, outbound
from .context import Context

ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9"


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
