"""The OAuth 2.0 / OIDC authorization server on authlib's components.

authlib parses requests, authenticates clients (RFC 6749 §2.3, RFC 7523) and runs the grants
(RFC 6749 §4.1 with RFC 7636 PKCE, §4.4 client credentials, §6 refresh). We extend it where the
BCP asks for more than authlib does:
- codes are taken from the shared store atomically (parallel redemption has one winner) and a
  second use revokes everything the first use issued (RFC 6749 §4.1.2, RFC 9700 §4.2.4);
- refresh tokens rotate with reuse detection that revokes the whole family (RFC 9700 §4.14);
- PKCE is S256 only and required for public clients (or all clients by setting);
- access tokens are RFC 9068 JWTs (``typ: at+jwt``) or opaque, per client;
- ``resource`` (RFC 8707) names only resource servers registered for the client or configured;
- a refresh applies current policy (RFC 6749 §6, RFC 9700 §4.14): the account must still be
  usable, and scopes the client or the user lost are dropped from the new tokens;
- ID tokens are signed with the client's algorithm from keys parsed once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey
from sqlalchemy import or_, select, update

from ..core.authn import AuthnResult
from ..core.client_metadata import TLS_AUTH_METHODS
from ..services import Services
from ..sso.sessions import session_manager
from ..sso.users import account_usable
from ..storage import audit as audit_rows
from ..storage.models import User
from ..storage.models_oauth import RefreshToken
from . import fapi, mtls
from .claims import user_claims
from .clients import OAuthClient, client_cache
from .device import install as install_device_flow
from .http import HttpRequest, PlainJsonRequest, PlainOAuth2Request
from .http import request_stamp as _stamp
from .results import JsonResult
from .sender import (
    check_code_binding,
    check_refresh_binding,
    cnf_for,
    refresh_cnf,
    require_constraint,
    token_type,
)
from .subjects import is_pairwise, subject
from .token_exchange import TokenExchangeGrant
from .tokens import SIGNING_ALGS, InvalidToken, Signer, half_hash, new_jti

log = logging.getLogger("idp.oidc")

_CODE = "code:"
_CODE_USED = "codeused:"
_GRANT_REVOKED = "grantrevoked:"
_AT_REVOKED = "atrevoked:"
_OPAQUE = "at:"
_JTI = "jti:"
_CLAIMS_REQUEST = "claimsreq:"
# The user behind a pairwise-subject access token (by jti), for userinfo and our own APIs.
_PAIRWISE_USER = "atuser:"
# Scopes that act on the IdP itself: granted only to holders of oauth:scope:<name>.
PROTECTED_SCOPES = ("admin", "scim")
STANDARD_SCOPES = ("openid", "profile", "email", "phone", "address", "offline_access",
                   "groups", "roles")


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the resource parameter is not an acceptable target."""

    error = "invalid_target"


@dataclass
class Subject:
    """The resource owner of a user grant."""

    user_id: int
    uuid: str


@dataclass
class AuthCode:
    """An authorization code taken from the store (authlib's AuthorizationCodeMixin)."""

    data: dict[str, Any]

    def get_redirect_uri(self) -> str | None:
        return self.data.get("redirect_uri")

    def get_scope(self) -> str:
        return self.data["scope"]

    def get_nonce(self) -> str | None:
        return self.data.get("nonce")

    def get_auth_time(self) -> int | None:
        return self.data.get("auth_time")

    def get_acr(self) -> str | None:
        return self.data.get("acr")

    def get_amr(self) -> list[str]:
        return self.data.get("amr") or []


class DictRequest(OAuth2Request):
    """An authorization request rebuilt from stored parameters (after the login resumes)."""

    def __init__(self, method: str, uri: str, params: dict[str, str]) -> None:
        super().__init__(method, uri)
        self.payload = BasicOAuth2Payload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def form(self) -> dict[str, str]:
        return self._params


# --- client authentication with JWTs (RFC 7523 §2.2) ----------------------------------------------

class _JWTClientAuth(JWTBearerClientAssertion):
    ALGORITHMS: tuple[str, ...] = ()

    def __init__(self, engine: Engine) -> None:
        super().__init__(leeway=60)
        self.engine = engine

    def __call__(self, query_client, request):
        """Answer only for clients registered with this method, so that client_secret_jwt
        and private_key_jwt do not refuse each other's assertions."""
        data = request.form
        if data.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE:
            return None
        header, claims = self.extract_assertion(data.get("client_assertion") or "")
        sub = claims.get("sub")
        client = query_client(sub) if isinstance(sub, str) else None
        if client is not None and client.auth_method != self.CLIENT_AUTH_METHOD:
            return None
        refused = fapi.assertion_problem(client, header, claims, self.engine.issuer)
        if refused:
            log.info("client assertion refused: %s", refused)
            raise InvalidClientError(description=refused)
        return super().__call__(query_client, request)

    def get_audiences(self) -> list[str]:
        # FAPI 2.0 / RFC 7523: the issuer identifier, and the token endpoint URL.
        issuer = self.engine.issuer
        return [issuer, f"{issuer}/oauth2/token", f"{issuer}/oauth2/introspect",
                f"{issuer}/oauth2/revoke", f"{issuer}/oauth2/par"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        ttl = max(60, int(claims.get("exp", 0) - self.engine.svc.clock.now()) + 60)
        return self.engine.svc.store.add(f"{_JTI}{claims['sub']}:{jti}"[:250], 1, ttl)

    def process_assertion_claims(self, assertion, resolve_key):
        from authlib.oauth2.rfc6749.errors import InvalidClientError

        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(self.ALGORITHMS))
        except (JoseError, ValueError) as exc:
            log.info("client assertion refused: %s", exc)
            raise InvalidClientError(description="Invalid client assertion.") from exc
        claims = token.claims
        now = self.engine.svc.clock.now()
        max_age = self.engine.settings.client_assertion_max_age
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp - now > max_age:
            raise InvalidClientError(description="Client assertion lives too long.")
        for claim in ("iat", "nbf"):
            value = claims.get(claim)
            if value is not None and (not isinstance(value, int | float) or value > now + 60):
                raise InvalidClientError(description=f"Client assertion '{claim}' is in the "
                                                     "future.")
        self.verify_claims(token.claims)
        return token.claims


class ClientSecretJWTAuth(_JWTClientAuth):
    CLIENT_AUTH_METHOD = "client_secret_jwt"
    ALGORITHMS = ("HS256", "HS384", "HS512")

    def resolve_client_public_key(self, client: OAuthClient):
        if not client.secret_enc:
            return OctKey.import_key(secrets.token_bytes(32))  # verifies nothing
        secret = self.engine.svc.sealer.open(client.secret_enc, context=client.client_id)
        return OctKey.import_key(secret)


class PrivateKeyJWTAuth(_JWTClientAuth):
    CLIENT_AUTH_METHOD = "private_key_jwt"
    ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")

    def resolve_client_public_key(self, client: OAuthClient):
        from authlib.oauth2.rfc6749.errors import InvalidClientError

        jwks = self.engine.client_jwks(client)
        try:
            return KeySet.import_key_set(jwks)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            log.info("client keys unusable: %s", exc)
            raise InvalidClientError(description="The client's key set is not usable.") from None


class TLSClientAuth:
    """RFC 8705 §2: the client named by ``client_id`` authenticates with the TLS client
    certificate the trusted proxy passed on: ``tls_client_auth`` by its registered subject DN
    or SAN (the proxy verified the chain), ``self_signed_tls_client_auth`` by one of its
    registered keys. Answers only for clients registered with this method."""

    def __init__(self, engine: Engine, method: str) -> None:
        self.engine = engine
        self.method = method

    def __call__(self, query_client, request):
        client_id = request.form.get("client_id")
        client = query_client(client_id) if isinstance(client_id, str) and client_id else None
        if client is None or client.auth_method != self.method:
            return None
        cert = mtls.certificate(getattr(request, "client_cert", None))
        if cert is None:
            raise InvalidClientError(description="No client certificate was presented.")
        if self.method == "tls_client_auth":
            matches = mtls.subject_matches(cert, client.meta)
        else:
            try:
                keys = KeySet.import_key_set(self.engine.client_jwks(client)).keys
            except (JoseError, ValueError, TypeError, KeyError):
                keys = []
            matches = mtls.key_matches(cert, keys)
        if not matches:
            log.info("client certificate refused", extra={"client_id": client.client_id})
            raise InvalidClientError(description="The client certificate does not match the "
                                                 "client's registration.")
        return client


# --- grants -------------------------------------------------------------------------------------

ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt",
                    "private_key_jwt", "none", *TLS_AUTH_METHODS]


class S256Only(CodeChallenge):
    """RFC 7636 restricted to S256 (RFC 9700 §2.1.1), required for public clients at the
    authorization endpoint already, and for every client when configured."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self, engine: Engine) -> None:
        super().__init__(required=True)
        self.engine = engine

    def validate_code_challenge(self, grant, redirect_uri):
        super().validate_code_challenge(grant, redirect_uri)
        data = grant.request.payload.data
        client: OAuthClient = grant.request.client
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256",
                                      redirect_uri=redirect_uri)
        must = (client.is_public or self.engine.settings.require_pkce
                or client.setting("require_pkce", False))
        if must and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE (code_challenge with S256) is required",
                                      redirect_uri=redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: AuthCode):
        return authorization_code.data.get("code_challenge")

    def get_authorization_code_challenge_method(self, authorization_code: AuthCode):
        return authorization_code.data.get("code_challenge_method")


class OIDCCode:
    """OpenID Connect on the code grant: nonce checks at authorization, ID token at the token
    endpoint (OIDC Core §3.1.2.1, §3.1.3.3)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, grant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)
        grant.register_hook("after_create_token_response", self.add_id_token)

    def validate(self, grant, redirect_uri) -> None:
        nonce = grant.request.payload.data.get("nonce")
        if nonce is not None and (not nonce or len(nonce) > 255):
            raise InvalidRequestError("nonce must be 1-255 characters", redirect_uri=redirect_uri)

    def add_id_token(self, grant, response) -> None:
        _, token, _ = response
        code: AuthCode = grant.request.authorization_code
        if "openid" not in token.get("scope", "").split():
            return
        token["id_token"] = self.engine.id_token(grant.request.client, code.data,
                                                 token.get("access_token"))


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    AUTHORIZATION_CODE_LENGTH = 43

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx = dict(request.code_context)
        data = request.payload.data
        ctx.update(client_id=request.client.client_id, redirect_uri=data.get("redirect_uri"),
                   scope=request.scope, code_challenge=data.get("code_challenge"),
                   code_challenge_method=data.get("code_challenge_method"))
        self.engine.svc.store.put(_CODE + self.engine.hash(code), ctx, fapi.code_lifetime(
            request.client, self.engine.settings.code_lifetime))

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthCode | None:
        if not isinstance(code, str) or len(code) > 200:
            return None
        key = self.engine.hash(code)
        store = self.engine.svc.store
        # The use is remembered before the code is taken (long enough to catch a replay after
        # the code would have expired): a redemption that finds the code gone always finds
        # the mark, so each of N parallel redemptions but the one that takes the code is a
        # replay that revokes what the code issues (RFC 6749 §4.1.2, RFC 9700 §4.14).
        seen = store.get(_CODE + key)
        if seen is not None:
            store.put(_CODE_USED + key, {"grant_id": seen["grant_id"],
                                         "client_id": seen["client_id"]}, 3600)
        data = store.take(_CODE + key)
        if data is None:
            used = store.get(_CODE_USED + key)
            if used:  # a replayed code: revoke what its first use issued
                log.warning("authorization code replayed; revoking grant",
                            extra={"client_id": used.get("client_id")})
                self.engine.revoke_grant(used["grant_id"], audit_reason="code_replay",
                                         request=self.request)
            return None
        if seen is None:  # stored between the look and the take: remember this use too
            store.put(_CODE_USED + key, {"grant_id": data["grant_id"],
                                         "client_id": data["client_id"]}, 3600)
        if data["client_id"] != client.client_id:
            self.engine.revoke_grant(data["grant_id"], audit_reason="code_wrong_client",
                                     request=self.request)
            return None
        check_code_binding(data.get("dpop_jkt"), self.request)
        return AuthCode(data)

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        """Nothing to do: the code was taken from the store when it was queried."""

    def authenticate_user(self, authorization_code: AuthCode) -> Subject | None:
        return self.engine.load_subject(authorization_code.data["user_id"])

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                       include_refresh_token=True):
        code: AuthCode = self.request.authorization_code
        client: OAuthClient = self.request.client
        granted = code.data.get("resource") or []
        ctx = dict(code.data, grant_resource=granted,
                   resource=self.engine.token_resources(client, self.request, granted),
                   cnf=cnf_for(client, self.request))
        return self.engine.issue(client, user, scope, ctx,
                                 include_refresh_token=include_refresh_token,
                                 audited=self.request)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        return self.engine.use_refresh_token(refresh_token, self.request, self._before_use)

    def _before_use(self, row: RefreshToken) -> None:
        """Checks that may refuse the request, run before the token is used up (rotated): a
        refused request leaves the client its refresh token. RFC 6749 §6: the scope must not
        exceed the grant; RFC 8707 §2.2: resource must be one of the grant's."""
        self._validate_token_scope(row)
        check_refresh_binding(row.cnf, self.request)
        self.request.token_resources = self.engine.token_resources(
            self.request.client, self.request, row.resource or [])

    def authenticate_user(self, refresh_token: RefreshToken) -> Subject | None:
        return self.engine.load_subject(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Done atomically when the token was used (see Engine.use_refresh_token)."""

    def issue_token(self, user, refresh_token: RefreshToken):
        client: OAuthClient = self.request.client
        scope = self.engine.refreshed_scope(client, user.user_id, refresh_token.scope,
                                            self.request.payload.scope)
        ctx = {"grant_id": refresh_token.grant_id, "user_id": refresh_token.user_id,
               "sub": user.uuid, "sid": refresh_token.sid, "auth_time": refresh_token.auth_time,
               "acr": refresh_token.acr, "amr": refresh_token.amr,
               "resource": self.request.token_resources,
               "grant_resource": refresh_token.resource, "offline": refresh_token.offline,
               "expires_at": refresh_token.expires_at.timestamp(),
               "client_id": client.client_id, "scope": scope,
               "cnf": cnf_for(client, self.request)}
        rotate = self.engine.rotates(client)
        token = self.engine.issue(client, user, scope, ctx, include_refresh_token=rotate)
        if not rotate:
            token["refresh_token"] = self.request.form.get("refresh_token")
            if scope != refresh_token.scope:  # the kept token loses what the new ones lost
                self.engine.narrow_refresh_token(refresh_token.token_hash, scope)
        if "openid" in scope.split():
            token["id_token"] = self.engine.id_token(client, ctx, token["access_token"])
        return token


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post",
                                   "client_secret_jwt", "private_key_jwt", *TLS_AUTH_METHODS]

    def validate_token_request(self):
        super().validate_token_request()
        client: OAuthClient = self.request.client
        requested = self.request.payload.scope
        scope = self.server.engine.permitted_scope(client, None, requested)
        if requested and not scope:
            raise InvalidScopeError()
        self.request.scope = scope

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                       include_refresh_token=False):
        resources = self.server.engine.token_resources(self.request.client, self.request, [])
        return self.server.engine.issue(self.request.client, None, self.request.scope,
                                        {"client_id": self.request.client.client_id,
                                         "resource": resources,
                                         "cnf": cnf_for(self.request.client, self.request)},
                                        include_refresh_token=False,
                                        audited=self.request)


# --- the server ---------------------------------------------------------------------------------

class AuthorizationServer(_AuthorizationServer):
    def __init__(self, engine: Engine) -> None:
        super().__init__(scopes_supported=None)
        self.engine = engine

    def query_client(self, client_id: str) -> OAuthClient | None:
        return client_cache(self.engine.svc).get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        """Tokens are persisted when issued (Engine.issue)."""

    def validate_requested_scope(self, scope: str | None) -> None:
        if scope and (len(scope) > 2000 or any(not s.isprintable() for s in scope)):
            raise InvalidScopeError()

    def create_oauth2_request(self, request: HttpRequest | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return PlainOAuth2Request(request)

    def create_json_request(self, request: HttpRequest) -> PlainJsonRequest:
        return PlainJsonRequest(request)

    def handle_response(self, status: int, body, headers) -> JsonResult:
        """authlib's answer as a typed result; no caching of token responses (RFC 6749
        §5.1)."""
        out = dict(headers or ())
        out.setdefault("Cache-Control", "no-store")
        out.setdefault("Pragma", "no-cache")
        return JsonResult(status, body, out)

    def send_signal(self, name, *args, **kwargs) -> None:
        if name == "after_authenticate_client":  # before a code or refresh token is used up
            fapi.check_token_request(kwargs["client"], kwargs["grant"].request)
            require_constraint(kwargs["client"], kwargs["grant"].request)

    def handle_error_response(self, request, error):
        # A failed client authentication is always 401 with a challenge (RFC 6749 §5.2
        # requires it for the Authorization header; we answer every method the same way).
        if error.error == "invalid_client":
            error.status_code = 401
        response = super().handle_error_response(request, error)
        if error.error == "invalid_client":
            response.headers.setdefault("WWW-Authenticate", f'Basic realm="{self.engine.issuer}"')
        return response


class Engine:
    """Everything the OIDC endpoints share; built once per worker."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.settings = svc.settings.oidc
        self.issuer = svc.settings.issuer
        self.signer = Signer(svc.keys)
        self.server = AuthorizationServer(self)
        self.server.register_client_auth_method(
            ClientSecretJWTAuth.CLIENT_AUTH_METHOD, ClientSecretJWTAuth(self))
        self.server.register_client_auth_method(
            PrivateKeyJWTAuth.CLIENT_AUTH_METHOD, PrivateKeyJWTAuth(self))
        for method in TLS_AUTH_METHODS:
            self.server.register_client_auth_method(method, TLSClientAuth(self, method))
        self.server.register_grant(AuthorizationCodeGrant, [S256Only(self), OIDCCode(self)])
        self.server.register_grant(RefreshTokenGrant)
        self.server.register_grant(ClientCredentialsGrant)
        install_device_flow(self)
        self.server.register_grant(TokenExchangeGrant)
        self._jwks_cache: dict[str, tuple[float, dict]] = {}

    # --- helpers ---------------------------------------------------------------------------------

    def hash(self, secret: str) -> str:
        return self.svc.hasher.hash(secret)

    def now(self) -> int:
        return int(self.svc.clock.now())

    def account_usable(self, user: User) -> bool:
        """Whether the account may be used today: active, started, not past its end date
        (the rule the login applies, ``idp.sso.users.account_usable``)."""
        return account_usable(self.svc, user)

    def load_subject(self, user_id: int) -> Subject | None:
        with self.svc.sessions() as db:
            user = db.get(User, user_id)
            if user is None or not self.account_usable(user):
                return None
            return Subject(user.id, user.uuid)

    def client_jwks(self, client: OAuthClient) -> dict:
        from .fetch import client_key_set

        return client_key_set(self.svc, client, self._jwks_cache)

    # --- RFC 8707 resource indicators --------------------------------------------------------

    def allowed_resources(self, client: OAuthClient) -> set[str]:
        """The resource servers this client may name: its registered ``resources`` and the
        configured ``oidc.resource_servers``."""
        own = client.setting("resources") or []
        return {r for r in (*own, *self.settings.resource_servers) if isinstance(r, str)}

    def check_resources(self, client: OAuthClient, values: list[str],
                        granted: list[str] | None = None) -> list[str]:
        """RFC 8707 §2: absolute URIs without a fragment, each an acceptable target: one
        allowed for the client (exact string match) and, at the token endpoint for a code or
        refresh token, one of the grant's (``granted``). Raises InvalidTargetError."""
        allowed = self.allowed_resources(client)
        for value in values:
            parts = urlsplit(value)
            if not parts.scheme or not parts.netloc or parts.fragment or "#" in value:
                raise InvalidTargetError("resource must be an absolute URI without a fragment")
            if value not in allowed:
                raise InvalidTargetError("resource is not a resource server this client "
                                         "may use")
            if granted and value not in granted:
                raise InvalidTargetError("resource was not part of the authorization")
        return list(dict.fromkeys(values))

    def token_resources(self, client: OAuthClient, request: OAuth2Request,
                        granted: list[str]) -> list[str]:
        """The audience of an access token from the token endpoint: the ``resource`` asked
        for, else the grant's resources that current policy still allows."""
        form = request.form
        asked = form.getlist("resource") if hasattr(form, "getlist") else (
            [form["resource"]] if form.get("resource") else [])
        if asked:
            return self.check_resources(client, asked, granted)
        allowed = self.allowed_resources(client)
        kept = [r for r in granted if r in allowed]
        if granted and not kept:
            raise InvalidTargetError("the authorized resource is no longer allowed for this "
                                     "client")
        return kept

    def rotates(self, client: OAuthClient) -> bool:
        return fapi.refresh_rotation(client, self.settings.refresh_rotation)

    def permitted_scope(self, client: OAuthClient, user_id: int | None,
                        requested: str | None) -> str:
        """The requested scopes the client may ask for and the actor (user, or the client's
        service account) may hold: admin/scim need ``oauth:scope:<name>``."""
        from .permissions import actor_may_hold_scope

        scope = client.get_allowed_scope(requested)
        kept = [s for s in scope.split() if s not in PROTECTED_SCOPES
                or actor_may_hold_scope(self.svc, client, user_id, s)]
        return " ".join(kept)

    def refreshed_scope(self, client: OAuthClient, user_id: int, granted: str,
                        asked: str | None) -> str:
        """The scope of a refreshed token: what was asked (or the whole grant), limited to the
        grant (RFC 6749 §6) and to what current policy allows: the client's registered scopes
        and, for admin/scim, the user's permissions now."""
        original = granted.split()
        wanted = [s for s in (asked.split() if asked else original) if s in original]
        if not wanted:
            return ""
        permitted = set(self.permitted_scope(client, user_id, " ".join(wanted)).split())
        return " ".join(s for s in wanted if s in permitted)

    # --- issuing -------------------------------------------------------------------------------

    def access_token_lifetime(self, client: OAuthClient) -> int:
        return int(client.setting("access_token_lifetime", self.settings.access_token_lifetime))

    def issue(self, client: OAuthClient, user: Subject | None, scope: str,
              ctx: dict[str, Any], include_refresh_token: bool,
              audited: OAuth2Request | None = None, *, lifetime: int | None = None,
              fmt: str | None = None) -> dict[str, Any]:
        """The token response of a grant. With ``audited`` (the token request of an
        authorization_code or client_credentials grant; a refresh is not audited, it is too
        frequent) a ``token.issued`` row is written: in the refresh token's transaction when
        one is issued, else on its own with ``audit_alone`` (no ORM session: the hot path of
        client_credentials). A token exchange (``token_exchange.py``) sets a shorter
        ``lifetime``, the format (``fmt``) and an ``act`` claim (``ctx["act"]``)."""
        now = self.now()
        lifetime = lifetime or self.access_token_lifetime(client)
        resource = ctx.get("resource") or []
        claims = {
            "iss": self.issuer,
            "sub": self.subject(client, user.uuid) if user else client.client_id,
            "aud": resource if len(resource) > 1 else (resource[0] if resource
                                                       else client.client_id),
            "client_id": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": new_jti(),
            "scope": scope,
        }
        if user is not None:
            claims.update({k: ctx[k] for k in ("auth_time", "acr") if ctx.get(k)})
            if ctx.get("sid"):
                claims["sid"] = ctx["sid"]
            if ctx.get("grant_id"):
                claims["gid"] = ctx["grant_id"]
            if ctx.get("act"):
                claims["act"] = ctx["act"]  # RFC 8693 §4.1
        cnf = ctx.get("cnf") or {}
        if cnf:  # RFC 9449 §6, RFC 8705 §3.1: sender-constrained
            claims["cnf"] = cnf
        if user is not None and claims["sub"] != user.uuid:
            self.svc.store.put(_PAIRWISE_USER + claims["jti"], user.uuid, lifetime)
        fmt = fmt or client.setting("access_token_format", self.settings.access_token_format)
        if fmt == "opaque":
            access_token = secrets.token_urlsafe(32)
            self.svc.store.put(_OPAQUE + self.hash(access_token), claims, lifetime)
        else:
            alg = fapi.signing_alg(client, "access_token_signed_response_alg")
            access_token = self.signer.sign(claims, alg, typ="at+jwt")
        token = {"access_token": access_token, "token_type": token_type(cnf),
                 "expires_in": lifetime,
                 "scope": scope}
        wanted = (ctx.get("claims") or {}).get("userinfo")
        if wanted and ctx.get("grant_id"):
            # OIDC Core §5.5: the userinfo member of the claims request outlives the code;
            # userinfo finds it through the grant id its access tokens carry.
            self.svc.store.put(_CLAIMS_REQUEST + ctx["grant_id"], wanted,
                               self.settings.refresh_absolute_days * 86400)
        issued = None if audited is None else self._issued_row(audited, client, user, claims)
        if include_refresh_token and user is not None and ctx.get("grant_id"):
            token["refresh_token"] = self._new_refresh_token(client, user, scope, ctx, issued)
        elif issued is not None:
            audit_rows.audit_alone(self.svc.sessions, **issued)
        return token

    def _issued_row(self, request: OAuth2Request, client: OAuthClient, user: Subject | None,
                    claims: dict[str, Any]) -> dict[str, Any]:
        """The arguments of the ``token.issued`` audit row of a grant: the user (or the
        client's service account) as actor and target, the grant type, client, scopes, the
        access token's id and the grant (family) id; never a token."""
        subject = user.uuid if user else f"client:{client.client_id}"
        details = {"grant_type": request.payload.grant_type, "client_id": client.client_id,
                   "scopes": claims["scope"].split(), "jti": claims["jti"]}
        if claims.get("gid"):
            details["grant"] = claims["gid"]
        return dict(action="token.issued", at=self.svc.clock.utcnow(), actor=subject,
                    target=subject, **_stamp(request), **details)

    def _new_refresh_token(self, client: OAuthClient, user: Subject, scope: str,
                           ctx: dict[str, Any], issued: dict[str, Any] | None = None) -> str:
        """A new refresh token row; with ``issued``, the grant's ``token.issued`` row in the
        same transaction (the first token of a family)."""
        from datetime import UTC, datetime

        value = secrets.token_urlsafe(32)
        now = self.svc.clock.utcnow()
        offline = "offline_access" in scope.split()
        if ctx.get("expires_at"):
            expires = datetime.fromtimestamp(ctx["expires_at"], UTC)
        else:
            expires = now + timedelta(days=self.settings.refresh_absolute_days)
        with self.svc.sessions.begin() as db:
            db.add(RefreshToken(
                token_hash=self.hash(value), grant_id=ctx["grant_id"],
                client_id=client.client_id, user_id=user.user_id, scope=scope,
                sid=ctx.get("sid"), offline=offline, auth_time=ctx.get("auth_time"),
                acr=ctx.get("acr"), amr=ctx.get("amr") or [],
                resource=ctx.get("grant_resource", ctx.get("resource")) or [],
                cnf=refresh_cnf(client, ctx.get("cnf") or {}),
                created_at=now, last_used_at=now,
                expires_at=expires))
            if issued is not None:
                db.flush()  # the token row first: the chain head is locked at the last moment
                audit_rows.audit_now(db, **dict(issued, refresh_token=True, offline=offline))
        if self.svc.store.get(_GRANT_REVOKED + ctx["grant_id"]):
            # The family was revoked while this token was made (a parallel replay of its
            # code or refresh token): the row is revoked too, for longer than the marker.
            with self.svc.sessions.begin() as db:
                db.execute(update(RefreshToken).where(RefreshToken.token_hash == self.hash(value))
                           .values(revoked=True))
        return value

    def id_token(self, client: OAuthClient, ctx: dict[str, Any],
                 access_token: str | None, lifetime: int | None = None) -> str:
        alg = fapi.signing_alg(client, "id_token_signed_response_alg")
        if alg not in SIGNING_ALGS:
            alg = "RS256"
        now = self.now()
        claims = user_claims(self, ctx["user_id"], client,
                             ctx.get("scope", "").split() or ["openid"],
                             (ctx.get("claims") or {}).get("id_token"))
        claims.update({
            "iss": self.issuer, "sub": self.subject(client, ctx["sub"]), "aud": client.client_id,
            "azp": client.client_id, "iat": now,
            "exp": now + (lifetime or int(client.setting("id_token_lifetime",
                                                         self.settings.id_token_lifetime))),
        })
        for key in ("auth_time", "acr", "amr", "sid", "nonce", "act"):
            if ctx.get(key):
                claims[key] = ctx[key]
        if access_token:
            claims["at_hash"] = half_hash(access_token, alg)
        return self.signer.sign(claims, alg)

    # --- refresh tokens ------------------------------------------------------------------------

    def use_refresh_token(self, value: str, request: OAuth2Request,
                          before_use: Callable[[RefreshToken], None] | None = None,
                          ) -> RefreshToken | None:
        """The refresh token, used up (rotated) or touched, or None. A token of an account
        that may no longer be used (disabled, locked, expired, past its end date) is refused
        without being used up. ``before_use`` may refuse the request (raise OAuth2Error)
        before the token is used up."""
        if not isinstance(value, str) or len(value) > 200:
            return None
        client: OAuthClient = request.client
        token_hash = self.hash(value)
        now = self.svc.clock.utcnow()
        replayed = None
        with self.svc.sessions.begin() as db:
            row = db.get(RefreshToken, token_hash)
            if row is None or row.client_id != client.client_id:
                return None
            if row.revoked:
                self._replay_event(db, row, "revoked", request)
                return None
            if row.used_at is not None:
                replayed = row.grant_id
            elif not self._refreshable(db, row, now):
                return None
            else:
                if before_use is not None:
                    before_use(row)
                if self.rotates(client):
                    # Atomic: of two parallel uses exactly one wins; the other is a reuse.
                    done = db.execute(update(RefreshToken).where(
                        RefreshToken.token_hash == token_hash,
                        RefreshToken.used_at.is_(None)).values(used_at=now))
                    if done.rowcount != 1:
                        replayed = row.grant_id
                else:
                    row.last_used_at = now
            if replayed is None:
                db.flush()  # last_used_at, before the row leaves the session
                db.expunge(row)
        if replayed is not None:
            log.warning("refresh token reused; revoking its family",
                        extra={"client_id": client.client_id})
            self.revoke_grant(replayed, audit_reason="refresh_token_reuse", request=request)
            with self.svc.sessions.begin() as db:
                self._replay_event(db, db.get(RefreshToken, token_hash), "rotated", request)
            return None
        return row

    def _replay_event(self, db, row: RefreshToken | None, kind: str,
                      request: OAuth2Request) -> None:
        """The security event of a refresh token presented again after it was rotated (its
        family is revoked now) or revoked (docs/risk.md): ``[risk] refresh_replay``."""
        if row is None or not self.svc.settings.risk.refresh_replay:
            return
        user = db.get(User, row.user_id)
        ip = request.remote_addr if isinstance(request, PlainOAuth2Request) else None
        audit_rows.audit(db, "security.refresh_token_replay", at=self.svc.clock.utcnow(),
                         target=user.uuid if user else None, ip=ip, client_id=row.client_id,
                         kind=kind, grant=row.grant_id, offline=row.offline)

    def _refreshable(self, db, row: RefreshToken, now) -> bool:
        if row.expires_at <= now or self.svc.store.get(_GRANT_REVOKED + row.grant_id):
            return False
        if row.offline and row.last_used_at + timedelta(
                days=self.settings.refresh_idle_days) <= now:
            return False
        if not row.offline and (not row.sid or not self.session_alive(row.sid)):
            return False  # an online token dies with its SSO session
        user = db.get(User, row.user_id)
        if user is None or not self.account_usable(user):
            log.info("refresh refused: the account may not be used",
                     extra={"client_id": row.client_id})
            return False
        return True

    def live_refresh_token(self, value: str, client: OAuthClient) -> RefreshToken | None:
        """The client's refresh token when it could be used now (not revoked, not used up,
        its session or idle time, an account still usable), left as it is: a token exchange
        (RFC 8693) reads it as a subject token without rotating it."""
        if not isinstance(value, str) or len(value) > 200:
            return None
        with self.svc.sessions() as db:
            row = db.get(RefreshToken, self.hash(value))
            if (row is None or row.client_id != client.client_id or row.revoked
                    or row.used_at is not None
                    or not self._refreshable(db, row, self.svc.clock.utcnow())):
                return None
            db.expunge(row)
            return row

    def narrow_refresh_token(self, token_hash: str, scope: str) -> None:
        with self.svc.sessions.begin() as db:
            db.execute(update(RefreshToken).where(RefreshToken.token_hash == token_hash)
                       .values(scope=scope))

    def session_alive(self, public_sid: str) -> bool:
        return session_manager(self.svc).alive(public_sid)

    def revoke_grants(self, grant_ids: set[str], *, audit_reason: str | None = None,
                      request: Any = None, actor: str | None = None) -> None:
        """Revoke whole families: their refresh tokens, and (through a marker the token
        checks read) every access token issued from them. The marker is written after the
        database commit: on SQLite a store write inside the transaction would wait on itself.
        With ``audit_reason`` (RFC 7009 revocation, a reused refresh token, a replayed code)
        each family gets a ``token.revoked`` row in the same transaction, stamped from
        ``request``; sign-outs revoke without one (their session events record them). The
        rows name the family's client as actor, or ``actor`` (a person on the account page)."""
        if not grant_ids:
            return
        # The marker first, the rows after: a refresh token saved meanwhile (the winner of a
        # parallel redemption) either is among the rows or sees the marker when it checks
        # after its commit (``_new_refresh_token``), so none outlives the marker unrevoked.
        lifetime = max(self.settings.access_token_lifetime, 3600)
        for grant_id in grant_ids:
            self.svc.store.put(_GRANT_REVOKED + grant_id, 1, lifetime)
        with self.svc.sessions.begin() as db:
            db.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(grant_ids))
                       .values(revoked=True))
            if audit_reason is not None:
                self._revoked_rows(db, grant_ids, audit_reason, request, actor)

    def revoke_grant(self, grant_id: str, *, audit_reason: str | None = None,
                     request: Any = None) -> None:
        self.revoke_grants({grant_id}, audit_reason=audit_reason, request=request)

    def _revoked_rows(self, db, grant_ids: set[str], reason: str, request: Any,
                      actor: str | None = None) -> None:
        """One ``token.revoked`` row per family: its user (target), client and whether it was
        offline; a family that never had a refresh token (a code replayed before) only by
        its grant id."""
        found = {gid: (client_id, uuid, offline) for gid, client_id, uuid, offline in db.execute(
            select(RefreshToken.grant_id, RefreshToken.client_id, User.uuid, RefreshToken.offline)
            .join(User, User.id == RefreshToken.user_id)
            .where(RefreshToken.grant_id.in_(grant_ids)))}
        stamp = _stamp(request)
        client = getattr(request, "client", None)
        at = self.svc.clock.utcnow()
        for gid in sorted(grant_ids):
            client_id, uuid, offline = found.get(
                gid, (client.client_id if client is not None else None, None, None))
            audit_rows.audit(db, "token.revoked", at=at,
                             actor=actor or (f"client:{client_id}" if client_id else None),
                             target=uuid,
                             **stamp, kind="refresh_token", reason=reason, grant=gid,
                             client_id=client_id, offline=offline)

    def revoke_refresh_tokens(self, *, user_id: int | None = None, sid: str | None = None,
                              client_id: str | None = None, offline: bool = False) -> None:
        """Revoke refresh-token families of a user, a session or a client (logout, password
        change, consent withdrawal)."""
        with self.svc.sessions() as db:
            query = select(RefreshToken.grant_id).where(RefreshToken.revoked.is_(False))
            if user_id is not None:
                query = query.where(RefreshToken.user_id == user_id)
            if sid is not None:
                query = query.where(RefreshToken.sid == sid)
            if client_id is not None:
                query = query.where(RefreshToken.client_id == client_id)
            if not offline:
                query = query.where(RefreshToken.offline.is_(False))
            grant_ids = set(db.scalars(query))
        self.revoke_grants(grant_ids)

    def revoke_user_refresh_tokens(self, user_id: int, *, keep_sid: str | None,
                                   offline: bool, keep_clients: frozenset[str]) -> int:
        """Every sign-out of a user (idp.sso.signout): the online families of every session
        but ``keep_sid`` (public sid; sessions already expired included), and with ``offline``
        the offline families of every client not in ``keep_clients``. How many families."""
        with self.svc.sessions() as db:
            online = RefreshToken.offline.is_(False)
            if keep_sid is not None:
                online = online & or_(RefreshToken.sid.is_(None), RefreshToken.sid != keep_sid)
            which = online
            if offline:
                gone = RefreshToken.offline.is_(True)
                if keep_clients:
                    gone = gone & RefreshToken.client_id.not_in(keep_clients)
                which = or_(online, gone)
            grant_ids = set(db.scalars(
                select(RefreshToken.grant_id).where(RefreshToken.revoked.is_(False),
                                                    RefreshToken.user_id == user_id, which)))
        self.revoke_grants(grant_ids)
        return len(grant_ids)

    # --- validating access tokens (userinfo, introspection, our APIs) ------------------------

    def validate_access_token(self, value: str) -> dict[str, Any] | None:
        """The claims of an access token we issued that is still valid, else None."""
        if not isinstance(value, str) or not value or len(value) > 8192:
            return None
        now = self.now()
        if value.count(".") == 2:
            try:
                claims = self.signer.verify(value, typ="at+jwt")
            except InvalidToken:
                return None
            if claims.get("iss") != self.issuer or not isinstance(claims.get("exp"), int):
                return None
            if claims["exp"] <= now:
                return None
            if self.svc.store.get(_AT_REVOKED + str(claims.get("jti"))):
                return None
        else:
            claims = self.svc.store.get(_OPAQUE + self.hash(value))
            if claims is None:
                return None
        gid = claims.get("gid")
        if gid and self.svc.store.get(_GRANT_REVOKED + gid):
            return None
        if claims.get("sid") and "offline_access" not in claims.get("scope", "").split() \
                and not self.session_alive(claims["sid"]):
            return None
        return claims

    def token_user(self, claims: dict[str, Any]) -> str | None:
        """The uuid of the user an access token (its validated ``claims``) was issued for:
        its ``sub``, or for a pairwise client's token the user recorded when it was issued
        (None when that record is gone)."""
        if is_pairwise(client_cache(self.svc).get(claims.get("client_id"))) \
                and claims.get("sub") != claims.get("client_id"):
            return self.svc.store.get(_PAIRWISE_USER + str(claims.get("jti")))
        return claims.get("sub")

    def subject(self, client: OAuthClient | None, user_uuid: str) -> str:
        """The ``sub`` the client sees for this user (OIDC Core §8: public or pairwise)."""
        return subject(self.svc, client, user_uuid)

    def userinfo_claims_request(self, token_claims: dict[str, Any]) -> dict | None:
        gid = token_claims.get("gid")
        return self.svc.store.get(_CLAIMS_REQUEST + gid) if gid else None

    def revoke_access_token(self, value: str, request: Any = None) -> bool:
        """Revoke one access token (RFC 7009); with ``request``, a ``token.revoked`` row."""
        claims = self.validate_access_token(value)
        if claims is None:
            return False
        if value.count(".") == 2:
            self.svc.store.put(_AT_REVOKED + claims["jti"], 1, max(1, claims["exp"] - self.now()))
        else:
            self.svc.store.delete(_OPAQUE + self.hash(value))
        if request is not None:
            with self.svc.sessions.begin() as db:
                audit_rows.audit_now(db, "token.revoked", at=self.svc.clock.utcnow(),
                                     actor=f"client:{claims['client_id']}",
                                     target=self.token_user(claims),
                                     **_stamp(request), kind="access_token",
                                     reason="revocation", jti=claims["jti"],
                                     client_id=claims["client_id"], grant=claims.get("gid"))
        return True

    def find_refresh_token(self, value: str) -> RefreshToken | None:
        if not isinstance(value, str) or len(value) > 200:
            return None
        with self.svc.sessions() as db:
            row = db.get(RefreshToken, self.hash(value))
            if row is not None:
                db.expunge(row)
            return row

    # --- sessions ------------------------------------------------------------------------------

    def code_context(self, result: AuthnResult, user: Subject, params: dict[str, Any],
                     public_sid: str) -> dict[str, Any]:
        ctx = {"grant_id": secrets.token_urlsafe(16), "user_id": user.user_id,
               "sub": user.uuid, "auth_time": result.auth_time, "acr": result.acr,
               "amr": result.amr, "sid": public_sid, "nonce": params.get("nonce"),
               "scope": params.get("scope", ""), "claims": params.get("claims_parsed"),
               "resource": params.get("resource_list") or [],
               "dpop_jkt": params.get("dpop_jkt")}
        return ctx


def engine(svc: Services) -> Engine:
    eng = svc.oidc_engine
    if eng is None:
        eng = svc.oidc_engine = Engine(svc)
    return eng
