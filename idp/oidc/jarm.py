"""JWT Secured Authorization Response Mode for OAuth 2.0 (JARM, OpenID final).

With ``response_mode`` ``query.jwt``, ``fragment.jwt``, ``form_post.jwt`` or ``jwt`` (which is
``query.jwt`` for the code flow, §2.3.4) the authorization response, success or error, travels
as one parameter ``response``: a JWT signed by our keys with the client's
``authorization_signed_response_alg`` (default RS256), carrying ``iss``, ``aud`` (the client),
``exp`` (``[oidc] jarm_lifetime``), ``iat`` and the response parameters (§2.1, §2.2). When the
client registered ``authorization_encrypted_response_alg`` (and ``_enc``, default
A128CBC-HS256) the signed JWT is then encrypted to the client's encryption key from its
``jwks`` / ``jwks_uri`` (§2.3, a nested JWT with ``cty: JWT``). The ``iss`` parameter of
RFC 9207 is the JWT's own ``iss``, so it is not repeated beside it.

A client whose keys cannot be had when encryption is registered gets no response at all (an
unencrypted one would undo what it asked for): ``responder`` refuses before the request is
answered, so nothing (no code) is issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749.errors import InvalidClientError
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..core.client_metadata import DEFAULT_AUTHORIZATION_ENC, encryption_keys
from ..services import Services
from .clients import OAuthClient
from .results import FormPost, Redirect
from .server import engine

JWT_MODES = ("query.jwt", "fragment.jwt", "form_post.jwt", "jwt")


class JarmUnavailable(Exception):
    """The response cannot be encrypted to the client (no usable key); ``reason`` is safe to
    log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Responder:
    """How one client's authorization responses are packed: signed, then maybe encrypted."""

    client_id: str
    alg: str
    enc_alg: str | None = None
    enc: str | None = None
    enc_key: Any = None


def responder(svc: Services, client: OAuthClient) -> Responder:
    """The client's JARM settings with its encryption key fetched; JarmUnavailable when
    encryption is registered but no key fit for it can be had."""
    alg = client.setting("authorization_signed_response_alg", "RS256")
    enc_alg = client.setting("authorization_encrypted_response_alg")
    if not enc_alg:
        return Responder(client.client_id, alg)
    try:
        jwks = engine(svc).client_jwks(client)
    except InvalidClientError:
        raise JarmUnavailable("the client's keys cannot be fetched") from None
    keys = encryption_keys(jwks, enc_alg)
    if not keys:
        raise JarmUnavailable(f"the client's keys hold no encryption key for {enc_alg}")
    try:
        key = KeySet.import_key_set({"keys": keys[:1]}).keys[0]
    except (JoseError, ValueError, TypeError, KeyError):
        raise JarmUnavailable("the client's encryption key is not usable") from None
    enc = client.setting("authorization_encrypted_response_enc", DEFAULT_AUTHORIZATION_ENC)
    return Responder(client.client_id, alg, enc_alg, enc, key)


def pack(svc: Services, how: Responder, params: dict[str, str]) -> str:
    """The ``response`` JWT (JARM §2.1) for these response parameters."""
    eng = engine(svc)
    now = eng.now()
    claims = dict(params, iss=eng.issuer, aud=how.client_id, iat=now,
                  exp=now + int(svc.settings.oidc.jarm_lifetime))
    signed = eng.signer.sign(claims, how.alg)
    if how.enc_alg is None:
        return signed
    header = {"alg": how.enc_alg, "enc": how.enc, "cty": "JWT"}
    kid = how.enc_key.kid
    if kid:
        header["kid"] = kid
    try:
        return jwe.encrypt_compact(header, signed, how.enc_key,
                                   algorithms=[how.enc_alg, how.enc])
    except (JoseError, ValueError, TypeError) as exc:
        raise JarmUnavailable(f"encryption failed: {type(exc).__name__}") from None


def respond(svc: Services, how: Responder, redirect_uri: str, mode: str,
            params: dict[str, str]) -> Redirect | FormPost:
    """Send the packed response the way ``mode`` says (JARM §2.3)."""
    token = pack(svc, how, params)
    if mode == "form_post.jwt":
        return FormPost(redirect_uri, [("response", token)])
    parts = urlsplit(redirect_uri)
    if mode == "fragment.jwt":
        return Redirect(urlunsplit(parts._replace(fragment=urlencode({"response": token}))),
                        302, no_store=True)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("response", token)]
    return Redirect(urlunsplit(parts._replace(query=urlencode(query))), 302, no_store=True)

