"""Sender-constrained tokens: DPoP-bound (RFC 9449) and certificate-bound (RFC 8705 §3).

At the token endpoint (``token_request``) a DPoP proof is checked before the grant runs and its
key thumbprint, with the client certificate's, rides on the request. After the client is
authenticated (``require_constraint``) a client registered with ``dpop_bound_access_tokens``
(RFC 9449 §5.2) or ``tls_client_certificate_bound_access_tokens`` (RFC 8705 §3.4) must present
its proof or certificate. Access tokens get ``cnf`` (``cnf_for``): ``jkt`` for a DPoP proof
(``token_type: DPoP``), ``x5t#S256`` when the client asked for certificate-bound tokens. Refresh
tokens of public clients are bound the same way (RFC 9449 §5, RFC 8705 §4) and a refresh must
present the same key or certificate (``check_refresh_binding``); an authorization code asked for
with ``dpop_jkt`` (RFC 9449 §10) is redeemed only with that key (``check_code_binding``).

At a resource endpoint (userinfo, the admin API, SCIM) ``check_holder`` refuses a DPoP-bound
token sent as Bearer, checks the proof (with ``ath``) against the token's ``jkt``, and the
certificate against its ``x5t#S256`` (RFC 9449 §7, RFC 8705 §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, OAuth2Error

from ..services import Services
from . import mtls
from .clients import OAuthClient
from .dpop import DPOP_ALGS, DPoPError, nonce_headers, verify_proof
from .http import HttpRequest, PlainOAuth2Request
from .results import JsonResult

_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 §5: the token request's DPoP proof is missing or not acceptable."""

    error = "invalid_dpop_proof"


def mtls_enabled(svc: Services) -> bool:
    return bool(svc.settings.mtls.client_cert_header)


# --- the token endpoint ---------------------------------------------------------------------------

def proof_key(svc: Services, req: HttpRequest, path: str) -> str | None | JsonResult:
    """The key thumbprint of the request's DPoP proof (None without one), or the 400 refusal
    of a bad proof (RFC 9449 §5, §8) — at the token endpoint and at PAR (§10.1)."""
    value = req.headers.get("DPoP")
    if value is None:
        return None
    try:
        return verify_proof(svc, value, method=req.method,
                            htu=f"{svc.settings.issuer}{path}").jkt
    except DPoPError as exc:
        headers = {"Cache-Control": "no-store", **nonce_headers(svc)}
        return JsonResult(400, {"error": exc.error, "error_description": exc.description},
                          headers)


def token_request(svc: Services, req: HttpRequest) -> PlainOAuth2Request | JsonResult:
    """authlib's request for the token endpoint, carrying the DPoP key and certificate
    thumbprints; or the refusal of a bad proof (400, RFC 9449 §5, §8)."""
    oauth_req = PlainOAuth2Request(req)
    jkt = proof_key(svc, req, "/oauth2/token")
    if isinstance(jkt, JsonResult):
        return jkt
    oauth_req.dpop_jkt = jkt
    if mtls_enabled(svc):
        oauth_req.cert_thumbprint = mtls.thumbprint_of(req.client_cert)
    return oauth_req


def require_constraint(client: OAuthClient, request: Any) -> None:
    """RFC 9449 §5.2, RFC 8705 §3.4: a client registered for bound tokens sends what binds
    them, before anything (a code, a refresh token) is used up."""
    if client.setting("dpop_bound_access_tokens") and not _jkt(request):
        raise InvalidDPoPProofError("This client must send a DPoP proof.")
    if client.setting("tls_client_certificate_bound_access_tokens") and not _x5t(request):
        raise InvalidRequestError("This client must present its TLS client certificate.")


def cnf_for(client: OAuthClient, request: Any) -> dict[str, str]:
    """The confirmation (RFC 7800) the new access token is bound to: empty for a Bearer."""
    cnf = {}
    if _jkt(request):
        cnf["jkt"] = _jkt(request)
    if client.setting("tls_client_certificate_bound_access_tokens") and _x5t(request):
        cnf["x5t#S256"] = _x5t(request)
    return cnf


def refresh_cnf(client: OAuthClient, cnf: dict[str, str]) -> dict[str, str] | None:
    """A refresh token is bound only for a public client (RFC 9449 §5, RFC 8705 §4): a
    confidential client's is bound to its authentication already."""
    return dict(cnf) if client.is_public and cnf else None


def check_refresh_binding(bound: dict[str, str] | None, request: Any) -> None:
    if not bound:
        return
    if "jkt" in bound and bound["jkt"] != _jkt(request):
        raise InvalidGrantError("The refresh token is bound to another DPoP key.")
    if "x5t#S256" in bound and bound["x5t#S256"] != _x5t(request):
        raise InvalidGrantError("The refresh token is bound to another client certificate.")


def check_dpop_jkt(value: str | None) -> bool:
    """RFC 9449 §10: ``dpop_jkt`` is a JWK SHA-256 thumbprint (43 base64url characters)."""
    return value is None or bool(_JKT.fullmatch(value))


def check_code_binding(dpop_jkt: str | None, request: Any) -> None:
    """RFC 9449 §10: a code asked for with dpop_jkt needs a proof by that key."""
    if dpop_jkt and dpop_jkt != _jkt(request):
        raise InvalidGrantError("The DPoP proof key does not match the dpop_jkt of the "
                                "authorization request.")


def token_type(cnf: dict[str, str]) -> str:
    return "DPoP" if "jkt" in cnf else "Bearer"


def _jkt(request: Any) -> str | None:
    return getattr(request, "dpop_jkt", None)


def _x5t(request: Any) -> str | None:
    return getattr(request, "cert_thumbprint", None)


# --- resource endpoints ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Presentation:
    """What a request to a resource endpoint shows besides its token: the method and URL a
    DPoP proof must name, the DPoP header, the client certificate from a trusted proxy."""

    method: str
    htu: str
    dpop: str | None = None
    client_cert: str | None = None


def presentation(req: HttpRequest, htu: str) -> Presentation:
    return Presentation(req.method, htu, req.headers.get("DPoP"), req.client_cert)


@dataclass(frozen=True)
class HolderRefusal:
    """Why the holder of a valid token is not its sender: ``error`` for the challenge
    (``invalid_token``, ``invalid_dpop_proof``, ``use_dpop_nonce``), ``dpop`` when the
    challenge is a DPoP one."""

    error: str
    description: str
    dpop: bool
    headers: dict[str, str] = field(default_factory=dict)


def check_holder(svc: Services, claims: dict[str, Any], scheme: str, token: str,
                 shown: Presentation) -> HolderRefusal | None:
    """RFC 9449 §7, RFC 8705 §3: the token's ``cnf`` holds for this request."""
    cnf = claims.get("cnf") if isinstance(claims.get("cnf"), dict) else {}
    jkt = cnf.get("jkt")
    if scheme == "dpop":
        if not jkt:
            return HolderRefusal("invalid_token", "The access token is not DPoP-bound; send "
                                                  "it as Bearer.", True)
        if shown.dpop is None:
            return HolderRefusal("invalid_dpop_proof", "A DPoP proof is required.", True)
        try:
            proof = verify_proof(svc, shown.dpop, method=shown.method, htu=shown.htu,
                                 access_token=token)
        except DPoPError as exc:
            return HolderRefusal(exc.error, exc.description, True, nonce_headers(svc))
        if proof.jkt != jkt:
            return HolderRefusal("invalid_dpop_proof", "The DPoP proof is signed by another "
                                                       "key than the token is bound to.", True)
    elif jkt:
        return HolderRefusal("invalid_token", "The access token is DPoP-bound: send it as "
                                              "Authorization: DPoP with a proof.", True)
    x5t = cnf.get("x5t#S256")
    if x5t and mtls.thumbprint_of(shown.client_cert) != x5t:
        return HolderRefusal("invalid_token", "The access token is bound to a client "
                                              "certificate this request did not present.",
                             scheme == "dpop")
    return None


def challenge(error: str, description: str, *, dpop: bool, scope: str | None = None) -> str:
    """The ``WWW-Authenticate`` value (RFC 6750 §3, RFC 9449 §7.1); no error: no token came."""
    scheme = "DPoP" if dpop else "Bearer"
    params = []
    if error:
        params.append(f'error="{error}"')
        params.append(f'error_description="{description}"')
    if scope:
        params.append(f'scope="{scope}"')
    if dpop:
        params.append(f'algs="{" ".join(DPOP_ALGS)}"')
    return f"{scheme} {', '.join(params)}" if params else scheme


def split_authorization(header: str) -> tuple[str, str] | None:
    """(scheme, token) of ``Authorization: Bearer|DPoP <token>`` (scheme in lower case), or
    None when the header is not one of those."""
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme not in ("bearer", "dpop") or not value:
        return None
    return scheme, value
