"""JWT-Secured Authorization Requests (RFC 9101): verifying a request object.

A request object is a JWT the client signs (RFC 9101 §4) with a key of its JWK Set (``jwks`` or
``jwks_uri``, fetched through the outbound policy) or, for HS256/384/512, its client secret
(``client_secret_jwt`` clients: the only ones whose secret is kept, sealed).
Refused always: ``alg: none``, an algorithm other than the client's registered
``request_object_signing_alg``, a signature that does not verify. Its claims (RFC 9101 §4,
§10.8; FAPI 2.0 §5.3.2): ``iss`` is the client, ``aud`` is our issuer (a string, or an array
holding it), ``exp`` is required, in the future and at most an hour ahead (and at most an hour
after ``nbf``), ``nbf`` / ``iat`` not more than 60 s in the future, ``nbf`` not older than an
hour, ``client_id`` (when present) is the client, ``request`` / ``request_uri`` are not nested,
and a ``jti`` is accepted once (remembered in the shared store until ``exp``).

A request object may be encrypted to us (RFC 9101 §6.1, a nested JWT): a JWE with
``RSA-OAEP-256`` or ``ECDH-ES`` to one of our encryption keys (``use: enc`` in our JWKS,
``idp.keys``) and ``A256GCM`` or ``A128GCM``, holding the signed request object; the signed
one inside is then checked as above (encryption never replaces the signature).

A ``request_uri`` that is one of the client's registered ``request_uris`` (https, checked like
every URL the IdP connects to) is fetched (``fetch``) and verified the same way; any other
``request_uri`` that is not a pushed one is refused (``request_uri_not_supported``).

Its claims become the authorization request's parameters (RFC 9101 §6.3: only those; the
caller keeps nothing else but ``client_id``). Every refusal is logged at info with its reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from ..core.client_metadata import REQUEST_OBJECT_ALGS
from ..services import Services
from . import fapi
from .clients import OAuthClient
from .fetch import OutboundError, outbound
from .server import engine

log = logging.getLogger("idp.oidc.jar")

MAX_LIFETIME = 3600  # seconds from now (and from nbf) to exp; FAPI 2.0 §5.3.2.1
SKEW = 60  # seconds an nbf / iat may lie in the future (clock skew)
MAX_LENGTH = 16384
MAX_VALUE = 4096
_JTI = "rojti:"
# RFC 9101 §6.1 encryption we decrypt (discovery advertises these).
ENCRYPTION_ALGS = ("RSA-OAEP-256", "ECDH-ES")
ENCRYPTION_ENCS = ("A256GCM", "A128GCM")
# Claims of the JWT envelope, not parameters of the authorization request.
_ENVELOPE = ("iss", "aud", "exp", "nbf", "iat", "jti", "sub")


class RequestObjectError(Exception):
    """A refused request object: ``invalid_request_object`` (RFC 9101 §6.2), or
    ``invalid_request_uri`` when it could not be fetched."""

    def __init__(self, description: str, error: str = "invalid_request_object") -> None:
        super().__init__(description)
        self.description = description
        self.error = error


def fetch(svc: Services, client: OAuthClient, uri: str) -> str:
    """The request object at one of the client's registered ``request_uris`` (RFC 9101 §5.2,
    OIDC Core §6.2), fetched through the outbound policy (``idp.oidc.fetch``)."""
    try:
        return outbound(svc).get_jwt(uri)
    except OutboundError as exc:
        log.info("request object not fetched: %s", exc.reason,
                 extra={"client_id": client.client_id})
        raise RequestObjectError(f"the request_uri could not be fetched: {exc.reason}",
                                 "invalid_request_uri") from None


def verify(svc: Services, client: OAuthClient, token: Any) -> dict[str, Any]:
    """The authorization request parameters of ``client``'s request object ``token``
    (``resource`` as ``resource_list``); raises RequestObjectError."""
    try:
        claims = _verified_claims(svc, client, token)
        params = _parameters(claims)
        _check_jti(svc, client, claims)
    except RequestObjectError as exc:
        log.info("request object refused: %s", exc.description,
                 extra={"client_id": client.client_id})
        raise
    return params


def _header(token: str) -> dict[str, Any]:
    raw = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise RequestObjectError("the request object is not a JWT") from None
    if not isinstance(header, dict):
        raise RequestObjectError("the request object is not a JWT")
    return header


def _key(svc: Services, client: OAuthClient, alg: str) -> Any:
    if alg.startswith("HS"):
        if not client.secret_enc:
            raise RequestObjectError("the client has no secret to verify an HMAC request object")
        return OctKey.import_key(svc.sealer.open(client.secret_enc, context=client.client_id))
    try:
        return KeySet.import_key_set(engine(svc).client_jwks(client))
    except OAuth2Error as exc:
        raise RequestObjectError(f"the client's keys: {exc.description}") from None
    except (JoseError, ValueError, TypeError, KeyError):
        raise RequestObjectError("the client's key set is not usable") from None


def _decrypted(svc: Services, token: str) -> str:
    """The signed request object inside an encrypted one (a JWE of five parts)."""
    header = _header(token)
    if header.get("alg") not in ENCRYPTION_ALGS or header.get("enc") not in ENCRYPTION_ENCS:
        raise RequestObjectError("the request object's encryption is not supported")
    # The key the header names, else each of ours published for its algorithm (RFC 7516
    # makes kid optional; active first).
    kty = "RSA" if header["alg"].startswith("RSA") else "EC"
    keys = sorted((k for k in svc.keys.ring().enc_keys
                   if (k.kid == header["kid"] if "kid" in header else k.kty == kty)),
                  key=lambda k: k.status != "active")
    for key in keys:
        try:
            plaintext = jwe.decrypt_compact(token, key.jwk, algorithms=ENCRYPTION_ALGS
                                            + ENCRYPTION_ENCS).plaintext
            return plaintext.decode() if plaintext is not None else ""
        except (JoseError, ValueError, TypeError, UnicodeDecodeError):
            continue
    raise RequestObjectError("the request object cannot be decrypted")


def _verified_claims(svc: Services, client: OAuthClient, token: Any) -> dict[str, Any]:
    if isinstance(token, str) and len(token) <= MAX_LENGTH and token.count(".") == 4:
        token = _decrypted(svc, token)
    if not isinstance(token, str) or len(token) > MAX_LENGTH or token.count(".") != 2:
        raise RequestObjectError("the request object is not a signed JWT")
    alg = _header(token).get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise RequestObjectError("unsigned request objects (alg none) are refused")
    registered = client.setting("request_object_signing_alg")
    if registered and alg != registered:
        raise RequestObjectError(f"the client registered {registered} for request objects")
    if alg not in REQUEST_OBJECT_ALGS:
        raise RequestObjectError(f"the algorithm {alg} is not supported")
    try:
        claims = dict(jwt.decode(token, _key(svc, client, alg), algorithms=[alg]).claims)
    except (JoseError, ValueError, TypeError):
        raise RequestObjectError("the signature does not verify") from None
    _check_claims(svc, client, claims)
    refused = fapi.request_object_problem(client, alg, claims)
    if refused:
        raise RequestObjectError(refused)
    return claims


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestObjectError(f"{name} must be a number")
    return float(value)


def _check_claims(svc: Services, client: OAuthClient, claims: dict[str, Any]) -> None:
    if claims.get("iss") != client.client_id:
        raise RequestObjectError("iss must be the client_id")
    issuer = svc.settings.issuer
    aud = claims.get("aud")
    if aud != issuer and not (isinstance(aud, list) and issuer in aud):
        raise RequestObjectError("aud must be the issuer")
    if "client_id" in claims and claims["client_id"] != client.client_id:
        raise RequestObjectError("client_id does not match the client")
    now = svc.clock.now()
    exp, nbf, iat = (_number(claims, n) for n in ("exp", "nbf", "iat"))
    if exp is None:
        raise RequestObjectError("exp is required")
    if exp <= now:
        raise RequestObjectError("the request object has expired")
    if exp - now > MAX_LIFETIME or (nbf is not None and exp - nbf > MAX_LIFETIME):
        raise RequestObjectError("the request object lives longer than an hour")
    if nbf is not None and (nbf > now + SKEW or nbf < now - MAX_LIFETIME):
        raise RequestObjectError("nbf is too far in the future or the past")
    if iat is not None and iat > now + SKEW:
        raise RequestObjectError("iat is in the future")
    if "request" in claims or "request_uri" in claims:
        raise RequestObjectError("a request object must not hold request or request_uri")


def _parameters(claims: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in claims.items():
        if name in _ENVELOPE:
            continue
        if name == "resource":
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) for v in values):
                raise RequestObjectError("resource must be a string or an array of strings")
            params["resource_list"] = values
            continue
        if name == "claims" and isinstance(value, dict):
            value = json.dumps(value)
        elif name == "max_age" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise RequestObjectError(f"{name} must be a string of at most {MAX_VALUE} "
                                     "characters")
        params[name] = value
    return params


def _check_jti(svc: Services, client: OAuthClient, claims: dict[str, Any]) -> None:
    jti = claims.get("jti")
    if jti is None:
        return
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        raise RequestObjectError("jti must be a short string")
    ttl = max(1, int(claims["exp"] - svc.clock.now()) + SKEW)
    if not svc.store.add(_JTI + svc.hasher.hash(f"{client.client_id}:{jti}"), 1, ttl):
        raise RequestObjectError("the request object was used before (jti)")
