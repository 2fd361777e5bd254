"""OAuth 2.0 Token Exchange (RFC 8693) under an explicit per-client policy (default deny).

A confidential client that holds the grant ``urn:ietf:params:oauth:grant-type:token-exchange``
and a ``token_exchange`` policy in its metadata (checked by ``idp.core.client_metadata``) may
trade a token of ours that represents a user (the ``subject_token``) for a new token issued to
itself (RFC 8693 §2.1). The policy says:

- ``accept_from``: the clients whose tokens it may present (the subject token's ``client_id``,
  an ID token's audience). A refresh token must moreover be the presenting client's own;
- ``audiences``: the ``audience`` / ``resource`` values it may ask for (a ``resource`` must
  also pass the RFC 8707 rules the other grants apply); without either the token's audience is
  the client itself;
- ``delegation``: with an ``actor_token`` (one of the client's own tokens) the new token carries
  ``act`` naming the actor, nested over the subject token's own ``act`` (§4.1). Only our own
  tokens are subject tokens and we issue no ``may_act`` (§4.4), so none is consulted;
- ``impersonation``: without an actor token the new token simply represents the user (a
  subject token's ``act`` is kept: a delegated token never loses its chain);
- ``refresh_tokens``: whether ``requested_token_type`` may be a refresh token (impersonation
  only: a refresh token row keeps no actor; offline only with ``offline_access`` granted,
  online ones die with the subject's session);
- ``max_lifetime``: a ceiling on the new token's lifetime; it never outlives the subject token.

Scopes are never widened (§5): what is asked must lie in the subject token's scope, then the
client's registered scopes, a registered target client's scopes and the protected-scope
permissions (``Engine.permitted_scope``) apply. Subject and actor tokens are validated as the
bearer path does (signature by our keys, our issuer, expiry, revocation, the session, an account
still usable).

Errors (§2.2.2): a missing or malformed parameter, or a subject or actor token that is invalid
or unacceptable by policy, is ``invalid_request`` (the RFC's MUST); a target not allowed is
``invalid_target``; a scope beyond the subject token's is ``invalid_scope``; a client without
the grant or a policy, or a public client, is ``unauthorized_client``. Every exchange writes a
``token.exchanged`` audit row and every refusal after the client authenticated a
``token.exchange_refused`` row with its reason code; never a token.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import OAuth2Error

from ..core.client_metadata import AUTH_METHODS, TOKEN_EXCHANGE
from ..sso.sessions import session_manager
from ..storage import audit as audit_rows
from ..storage.models import User
from .clients import OAuthClient, client_cache
from .http import request_stamp
from .sender import cnf_for
from .subjects import is_pairwise
from .tokens import InvalidToken

if TYPE_CHECKING:  # the engine registers this grant
    from .server import Engine, Subject

log = logging.getLogger("idp.oidc.token_exchange")

TOKEN_TYPE = "urn:ietf:params:oauth:token-type:"  # noqa: S105 - RFC 8693 §3 names
ACCESS_TOKEN = TOKEN_TYPE + "access_token"
REFRESH_TOKEN = TOKEN_TYPE + "refresh_token"
ID_TOKEN = TOKEN_TYPE + "id_token"
JWT = TOKEN_TYPE + "jwt"
TOKEN_TYPES = (ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN, JWT)
# Actors authenticate with a token that stands for them now: an access token or a JWT.
ACTOR_TOKEN_TYPES = (ACCESS_TOKEN, JWT)


class ExchangeRefused(OAuth2Error):
    """A refused exchange: the wire ``error`` and a ``reason`` code for the audit row."""

    def __init__(self, error: str, reason: str, description: str) -> None:
        super().__init__(description=description, error=error, status_code=400)
        self.reason = reason


def _invalid(reason: str, description: str) -> ExchangeRefused:
    return ExchangeRefused("invalid_request", reason, description)


@dataclass(frozen=True)
class ExchangePolicy:
    """A client's ``token_exchange`` metadata, read once per request."""

    accept_from: frozenset[str]
    audiences: frozenset[str]
    delegation: bool
    impersonation: bool
    refresh_tokens: bool
    max_lifetime: int | None

    @classmethod
    def of(cls, client: OAuthClient) -> ExchangePolicy | None:
        raw = client.setting("token_exchange")
        if not isinstance(raw, dict):
            return None
        return cls(frozenset(raw.get("accept_from") or ()), frozenset(raw.get("audiences") or ()),
                   raw.get("delegation") is True, raw.get("impersonation") is True,
                   raw.get("refresh_tokens") is True, raw.get("max_lifetime"))


@dataclass
class Presented:
    """A subject or actor token we issued and still honour."""

    sub: str
    client_id: str
    scope: list[str]
    exp: int | None
    user: Subject | None = None
    claims: dict[str, Any] = field(default_factory=dict)


def _account(eng: Engine, sub: Any) -> Subject | None:
    """The user a token names, when the account may still be used."""
    if not isinstance(sub, str):
        return None
    with eng.svc.sessions() as db:
        user_id = db.query(User.id).filter_by(uuid=sub).scalar()
    return None if user_id is None else eng.load_subject(user_id)


def _from_access_token(eng: Engine, value: str) -> Presented | None:
    claims = eng.validate_access_token(value)
    if claims is None or not isinstance(claims.get("client_id"), str):
        return None
    service = claims.get("sub") == claims["client_id"]
    user = None if service else _account(eng, eng.token_user(claims))
    if user is None and not service:
        return None  # a user's token whose account may no longer be used
    return Presented(claims["sub"], claims["client_id"], str(claims.get("scope", "")).split(),
                     claims.get("exp"), user, claims)


def _from_id_token(eng: Engine, value: str) -> Presented | None:
    """One of our ID tokens, unexpired. It says who signed in, not what they granted: its
    scope is ``openid`` alone."""
    try:
        claims = eng.signer.verify_id_token(value, eng.issuer)
    except InvalidToken:
        return None
    if claims["exp"] <= eng.now():
        return None
    aud = claims["aud"]
    client_id = claims.get("azp") or (aud[0] if isinstance(aud, list) and len(aud) == 1 else aud)
    if not isinstance(client_id, str):
        return None
    if claims.get("sid") and not eng.session_alive(claims["sid"]):
        return None
    user = _account(eng, _id_token_user(eng, client_id, claims))
    return None if user is None else Presented(claims["sub"], client_id, ["openid"],
                                               claims["exp"], user, claims)


def _id_token_user(eng: Engine, client_id: str, claims: dict[str, Any]) -> str | None:
    """The uuid behind an ID token's ``sub``: the sub itself, or for a pairwise client (OIDC
    Core §8.1) the user of the token's session, when that user's pairwise sub is the token's."""
    client = client_cache(eng.svc).get(client_id)
    if not is_pairwise(client):
        return claims["sub"]
    sessions = session_manager(eng.svc)
    current = sessions.current_by_sid(str(claims.get("sid") or ""))
    if current is None or eng.subject(client, current.user_uuid) != claims["sub"]:
        return None
    return current.user_uuid


def _from_refresh_token(eng: Engine, value: str, client: OAuthClient) -> Presented | None:
    row = eng.live_refresh_token(value, client)
    if row is None:
        return None
    user = eng.load_subject(row.user_id)
    if user is None:
        return None
    return Presented(user.uuid, row.client_id, row.scope.split(), None, user,
                     # An offline token hangs on no session: neither do its exchanges.
                     {"gid": row.grant_id, "sid": None if row.offline else row.sid,
                      "auth_time": row.auth_time, "acr": row.acr, "amr": row.amr})


def read_token(eng: Engine, value: str, kind: str, client: OAuthClient) -> Presented | None:
    """A token of type ``kind`` we issued and still honour, else None."""
    if kind == ACCESS_TOKEN:
        return _from_access_token(eng, value)
    if kind == ID_TOKEN:
        return _from_id_token(eng, value)
    if kind == REFRESH_TOKEN:
        return _from_refresh_token(eng, value, client)
    if kind == JWT and isinstance(value, str) and value.count(".") == 2:
        return _from_access_token(eng, value) or _from_id_token(eng, value)
    return None


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693 §2 at the token endpoint."""

    GRANT_TYPE = TOKEN_EXCHANGE
    # Every method, so that a public client hears why it is refused (and the refusal is
    # audited) rather than a bare invalid_client.
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def validate_token_request(self) -> None:
        client: OAuthClient = self.authenticate_token_endpoint_client()
        self.request.client = client
        try:
            self.plan = self._plan(client)
        except ExchangeRefused as exc:
            self._audit_refusal(client, exc)
            raise

    def create_token_response(self):
        token = self._issue(self.request.client, self.plan)
        return 200, token, self.TOKEN_RESPONSE_HEADER

    # --- deciding ----------------------------------------------------------------------------

    def _param(self, name: str) -> str | None:
        value = self.request.form.get(name)
        return value if value else None

    def _plan(self, client: OAuthClient) -> dict[str, Any]:
        eng = self.engine
        self.validate_requested_scope()
        if client.is_public:
            raise ExchangeRefused("unauthorized_client", "public_client",
                                  "A public client may not exchange tokens.")
        if not client.check_grant_type(TOKEN_EXCHANGE):
            raise ExchangeRefused("unauthorized_client", "grant_not_allowed",
                                  "The client may not use the token exchange grant.")
        policy = ExchangePolicy.of(client)
        if policy is None:
            raise ExchangeRefused("unauthorized_client", "no_policy",
                                  "The client has no token exchange policy.")
        subject_token, subject_type = self._param("subject_token"), self._param(
            "subject_token_type")
        actor_token, actor_type = self._param("actor_token"), self._param("actor_token_type")
        wanted_type = self._param("requested_token_type") or ACCESS_TOKEN
        if not subject_token or not subject_type:
            raise _invalid("missing_subject_token",
                           "subject_token and subject_token_type are required.")
        if subject_type not in TOKEN_TYPES:
            raise _invalid("unsupported_subject_token_type", "Unsupported subject_token_type.")
        if bool(actor_token) != bool(actor_type):
            raise _invalid("actor_token_type_mismatch",
                           "actor_token and actor_token_type go together.")
        if actor_type is not None and actor_type not in ACTOR_TOKEN_TYPES:
            raise _invalid("unsupported_actor_token_type", "Unsupported actor_token_type.")
        if wanted_type not in TOKEN_TYPES:
            raise _invalid("unsupported_requested_token_type",
                           "Unsupported requested_token_type.")

        subject = read_token(eng, subject_token, subject_type, client)
        if subject is None:
            raise _invalid("invalid_subject_token",
                           "The subject token is invalid, expired or revoked.")
        if subject.user is None:
            raise _invalid("subject_not_a_user", "The subject token does not represent a user.")
        if subject.client_id not in policy.accept_from:
            raise _invalid("subject_client_not_accepted",
                           "The policy does not accept tokens of the subject token's client.")

        act = self._actor(client, policy, subject, actor_token, actor_type)
        audience = self._targets(client, policy)
        scope = self._scope(client, subject, audience)
        lifetime = eng.access_token_lifetime(client)
        if wanted_type == ID_TOKEN:
            lifetime = int(client.setting("id_token_lifetime", eng.settings.id_token_lifetime))
        if policy.max_lifetime:
            lifetime = min(lifetime, policy.max_lifetime)
        if subject.exp is not None:
            lifetime = min(lifetime, subject.exp - eng.now())
        if wanted_type == REFRESH_TOKEN:
            self._check_refresh(client, policy, subject, act, scope)
        if wanted_type == ID_TOKEN and "openid" not in scope.split():
            raise ExchangeRefused("invalid_scope", "id_token_without_openid",
                                  "An ID token needs the openid scope.")
        return {"subject": subject, "subject_type": subject_type, "act": act,
                "delegated": actor_token is not None, "audience": audience, "scope": scope,
                "lifetime": lifetime, "type": wanted_type}

    def _actor(self, client: OAuthClient, policy: ExchangePolicy, subject: Presented,
               actor_token: str | None, actor_type: str | None) -> dict[str, Any] | None:
        """The ``act`` claim of the new token (RFC 8693 §4.1), or the subject's own chain for
        impersonation."""
        prior = subject.claims.get("act") if isinstance(subject.claims.get("act"), dict) else None
        if actor_token is None:
            if not policy.impersonation:
                raise _invalid("impersonation_not_allowed",
                               "The policy does not allow impersonation; send an actor_token.")
            return prior
        if not policy.delegation:
            raise _invalid("delegation_not_allowed", "The policy does not allow delegation.")
        actor = read_token(self.engine, actor_token, actor_type or "", client)
        if actor is None:
            raise _invalid("invalid_actor_token",
                           "The actor token is invalid, expired or revoked.")
        if actor.client_id != client.client_id:
            raise _invalid("actor_token_of_another_client",
                           "The actor token must be one issued to the requesting client.")
        act: dict[str, Any] = {"sub": actor.sub, "client_id": actor.client_id}
        if prior:
            act["act"] = prior
        return act

    def _targets(self, client: OAuthClient, policy: ExchangePolicy) -> list[str]:
        """The new token's audience: the ``audience`` and ``resource`` asked for (each allowed
        by the policy; a resource also by RFC 8707), else the client itself."""
        audience, resource = self._param("audience"), self._param("resource")
        targets: list[str] = []
        if resource:
            try:
                targets += self.engine.check_resources(client, [resource])
            except OAuth2Error as exc:
                raise ExchangeRefused("invalid_target", "resource_not_allowed",
                                      exc.description) from None
        if audience:
            targets.append(audience)
        for target in targets:
            if target not in policy.audiences:
                raise ExchangeRefused("invalid_target", "audience_not_allowed",
                                      "The policy does not allow this audience or resource.")
        return list(dict.fromkeys(targets))

    def _scope(self, client: OAuthClient, subject: Presented, audience: list[str]) -> str:
        """Never wider than the subject token's scope; within what the client, a target client
        and the protected-scope permissions allow."""
        asked = self.request.payload.scope
        wanted = asked.split() if asked else list(subject.scope)
        if any(s not in subject.scope for s in wanted):
            raise ExchangeRefused("invalid_scope", "scope_widening",
                                  "The scope exceeds the subject token's scope.")
        permitted = set(self.engine.permitted_scope(client, subject.user.user_id,
                                                    " ".join(wanted)).split())
        cache = client_cache(self.engine.svc)
        for target in audience:
            other = cache.get(target)
            if other is not None:
                permitted &= set(other.get_allowed_scope(" ".join(wanted)).split())
        kept = [s for s in wanted if s in permitted]
        if asked and len(kept) != len(wanted):
            raise ExchangeRefused("invalid_scope", "scope_not_allowed",
                                  "The client or the target may not hold the requested scope.")
        return " ".join(kept)

    def _check_refresh(self, client: OAuthClient, policy: ExchangePolicy, subject: Presented,
                       act: dict[str, Any] | None, scope: str) -> None:
        if not policy.refresh_tokens or not client.check_grant_type("refresh_token"):
            raise _invalid("refresh_token_not_allowed",
                           "The client may not receive refresh tokens by exchange.")
        if act:
            raise _invalid("refresh_token_with_actor",
                           "Refresh tokens are issued for impersonation only.")
        if "offline_access" not in scope.split() and not subject.claims.get("sid"):
            raise _invalid("refresh_token_without_session",
                           "An online refresh token needs the subject's session.")

    # --- issuing -------------------------------------------------------------------------------

    def _issue(self, client: OAuthClient, plan: dict[str, Any]) -> dict[str, Any]:
        eng = self.engine
        subject: Presented = plan["subject"]
        user = subject.user
        claims = subject.claims
        ctx = {"user_id": user.user_id, "sub": user.uuid, "grant_id": claims.get("gid"),
               "sid": claims.get("sid"), "auth_time": claims.get("auth_time"),
               "acr": claims.get("acr"), "amr": claims.get("amr"), "act": plan["act"],
               "resource": plan["audience"], "scope": plan["scope"],
               "cnf": cnf_for(client, self.request)}
        kind, lifetime = plan["type"], plan["lifetime"]
        if kind == REFRESH_TOKEN:
            # A family of its own, listed and revoked under this client (the account page).
            ctx["grant_id"] = secrets.token_urlsafe(16)
            value = eng._new_refresh_token(client, user, plan["scope"], ctx)
            token = {"access_token": value, "token_type": "N_A",
                     "expires_in": eng.settings.refresh_absolute_days * 86400}
        elif kind == ID_TOKEN:
            token = {"access_token": eng.id_token(client, ctx, None, lifetime),
                     "token_type": "N_A", "expires_in": lifetime}
        else:
            token = eng.issue(client, user, plan["scope"], ctx, include_refresh_token=False,
                              lifetime=lifetime, fmt="jwt" if kind == JWT else None)
        token["issued_token_type"] = kind
        token["scope"] = plan["scope"]
        act = plan["act"]
        with eng.svc.sessions.begin() as db:
            audit_rows.audit_now(
                db, "token.exchanged", at=eng.svc.clock.utcnow(),
                actor=f"client:{client.client_id}", target=user.uuid,
                **request_stamp(self.request),
                client_id=client.client_id,
                subject=user.uuid, subject_client=subject.client_id,
                subject_token_type=plan["subject_type"], acting=act.get("sub") if act else None,
                delegation=plan["delegated"], audience=plan["audience"],
                scopes=plan["scope"].split(), issued_token_type=kind,
                grant=ctx["grant_id"], subject_grant=claims.get("gid"))
        return token

    def _audit_refusal(self, client: OAuthClient, exc: ExchangeRefused) -> None:
        log.info("token exchange refused: %s", exc.reason, extra={"client_id": client.client_id})
        eng = self.engine
        with eng.svc.sessions.begin() as db:
            audit_rows.audit_now(
                db, "token.exchange_refused", at=eng.svc.clock.utcnow(),
                actor=f"client:{client.client_id}", **request_stamp(self.request),
                client_id=client.client_id, error=exc.error, reason=exc.reason,
                subject_token_type=self._param("subject_token_type"),
                requested_token_type=self._param("requested_token_type"),
                audience=self._param("audience"), resource=self._param("resource"))
