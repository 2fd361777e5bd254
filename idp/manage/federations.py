"""Federation metadata aggregates (``federation.aggregate``): list them, refresh one now.

Permissions: ``saml:providers:read`` to list, ``saml:providers:update`` to refresh (a refresh
adds, replaces and removes the SPs that came from the aggregate). Aggregates are added with
``idp saml federation add`` or ``[saml] federation_sources``; there is no operation here to add
or edit one.

A refresh started here fetches the aggregate only through the outbound fetcher
(``idp.oidc.fetch``: https only, no private or loopback addresses, bounded time and size, unless
``[outbound]`` says otherwise), never through ``file://`` or a bare ``urllib`` call. A failed
refresh is recorded on the federation (``last_error``) and in the audit log; the SPs of the
last good aggregate stay until its validUntil passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from federation.aggregate import AggregateError, import_federation

from ..errors import NotFound
from ..storage.models import SamlServiceProvider
from ..storage.models_saml import SamlFederation
from . import metadata_fetch
from .context import Context


@dataclass(frozen=True)
class RefreshOutcome:
    federation: str
    ok: bool
    error: str | None = None
    result: dict[str, Any] | None = None


def list_all(ctx: Context) -> list[SamlFederation]:
    ctx.require("saml:providers:read")
    return list(ctx.db.scalars(select(SamlFederation).order_by(SamlFederation.name)))


def get(ctx: Context, name: str) -> SamlFederation:
    ctx.require("saml:providers:read")
    row = ctx.db.get(SamlFederation, name)
    if row is None:
        raise NotFound(f"no federation {name!r}")
    return row


def _fetch(ctx: Context, url: str) -> bytes:
    try:
        return metadata_fetch.fetch(ctx, url)
    except metadata_fetch.FetchFailed as exc:
        raise AggregateError(f"cannot fetch {url}: {exc.reason}") from None


def refresh(ctx: Context, name: str) -> RefreshOutcome:
    """Fetch, verify and import the aggregate now. A failure is an outcome (recorded on the
    federation and audited), not an exception, so the record of it is committed."""
    ctx.require("saml:providers:update")
    fed = get(ctx, name)
    now = ctx.svc.clock.utcnow()
    cfg = ctx.svc.settings.saml
    try:
        data = _fetch(ctx, fed.url)
        # The aggregate is verified whole before anything is written.
        result = import_federation(ctx.db, fed, data, now, cfg.min_refresh_seconds)
    except AggregateError as exc:
        reason = str(exc)[:1000]
        fed.last_error = reason
        fed.next_refresh = now + timedelta(seconds=cfg.min_refresh_seconds)
        if fed.valid_until is not None and fed.valid_until <= now:
            # The last good aggregate is no longer valid: its SPs lose their trust.
            for row in ctx.db.scalars(
                select(SamlServiceProvider).where(
                    SamlServiceProvider.origin == f"federation:{name}"
                )
            ):
                row.enabled = False
        ctx.db.flush()
        ctx.audit("saml.federation_refresh_failed", name, reason=reason)
        return RefreshOutcome(name, False, error=reason)
    ctx.audit(
        "saml.federation_refreshed",
        name,
        entities=result["entities"],
        added=result["added"],
        updated=result["updated"],
        removed=result["removed"],
    )
    return RefreshOutcome(name, True, result=result)
