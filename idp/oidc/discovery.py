"""What OIDC Discovery 1.0 §3 / RFC 8414 §2 say about this provider; merged into the
well-known documents served by ``idp.web.wellknown``."""

from __future__ import annotations

from ..core.authn import ACR_MFA, ACR_SINGLE
from ..core.client_metadata import (
    AUTHORIZATION_ENCRYPTION_ALGS,
    AUTHORIZATION_ENCRYPTION_ENCS,
    DEVICE_CODE_GRANT,
    SUBJECT_TYPES,
    TOKEN_EXCHANGE,
)
from .dpop import DPOP_ALGS
from .jarm import JWT_MODES
from .server import ALL_AUTH_METHODS, STANDARD_SCOPES
from .tokens import SIGNING_ALGS

CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "sid", "nonce",
          "azp", "at_hash", "name", "given_name", "family_name", "middle_name", "nickname",
          "preferred_username", "profile", "picture", "website", "gender", "birthdate",
          "zoneinfo", "locale", "updated_at", "email", "email_verified", "phone_number",
          "phone_number_verified", "address", "groups", "roles"]


def metadata(issuer: str, *, mtls: bool = False) -> dict:
    """``mtls``: certificate-bound tokens are configured (``[mtls] client_cert_header``)."""
    confidential = [m for m in ALL_AUTH_METHODS if m != "none"]
    extra = {"tls_client_certificate_bound_access_tokens": True} if mtls else {}
    return extra | {
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "registration_endpoint": f"{issuer}/oauth2/register",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "scopes_supported": list(STANDARD_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post", *JWT_MODES],
        "device_authorization_endpoint": f"{issuer}/oauth2/device_authorization",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                  DEVICE_CODE_GRANT, TOKEN_EXCHANGE],
        "subject_types_supported": list(SUBJECT_TYPES),
        "id_token_signing_alg_values_supported": list(SIGNING_ALGS),
        "userinfo_signing_alg_values_supported": list(SIGNING_ALGS),
        # JARM §3
        "authorization_signing_alg_values_supported": list(SIGNING_ALGS),
        "authorization_encryption_alg_values_supported": list(AUTHORIZATION_ENCRYPTION_ALGS),
        "authorization_encryption_enc_values_supported": list(AUTHORIZATION_ENCRYPTION_ENCS),
        "token_endpoint_auth_methods_supported": ALL_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS)
        + ["HS256", "HS384", "HS512"],
        "introspection_endpoint_auth_methods_supported": confidential,
        "revocation_endpoint_auth_methods_supported": confidential,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": CLAIMS,
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": [ACR_SINGLE, ACR_MFA],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
    }
