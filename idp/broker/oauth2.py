"""Upstream plain OAuth 2.0 providers (GitHub and the like): the authorization code flow
(RFC 6749 §4.1) with state and PKCE (RFC 7636), then the person from a user-info endpoint.
There is no ID token, so nothing here proves an e-mail address verified unless the provider
says so: a ``email_verified`` claim that is true, or an e-mails endpoint (GitHub's
``/user/emails``) marking the primary address ``verified``.

Config (``UpstreamProvider.config``): ``authorization_endpoint``, ``token_endpoint``,
``userinfo_endpoint``, ``client_id``, ``scopes``; optional ``emails_endpoint``,
``subject_claim`` (default ``id``, then ``sub``), ``email_claim`` (``email``),
``token_endpoint_auth_method`` (``client_secret_basic`` | ``client_secret_post``),
``authorize_params`` (extra query parameters, e.g. ``{"prompt": "select_account"}``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ..core.broker import UpstreamIdentity, attributes_of
from ..core.client_metadata import safe_uri
from ..services import Services
from ..sso.broker import Flight
from ..storage.models_broker import UpstreamProvider
from .base import Outgoing, UpstreamError, callback_url
from .http import call

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# Authorization request parameters the IdP sets itself: ``authorize_params`` must not.
_OWN_PARAMS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "login_hint",
}


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def secret_of(svc: Services, prov: UpstreamProvider) -> str | None:
    if not prov.secret_enc:
        return None
    return svc.sealer.open(prov.secret_enc, f"upstream:{prov.alias}").decode()


def _endpoint(config: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = config.get(name)
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError(f"{name} must be an http(s) URL")
    if not safe_uri("client_uri", value.replace("http://", "https://", 1)):
        raise ValueError(f"{name} is not a usable URL")
    return value


_COMMON_KEYS = {"client_id", "scopes", "token_endpoint_auth_method", "authorize_params"}


def _check_common(config: Mapping[str, Any], has_secret: bool,
                  own_keys: set[str]) -> dict[str, Any]:
    unknown = sorted(set(config) - _COMMON_KEYS - own_keys)
    if unknown:
        hint = " (the secret is given apart and kept sealed)" if "secret" in unknown[0] else ""
        raise ValueError(f"unknown setting {unknown[0]!r}{hint}")
    client_id = config.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ValueError("client_id is required")
    scopes = config.get("scopes", "")
    if not isinstance(scopes, str):
        raise ValueError("scopes is a space-separated text")
    method = config.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    extra = config.get("authorize_params") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise ValueError("authorize_params is an object of texts")
    if set(extra) & _OWN_PARAMS:
        raise ValueError(f"authorize_params must not set {sorted(set(extra) & _OWN_PARAMS)[0]}")
    if not has_secret:
        raise ValueError("a client secret is required")
    return {
        "client_id": client_id.strip(),
        "scopes": " ".join(scopes.split()),
        "token_endpoint_auth_method": method,
        "authorize_params": dict(extra),
    }


class OAuth2Upstream:
    kind = "oauth2"
    default_scopes = ""

    def check_config(self, config: Mapping[str, Any], has_secret: bool) -> dict[str, Any]:
        out = _check_common(config, has_secret, {
            "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint",
            "subject_claim", "email_claim"})
        for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
            out[name] = _endpoint(config, name)
        emails = _endpoint(config, "emails_endpoint", required=False)
        if emails:
            out["emails_endpoint"] = emails
        for name, default in (("subject_claim", "id"), ("email_claim", "email")):
            value = config.get(name, default)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} is a claim name")
            out[name] = value
        return out

    # --- the round trip --------------------------------------------------------------------------

    def endpoints(self, svc: Services, prov: UpstreamProvider) -> Mapping[str, Any]:
        return prov.config

    def authorize_query(self, prov: UpstreamProvider, flight: Flight) -> dict[str, str]:
        cfg = prov.config
        query = {
            "response_type": "code",
            "client_id": cfg["client_id"],
            "redirect_uri": "",  # set by begin()
            "state": flight.state,
            "code_challenge": pkce_challenge(flight.verifier),
            "code_challenge_method": "S256",
        }
        scopes = cfg.get("scopes") or self.default_scopes
        if scopes:
            query["scope"] = scopes
        if flight.login_hint:
            query["login_hint"] = flight.login_hint
        query.update(cfg.get("authorize_params") or {})
        return query

    def begin(self, svc: Services, prov: UpstreamProvider, flight: Flight) -> Outgoing:
        endpoint = self.endpoints(svc, prov)["authorization_endpoint"]
        query = self.authorize_query(prov, flight)
        query["redirect_uri"] = callback_url(svc, prov.alias)
        sep = "&" if "?" in endpoint else "?"
        return Outgoing(endpoint + sep + urlencode(query))

    def redeem(self, svc: Services, prov: UpstreamProvider, flight: Flight,
               answer: Mapping[str, str]) -> dict[str, Any]:
        """The token endpoint's answer for the callback's code (after its error and state)."""
        if answer.get("error"):
            raise UpstreamError("error_from_upstream", str(answer.get("error"))[:100])
        code = answer.get("code")
        if not code:
            raise UpstreamError("no_code")
        cfg = prov.config
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_url(svc, prov.alias),
            "code_verifier": flight.verifier,
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        secret = secret_of(svc, prov) or ""
        if cfg.get("token_endpoint_auth_method") == "client_secret_post":
            form.update(client_id=cfg["client_id"], client_secret=secret)
        else:  # RFC 6749 §2.3.1: both parts form-encoded before the Basic encoding
            raw = f"{quote(cfg['client_id'], safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        tokens = call(svc, "POST", self.endpoints(svc, prov)["token_endpoint"], what="token",
                      body=urlencode(form).encode(), headers=headers)
        if not isinstance(tokens, dict) or tokens.get("error"):
            raise UpstreamError("token_failed", str(tokens.get("error", ""))[:100]
                                if isinstance(tokens, dict) else "")
        if not isinstance(tokens.get("access_token"), str):
            raise UpstreamError("token_failed", "no access token")
        return tokens

    def userinfo(self, svc: Services, url: str, access_token: str) -> dict[str, Any]:
        info = call(svc, "GET", url, what="userinfo",
                    headers={"Authorization": f"Bearer {access_token}"})
        if not isinstance(info, dict):
            raise UpstreamError("userinfo_failed", "not a JSON object")
        return info

    def finish(self, svc: Services, prov: UpstreamProvider, flight: Flight,
               answer: Mapping[str, str]) -> UpstreamIdentity:
        cfg = prov.config
        tokens = self.redeem(svc, prov, flight, answer)
        claims = self.userinfo(svc, cfg["userinfo_endpoint"], tokens["access_token"])
        subject = claims.get(cfg.get("subject_claim", "id"))
        if subject in (None, ""):
            subject = claims.get("sub")
        if subject in (None, "") or isinstance(subject, dict | list):
            raise UpstreamError("no_subject")
        email = claims.get(cfg.get("email_claim", "email"))
        verified = claims.get("email_verified") is True
        if cfg.get("emails_endpoint"):
            email, verified = self._primary_email(svc, cfg["emails_endpoint"],
                                                  tokens["access_token"])
        return UpstreamIdentity(
            provider=prov.alias,
            subject=str(subject)[:255],
            email=email if isinstance(email, str) and email else None,
            email_verified=bool(verified and isinstance(email, str) and email),
            attributes=attributes_of(claims),
        )

    def _primary_email(self, svc: Services, url: str, token: str) -> tuple[str | None, bool]:
        """GitHub's ``/user/emails``: the primary address and whether GitHub verified it."""
        listed = call(svc, "GET", url, what="emails", headers={"Authorization": f"Bearer {token}"})
        for entry in listed if isinstance(listed, list) else []:
            if isinstance(entry, dict) and entry.get("primary") and entry.get("email"):
                return str(entry["email"]), entry.get("verified") is True
        return None, False

    def logout_url(self, svc: Services, prov: UpstreamProvider, session_ref: str,
                   return_to: str, state: str) -> str | None:
        return None
