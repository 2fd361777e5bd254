"""Upstream OpenID Connect providers, found by discovery (OIDC Discovery 1.0 §4:
``{issuer}/.well-known/openid-configuration``): the authorization code flow with state, nonce
and PKCE; the ID token verified as OIDC Core §3.1.3.7 says — signature by a key of the
upstream's JWKS (never ``alg: none``, never an HMAC with the client secret), ``iss`` the
configured issuer, ``aud`` holding our client id (``azp`` ours when present or when there are
several audiences), not expired, issued not in the future, ``nonce`` the flight's; the
callback's ``iss`` (RFC 9207) the issuer when sent; userinfo merged when it names the same
``sub`` (§5.3.2); RP-initiated logout at the ``end_session_endpoint`` with ``id_token_hint``.

Config: ``issuer``, ``client_id``, ``scopes`` (default ``openid profile email``); optional
``discovery_url`` (default from the issuer), ``token_endpoint_auth_method``,
``authorize_params``, ``logout`` (false: never send the browser to the upstream's logout).
Discovery and the key set are kept in the shared store for ``CACHE_SECONDS``; a key id not in
the kept set fetches the set again once (key rotation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..core.broker import UpstreamIdentity, attributes_of
from ..services import Services
from ..sso.broker import Flight
from ..storage.models_broker import UpstreamProvider
from .base import UpstreamError
from .http import call
from .oauth2 import OAuth2Upstream, _check_common, _endpoint

CACHE_SECONDS = 3600
# Asymmetric algorithms only: a MAC keyed with the client secret proves nothing a leaked
# secret could not forge.
ID_TOKEN_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                 "ES512", "EdDSA")
# ID token claims about the token itself, left out of the person's attributes.
_PROTOCOL_CLAIMS = {"iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash",
                    "auth_time", "sid", "jti", "acr", "amr", "s_hash"}


def _cache_key(kind: str, url: str) -> str:
    return f"broker:{kind}:" + hashlib.sha256(url.encode()).hexdigest()[:40]


class OidcUpstream(OAuth2Upstream):
    kind = "oidc"
    default_scopes = "openid profile email"

    def check_config(self, config: Mapping[str, Any], has_secret: bool) -> dict[str, Any]:
        out = _check_common(config, has_secret, {"issuer", "discovery_url", "logout"})
        issuer = _endpoint(config, "issuer")
        assert issuer is not None
        out["issuer"] = issuer
        if config.get("discovery_url"):
            out["discovery_url"] = _endpoint(config, "discovery_url")
        scopes = out["scopes"].split() or self.default_scopes.split()
        if "openid" not in scopes:
            scopes.insert(0, "openid")
        out["scopes"] = " ".join(scopes)
        out["logout"] = config.get("logout", True) is not False
        return out

    # --- discovery and keys ----------------------------------------------------------------------

    def discovery_url(self, prov: UpstreamProvider) -> str:
        cfg = prov.config
        return cfg.get("discovery_url") or (
            cfg["issuer"].rstrip("/") + "/.well-known/openid-configuration")

    def endpoints(self, svc: Services, prov: UpstreamProvider) -> Mapping[str, Any]:
        url = self.discovery_url(prov)
        key = _cache_key("disco", url)
        doc = svc.store.get(key)
        if doc is None:
            doc = call(svc, "GET", url, what="discovery")
            if not isinstance(doc, dict):
                raise UpstreamError("discovery_failed", "not a JSON object")
            # OIDC Discovery §4.3: the document's issuer is exactly the configured one.
            if doc.get("issuer") != prov.config["issuer"]:
                raise UpstreamError("discovery_failed", "the issuer does not match")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(name), str):
                    raise UpstreamError("discovery_failed", f"no {name}")
            svc.store.put(key, doc, CACHE_SECONDS)
        return doc

    def key_set(self, svc: Services, jwks_uri: str, refresh: bool = False) -> KeySet:
        key = _cache_key("jwks", jwks_uri)
        doc = None if refresh else svc.store.get(key)
        if doc is None:
            doc = call(svc, "GET", jwks_uri, what="jwks")
            if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
                raise UpstreamError("jwks_failed", "not a JWK Set")
            svc.store.put(key, doc, CACHE_SECONDS)
        try:
            return KeySet.import_key_set(doc)
        except (JoseError, ValueError, TypeError):
            raise UpstreamError("jwks_failed", "the key set cannot be read") from None

    # --- the round trip --------------------------------------------------------------------------

    def authorize_query(self, prov: UpstreamProvider, flight: Flight) -> dict[str, str]:
        return {**super().authorize_query(prov, flight), "nonce": flight.nonce}

    def finish(self, svc: Services, prov: UpstreamProvider, flight: Flight,
               answer: Mapping[str, str]) -> UpstreamIdentity:
        issuer = prov.config["issuer"]
        if answer.get("iss") is not None and answer.get("iss") != issuer:
            raise UpstreamError("wrong_issuer", "the callback's iss")  # RFC 9207 §2.4
        tokens = self.redeem(svc, prov, flight, answer)
        doc = self.endpoints(svc, prov)
        raw = tokens.get("id_token")
        if not isinstance(raw, str):
            raise UpstreamError("no_id_token")
        claims = self.verify_id_token(svc, prov, doc, raw, flight.nonce)
        merged = dict(claims)
        if isinstance(doc.get("userinfo_endpoint"), str):
            info = self.userinfo(svc, doc["userinfo_endpoint"], tokens["access_token"])
            if info.get("sub") != claims["sub"]:
                raise UpstreamError("userinfo_failed", "another subject")
            merged = {**info, **claims}
        person = {k: v for k, v in merged.items() if k not in _PROTOCOL_CLAIMS}
        email = person.get("email")
        verified = person.get("email_verified")
        return UpstreamIdentity(
            provider=prov.alias,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=(verified is True or verified == "true") and isinstance(email, str),
            attributes=attributes_of(person),
            session_ref=raw,
        )

    def verify_id_token(self, svc: Services, prov: UpstreamProvider, doc: Mapping[str, Any],
                        raw: str, nonce: str) -> dict[str, Any]:
        cfg = prov.config
        try:
            header = jws.extract_compact(raw.encode()).protected
        except (JoseError, ValueError):
            raise UpstreamError("bad_id_token", "not a signed JWT") from None
        if header.get("alg") not in ID_TOKEN_ALGS:
            raise UpstreamError("bad_id_token_signature", f"alg {header.get('alg')!r}")
        keys = self.key_set(svc, doc["jwks_uri"])
        kid = header.get("kid")
        if kid and not any(k.kid == kid for k in keys.keys):
            keys = self.key_set(svc, doc["jwks_uri"], refresh=True)
        try:
            token = jwt.decode(raw, keys, algorithms=list(ID_TOKEN_ALGS))
        except (JoseError, ValueError):
            raise UpstreamError("bad_id_token_signature") from None
        claims = dict(token.claims)
        now = svc.clock.now()
        skew = svc.settings.broker.clock_skew_seconds
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        checks = (
            ("wrong_issuer", claims.get("iss") == cfg["issuer"]),
            ("wrong_audience", cfg["client_id"] in audiences),
            ("wrong_audience", claims.get("azp", cfg["client_id"]) == cfg["client_id"]
             and (len(audiences) == 1 or claims.get("azp") == cfg["client_id"])),
            ("expired", isinstance(claims.get("exp"), int | float) and claims["exp"] > now - skew),
            ("issued_in_future",
             isinstance(claims.get("iat"), int | float) and claims["iat"] <= now + skew),
            ("wrong_nonce", claims.get("nonce") == nonce),
            ("no_subject", isinstance(claims.get("sub"), str) and 0 < len(claims["sub"]) <= 255),
        )
        for reason, ok in checks:
            if not ok:
                raise UpstreamError(reason)
        return claims

    def logout_url(self, svc: Services, prov: UpstreamProvider, session_ref: str,
                   return_to: str, state: str) -> str | None:
        """OIDC RP-Initiated Logout 1.0 §2 at the upstream, when it has an end-session
        endpoint and the provider's ``logout`` is not off."""
        if prov.config.get("logout") is False:
            return None
        try:
            endpoint = self.endpoints(svc, prov).get("end_session_endpoint")
        except UpstreamError:
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        query = urlencode({"id_token_hint": session_ref, "post_logout_redirect_uri": return_to,
                           "client_id": prov.config["client_id"], "state": state})
        return endpoint + ("&" if "?" in endpoint else "?") + query
