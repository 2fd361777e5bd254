"""Which user claims a client receives (OIDC Core §5.4 scopes, §5.5 the ``claims`` request),
for ID tokens and UserInfo alike. Claims come from the claims mapper (``storage.claims``)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Protocol

from ..core.claims import REGISTERED_CLAIMS
from ..services import Services
from ..storage.claims import claim_release_scopes, oidc_claims
from .clients import OAuthClient


class ScopePolicy(Protocol):
    """What this module needs of the engine (``server.Engine``)."""

    svc: Services

    def permitted_scope(
        self, client: OAuthClient, user_id: int | None, requested: str | None
    ) -> str: ...


def user_claims(
    eng: ScopePolicy,
    user_id: int,
    client: OAuthClient,
    scopes: list[str],
    claims_request: dict | None,
    *,
    db: Any = None,
    user: Any = None,
) -> dict[str, Any]:
    """The user's claims released to this client for these scopes (never ``sub``). Claims
    named in the ``claims`` request are released only when their scope is one the client may
    be granted now (OIDC Core §5.5 does not widen what the client is allowed). ``db`` and
    ``user``: the caller's session and the user it loaded already (userinfo)."""
    requestable = None
    if claims_request:
        requestable = eng.permitted_scope(client, user_id, None).split()
    with nullcontext(db) if db is not None else eng.svc.sessions() as db:
        return oidc_claims(
            db,
            user_id,
            client_id=client.client_id,
            scopes=scopes,
            claims_request=claims_request,
            requestable_scopes=requestable or [],
            user=user,
        )


def claims_release(
    eng: ScopePolicy, client: OAuthClient, user_id: int, scope: str, claims_request: dict | None
) -> tuple[dict | None, list[str]]:
    """What to keep of an authorization request's ``claims`` parameter (OIDC Core §5.5), and
    the claims it asks for beyond the granted ``scope`` (which the user must consent to one by
    one). A claim is kept when a rule without a scope or of a granted scope produces it, or
    when its scope is one the client may be granted (registered ``scope``; admin/scim only
    with the user's permission); any other claim is dropped, as §5.5.1 lets the OP do."""
    if not claims_request:
        return claims_request, []
    names = {n for member in claims_request.values() if isinstance(member, dict) for n in member}
    with eng.svc.sessions() as db:
        by_name = claim_release_scopes(db, client.client_id)
    granted = set(scope.split())
    wanted = {s for n in names for s in by_name.get(n, ()) if s is not None}
    requestable = (
        set(eng.permitted_scope(client, user_id, " ".join(sorted(wanted))).split())
        if wanted
        else set()
    )
    kept, beyond = set(), []
    for name in sorted(names):
        scopes = by_name.get(name, set())
        if name in REGISTERED_CLAIMS or None in scopes or scopes & granted:
            kept.add(name)  # registered claims are the token service's; the mapper skips them
        elif scopes & requestable:
            kept.add(name)
            beyond.append(name)
    filtered = {
        member: ({n: v for n, v in spec.items() if n in kept} if isinstance(spec, dict) else spec)
        for member, spec in claims_request.items()
    }
    return filtered, beyond
