"""The FAPI 2.0 Security Profile (Final) for the clients registered with
``fapi_profile: "fapi2-security"`` (their metadata is held to the profile by
``idp.core.client_metadata.check_fapi_profile``).

What the profile forbids is refused here, one visible list of small checks per stage; the engine
calls each stage through one hook line. Each check raises ``ProfileError`` (an RFC 6749 error:
the caller answers it the way its endpoint answers errors).

At the push (``/oauth2/par``, RFC 9126; FAPI 2.0 §5.3.2.2), ``PUSH_CHECKS``:
  1. ``redirect_uri`` is sent (§5.3.2.2-5);
  2. PKCE with ``S256`` is sent (§5.3.2.2-6; ``plain`` is refused before, for every client);
  3. ``response_type`` is ``code`` (§5.3.2.2-1; any other is refused before, for every client).
At the authorization endpoint, ``AUTHORIZE_CHECKS``:
  4. the request was pushed (§5.3.2.2-2): a plain or request-object request is refused.
At the token endpoint, ``TOKEN_CHECKS`` (after client authentication, before a code or
refresh token is used up):
  5. the access token will be sender-constrained (§5.3.2.1-5): a DPoP proof, or the client's
     certificate when it registered ``tls_client_certificate_bound_access_tokens``.
Client authentication (``assertion_problem``, §5.3.2.1-8, §5.4.1): the assertion is signed
with PS256, ES256 or EdDSA and its ``aud`` is the issuer identifier as a string (not an array,
not an endpoint URL; FAPI 2.0 Final, as draft-ietf-oauth-rfc7523bis).
Request objects (``request_object_problem``, RFC 9101 with FAPI 2.0 Message Signing §5.3.1):
PS256 / ES256 / EdDSA, and ``nbf`` required (the common checks then hold ``exp - nbf`` to 60
minutes).
What the engine does differently for these clients (no refusal): codes live at most
``CODE_LIFETIME`` seconds (§5.3.2.1-11), refresh tokens do not rotate unless the client's
``refresh_token_rotation`` says so (§5.3.2.1-9), tokens it signs default to ``PS256``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from ..core.client_metadata import FAPI2_SECURITY, FAPI_ALGS
from . import pushed
from .clients import OAuthClient
from .sender import cnf_for

CODE_LIFETIME = 60  # seconds, FAPI 2.0 §5.3.2.1-11
DEFAULT_ALG = "PS256"


class ProfileError(OAuth2Error):
    """A request the FAPI 2.0 profile forbids; ``error`` is the RFC 6749 code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


def applies(client: OAuthClient | None) -> bool:
    return client is not None and client.setting("fapi_profile") == FAPI2_SECURITY


# --- the checks, per stage -----------------------------------------------------------------------

def require_redirect_uri(client: OAuthClient, params: dict[str, Any]) -> None:
    if not params.get("redirect_uri"):
        raise ProfileError("invalid_request", "redirect_uri is required (FAPI 2.0)")


def require_pkce_s256(client: OAuthClient, params: dict[str, Any]) -> None:
    if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        raise ProfileError("invalid_request", "PKCE with code_challenge_method S256 is "
                                              "required (FAPI 2.0)")


def require_code_flow(client: OAuthClient, params: dict[str, Any]) -> None:
    if params.get("response_type") != "code":
        raise ProfileError("unsupported_response_type", "only response_type code is allowed "
                                                        "(FAPI 2.0)")


def require_pushed(client: OAuthClient, params: dict[str, Any]) -> None:
    if pushed.LOADED not in params:
        raise ProfileError("invalid_request", "this client must use pushed authorization "
                                              "requests (FAPI 2.0, RFC 9126)")


def require_sender_constraint(client: OAuthClient, request: Any) -> None:
    if not cnf_for(client, request):
        raise ProfileError("invalid_request", "sender-constrained tokens are required "
                                              "(FAPI 2.0): send a DPoP proof or present the "
                                              "client's TLS certificate")


RequestCheck = Callable[[OAuthClient, dict[str, Any]], None]
PUSH_CHECKS: tuple[RequestCheck, ...] = (require_redirect_uri, require_pkce_s256,
                                         require_code_flow)
AUTHORIZE_CHECKS: tuple[RequestCheck, ...] = (require_pushed,)
TOKEN_CHECKS: tuple[Callable[[OAuthClient, Any], None], ...] = (require_sender_constraint,)


def check_push(client: OAuthClient, params: dict[str, Any]) -> None:
    """The pushed request's parameters; raises ProfileError."""
    if applies(client):
        for check in PUSH_CHECKS:
            check(client, params)


def check_authorization(client: OAuthClient, params: dict[str, Any]) -> None:
    """The authorization request as /oauth2/authorize resolved it; raises ProfileError."""
    if applies(client):
        for check in AUTHORIZE_CHECKS:
            check(client, params)


def check_token_request(client: OAuthClient, request: Any) -> None:
    """authlib's token request after client authentication; raises ProfileError."""
    if applies(client):
        for check in TOKEN_CHECKS:
            check(client, request)


# --- JWTs the client signs -----------------------------------------------------------------------

def assertion_problem(client: OAuthClient | None, header: dict[str, Any],
                      claims: dict[str, Any], issuer: str) -> str | None:
    """Why a client assertion (RFC 7523) is refused for a profile client, else None. Read
    before the signature is verified: it only ever refuses."""
    if not applies(client):
        return None
    if header.get("alg") not in FAPI_ALGS:
        return f"the client assertion must be signed with {', '.join(FAPI_ALGS)} (FAPI 2.0)"
    if claims.get("aud") != issuer:
        return "the client assertion's aud must be the issuer identifier as a string (FAPI 2.0)"
    return None


def request_object_problem(client: OAuthClient, alg: str, claims: dict[str, Any]) -> str | None:
    """Why a verified request object is refused for a profile client, else None."""
    if not applies(client):
        return None
    if alg not in FAPI_ALGS:
        return f"request objects must be signed with {', '.join(FAPI_ALGS)} (FAPI 2.0)"
    if claims.get("nbf") is None:
        return "nbf is required (FAPI 2.0)"
    return None


# --- what the engine does differently ------------------------------------------------------------

def code_lifetime(client: OAuthClient, configured: int) -> int:
    return min(configured, CODE_LIFETIME) if applies(client) else configured


def refresh_rotation(client: OAuthClient, configured: bool) -> bool:
    """The client's own ``refresh_token_rotation``, else none for a profile client."""
    default = False if applies(client) else configured
    return bool(client.setting("refresh_token_rotation", default))


def signing_alg(client: OAuthClient, field: str) -> str:
    """The algorithm of a token we sign for the client (``field``: its metadata member)."""
    return client.setting(field) or (DEFAULT_ALG if applies(client) else "RS256")
