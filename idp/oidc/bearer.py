"""Who is calling a protected API of the IdP itself (the admin API, SCIM) with a Bearer token
(or a DPoP-bound one with its proof, RFC 9449 §7; a certificate-bound one from the certificate
it is bound to, RFC 8705 §3: ``sender.check_holder``).

RFC 6750 §2.1: the token comes in the ``Authorization`` header only (no form body, no query
string: the management APIs take JSON, and tokens in URLs leak into logs). The token must be
one this IdP issued and still honours (signature, expiry, revocation, the SSO session it hangs
on), carry the wanted scope, and be meant for the IdP: a token issued for another resource
server (RFC 8707 ``resource``) is refused here. A user's token also needs the user to still be
able to sign in; a client's own token (client_credentials) acts as its service account.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..services import Services
from ..sso.users import account_usable
from ..storage.models import User
from .clients import client_cache
from .sender import Presentation, challenge, check_holder, split_authorization
from .server import engine


@dataclass(frozen=True)
class BearerCaller:
    """The holder of a valid token: a user (``user_id`` set) or a client's service account."""

    client_id: str
    scopes: frozenset[str]
    user_id: int | None = None
    user_uuid: str | None = None


@dataclass(frozen=True)
class BearerRefusal:
    """Why the call is refused: ``status`` 401 (no or bad token) or 403 (scope); ``error`` is
    the RFC 6750 §3.1 code for the ``WWW-Authenticate`` header (empty when no token came)."""

    status: int
    error: str
    description: str
    dpop: bool = False  # a DPoP challenge (RFC 9449 §7.1)
    headers: dict[str, str] = field(default_factory=dict)  # DPoP-Nonce

    def challenge(self, scope: str) -> str:
        """The ``WWW-Authenticate`` value."""
        return challenge(self.error, self.description, dpop=self.dpop,
                         scope=scope if self.status == 403 else None)


def authenticate(
    svc: Services, authorization: str | None, scope: str, shown: Presentation
) -> BearerCaller | BearerRefusal:
    if not authorization:
        return BearerRefusal(401, "", "An access token is required (Authorization: Bearer …).")
    split = split_authorization(authorization)
    if split is None:
        return BearerRefusal(
            401, "invalid_request", "Send the token as Authorization: Bearer <token>."
        )
    kind, value = split
    eng = engine(svc)
    claims = eng.validate_access_token(value)
    if claims is None:
        return BearerRefusal(401, "invalid_token", "The access token is invalid or expired.",
                             kind == "dpop")
    refused = check_holder(svc, claims, kind, value, shown)
    if refused is not None:
        return BearerRefusal(401, refused.error, refused.description, refused.dpop,
                             refused.headers)
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or claims.get("aud") not in (client_id, [client_id]):
        return BearerRefusal(401, "invalid_token", "The access token is not meant for this API.")
    client = client_cache(svc).get(client_id)
    if client is None:
        return BearerRefusal(401, "invalid_token", "The client is no longer registered.")
    scopes = frozenset(str(claims.get("scope", "")).split())
    if scope not in scopes:
        return BearerRefusal(
            403, "insufficient_scope", f"The access token lacks the scope {scope}."
        )
    sub = claims.get("sub")
    if sub == client_id:
        return BearerCaller(client_id, scopes)
    with svc.sessions() as db:
        user = db.query(User).filter_by(uuid=eng.token_user(claims)).one_or_none()
        if user is None or not account_usable(svc, user):
            return BearerRefusal(401, "invalid_token", "The user is no longer active.")
        return BearerCaller(client_id, scopes, user.id, user.uuid)
