"""Offline access (OIDC Core §11: refresh tokens granted with ``offline_access``) as the person
it belongs to sees and ends it on the account page.

An application holds offline access while one of its offline refresh-token families for the
user is live: not revoked, its newest token not used up, not past its absolute expiry nor idle
for ``oidc.refresh_idle_days``. Each
application is listed once with when it was first granted (the oldest family's first token) and
when it last used it. Revoking goes through the engine's one revocation
(``Engine.revoke_grants``): every live offline family of that application *for this user
only* is revoked, its access tokens die with it, and each family gets a ``token.revoked``
audit row naming the user as actor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, select

from ..core.client_metadata import safe_uri
from ..services import Services
from ..storage.models import Client
from ..storage.models_oauth import RefreshToken
from .server import engine

REVOKED_BY_USER = "account_offline_revoked"


@dataclass(frozen=True)
class OfflineAccess:
    """One application's offline access for one user."""

    client_id: str
    name: str
    logo_uri: str | None
    granted_at: datetime
    last_used_at: datetime


def _live_families(svc: Services, user_id: int, client_id: str | None = None):
    now = svc.clock.utcnow()
    query = select(RefreshToken.grant_id).where(
        RefreshToken.user_id == user_id,
        RefreshToken.offline.is_(True),
        RefreshToken.revoked.is_(False),
        RefreshToken.used_at.is_(None),
        RefreshToken.expires_at > now,
        RefreshToken.last_used_at > now - timedelta(days=svc.settings.oidc.refresh_idle_days),
    )
    if client_id is not None:
        query = query.where(RefreshToken.client_id == client_id)
    return query


def offline_access(svc: Services, user_id: int) -> list[OfflineAccess]:
    """The applications holding offline access for the user, by name."""
    with svc.sessions() as db:
        rows = db.execute(
            select(RefreshToken.client_id, func.min(RefreshToken.created_at),
                   func.max(RefreshToken.last_used_at))
            .where(RefreshToken.user_id == user_id,
                   RefreshToken.grant_id.in_(_live_families(svc, user_id)))
            .group_by(RefreshToken.client_id)
        ).all()
        clients = {c.client_id: c for c in db.scalars(
            select(Client).where(Client.client_id.in_([r[0] for r in rows])))}
        found = [OfflineAccess(cid, _name(clients.get(cid), cid), _logo(clients.get(cid)),
                               granted, used) for cid, granted, used in rows]
    return sorted(found, key=lambda a: a.name.lower())


def _name(row: Client | None, client_id: str) -> str:
    return (row.name if row is not None else None) or client_id


def _logo(row: Client | None) -> str | None:
    uri = (row.meta or {}).get("logo_uri") if row is not None else None
    return uri if uri and safe_uri("logo_uri", uri) else None


def revoke_offline_access(svc: Services, user_id: int, user_uuid: str, client_id: str, *,
                          ip: str | None = None, user_agent: str | None = None,
                          request_id: str | None = None) -> int:
    """End the application's offline access for this user (never another user's): how many
    families were revoked (0 when it held none). ``ip``, ``user_agent`` and ``request_id``
    stamp the audit rows."""
    with svc.sessions() as db:
        grant_ids = set(db.scalars(_live_families(svc, user_id, client_id)))
    stamp = SimpleNamespace(remote_addr=ip, user_agent=user_agent, request_id=request_id)
    engine(svc).revoke_grants(grant_ids, audit_reason=REVOKED_BY_USER, request=stamp,
                              actor=user_uuid)
    return len(grant_ids)
