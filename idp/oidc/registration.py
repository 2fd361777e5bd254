"""Dynamic client registration (RFC 7591, OIDC Dynamic Registration 1.0) and management
(RFC 7592). Registration needs an admin-issued initial access token (one use) unless
``oidc.open_registration`` is on; each registered client gets a registration access token for
reading, updating and deleting itself."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, update

from ..app import services
from ..crypto import new_token
from ..errors import Conflict, ValidationError
from ..storage.clients import (
    AUTH_METHODS,
    ClientRegistry,
    is_loopback_host,
    validate_redirect_uri,
)
from ..storage.models import Client, InitialAccessToken
from .clients import client_cache
from .server import STANDARD_SCOPES
from .tokens import SIGNING_ALGS

bp = Blueprint("oidc_registration", __name__)
log = logging.getLogger("idp.oidc.registration")

_URL_FIELDS = ("logo_uri", "client_uri", "policy_uri", "tos_uri", "initiate_login_uri")
_KEPT = ("client_name", "logo_uri", "client_uri", "policy_uri", "tos_uri", "contacts",
         "id_token_signed_response_alg", "userinfo_signed_response_alg",
         "frontchannel_logout_uri", "frontchannel_logout_session_required",
         "backchannel_logout_session_required", "default_max_age", "require_auth_time",
         "jwks", "sector_identifier_uri", "subject_type", "software_id", "software_version")


class MetadataError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _https_url(name: str, value: Any) -> None:
    """https, or http on a loopback host (development)."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or not parts.netloc or not (
            parts.scheme == "https"
            or (parts.scheme == "http" and is_loopback_host(parts.hostname))):
        raise MetadataError("invalid_client_metadata", f"{name} must be an https URL")


def validate_metadata(meta: Any) -> dict[str, Any]:
    """Check RFC 7591 §2 metadata; return what we keep. Raises MetadataError."""
    if not isinstance(meta, dict):
        raise MetadataError("invalid_client_metadata", "the body must be a JSON object")
    grant_types = meta.get("grant_types", ["authorization_code"])
    response_types = meta.get("response_types", ["code"])
    if not isinstance(grant_types, list) or not isinstance(response_types, list):
        raise MetadataError("invalid_client_metadata", "grant_types and response_types "
                                                       "must be arrays")
    if any(rt != "code" for rt in response_types):
        raise MetadataError("invalid_client_metadata", "only response_type code is supported")
    if "authorization_code" in grant_types and "code" not in response_types:
        raise MetadataError("invalid_client_metadata", "authorization_code needs response "
                                                       "type code")
    redirect_uris = meta.get("redirect_uris", [])
    if not isinstance(redirect_uris, list) or not all(isinstance(u, str)
                                                      for u in redirect_uris):
        raise MetadataError("invalid_redirect_uri", "redirect_uris must be an array of URIs")
    try:
        for uri in redirect_uris:
            validate_redirect_uri(uri)
    except ValidationError as exc:
        raise MetadataError("invalid_redirect_uri", str(exc)) from None
    method = meta.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise MetadataError("invalid_client_metadata", "unsupported "
                                                       "token_endpoint_auth_method")
    if meta.get("jwks") and meta.get("jwks_uri"):
        raise MetadataError("invalid_client_metadata", "jwks and jwks_uri are exclusive")
    if meta.get("jwks") is not None and not (isinstance(meta["jwks"], dict)
                                             and isinstance(meta["jwks"].get("keys"), list)):
        raise MetadataError("invalid_client_metadata", "jwks must be a JWK Set")
    for key in ("id_token_signed_response_alg", "userinfo_signed_response_alg"):
        if key in meta and meta[key] not in SIGNING_ALGS:
            raise MetadataError("invalid_client_metadata", f"{key} must be one of "
                                                           f"{', '.join(SIGNING_ALGS)}")
    if meta.get("subject_type", "public") != "public":
        raise MetadataError("invalid_client_metadata", "only the public subject type is "
                                                       "supported")
    for key in _URL_FIELDS:
        if key in meta:
            _https_url(key, meta[key])
    for key in ("post_logout_redirect_uris",):
        if not isinstance(meta.get(key, []), list):
            raise MetadataError("invalid_client_metadata", f"{key} must be an array")
    scope = meta.get("scope", "openid profile email")
    if not isinstance(scope, str):
        raise MetadataError("invalid_client_metadata", "scope must be a string")
    scope = " ".join(s for s in scope.split() if s in STANDARD_SCOPES) or "openid"
    kept = {k: meta[k] for k in _KEPT if k in meta}
    if "sector_identifier_uri" in meta:
        _check_sector(meta["sector_identifier_uri"], redirect_uris)
    return {"grant_types": grant_types, "redirect_uris": redirect_uris, "method": method,
            "scope": scope, "post_logout_redirect_uris": meta.get("post_logout_redirect_uris",
                                                                  []),
            "backchannel_logout_uri": meta.get("backchannel_logout_uri"),
            "jwks_uri": meta.get("jwks_uri"), "extra": kept}


def _check_sector(uri: Any, redirect_uris: list[str]) -> None:
    """OIDC Registration §5: the document at sector_identifier_uri lists every redirect URI."""
    import requests

    _https_url("sector_identifier_uri", uri)
    try:
        resp = requests.get(uri, timeout=5, allow_redirects=False)
        listed = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        listed = None
    if not isinstance(listed, list) or not set(redirect_uris) <= set(listed):
        raise MetadataError("invalid_client_metadata", "the sector_identifier_uri document "
                                                       "does not list every redirect URI")


def _take_initial_token(svc, token: str | None) -> bool:
    if token is None:
        return False
    now = svc.clock.utcnow()
    with svc.sessions.begin() as db:
        done = db.execute(update(InitialAccessToken).where(
            InitialAccessToken.token_hash == svc.hasher.hash(token),
            InitialAccessToken.used_at.is_(None),
            InitialAccessToken.expires_at > now).values(used_at=now))
        return done.rowcount == 1


def _client_document(svc, row: Client, secret: str | None = None,
                     registration_token: str | None = None) -> dict[str, Any]:
    doc = dict(row.meta)
    doc["client_id"] = row.client_id
    doc["client_id_issued_at"] = int(row.created_at.timestamp())
    if secret:
        doc["client_secret"] = secret
        doc["client_secret_expires_at"] = 0
    if registration_token:
        doc["registration_access_token"] = registration_token
    doc["registration_client_uri"] = f"{svc.settings.issuer}/oauth2/register/{row.client_id}"
    return doc


@bp.post("/oauth2/register")
def register():
    svc = services()
    if not svc.settings.oidc.open_registration and not _take_initial_token(svc, _bearer()):
        return _error("invalid_token", "Registration needs a valid initial access token.",
                      401)
    try:
        meta = validate_metadata(request.get_json(silent=True))
        with svc.sessions.begin() as db:
            registry = ClientRegistry(db, svc.hasher, svc.sealer)
            row, secret = registry.create(
                None, name=meta["extra"].get("client_name"),
                redirect_uris=meta["redirect_uris"], grant_types=meta["grant_types"],
                auth_method=meta["method"], scope=meta["scope"],
                post_logout_redirect_uris=meta["post_logout_redirect_uris"],
                backchannel_logout_uri=meta["backchannel_logout_uri"],
                jwks_uri=meta["jwks_uri"], extra=meta["extra"])
            registration_token = new_token(32)
            row.registration_token_hash = svc.hasher.hash(registration_token)
            doc = _client_document(svc, row, secret, registration_token)
    except MetadataError as exc:
        return _error(exc.error, exc.description)
    except (ValidationError, Conflict) as exc:
        return _error("invalid_client_metadata", str(exc))
    client_cache(svc).bump()
    log.info("client registered dynamically", extra={"client_id": doc["client_id"]})
    resp = jsonify(doc)
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _managed_client(svc, client_id: str):
    token = _bearer()
    with svc.sessions() as db:
        row = db.get(Client, client_id)
        if row is None or token is None or not svc.hasher.verify(token,
                                                                 row.registration_token_hash):
            return None
        db.expunge(row)
        return row


@bp.route("/oauth2/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str):
    """RFC 7592 §2: an unknown client and a wrong token look the same (401)."""
    svc = services()
    row = _managed_client(svc, client_id)
    if row is None:
        return _error("invalid_token", "Unknown client or wrong registration access token.",
                      401)
    if request.method == "GET":
        resp = jsonify(_client_document(svc, row))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    if request.method == "DELETE":
        with svc.sessions.begin() as db:
            db.delete(db.get(Client, client_id))
        client_cache(svc).bump()
        return Response(status=204)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("client_id") != client_id:
        return _error("invalid_client_metadata", "The body must repeat the client_id.")
    if "client_secret" in body and not svc.hasher.verify(str(body["client_secret"]),
                                                         row.secret_hash):
        return _error("invalid_client_metadata", "client_secret does not match.")
    try:
        meta = validate_metadata(body)
    except MetadataError as exc:
        return _error(exc.error, exc.description)
    if meta["method"] != row.meta.get("token_endpoint_auth_method"):
        return _error("invalid_client_metadata", "token_endpoint_auth_method cannot change.")
    with svc.sessions.begin() as db:
        current = db.scalar(select(Client).where(Client.client_id == client_id))
        new_meta = dict(current.meta)
        new_meta.update(meta["extra"])
        new_meta.update(redirect_uris=meta["redirect_uris"], grant_types=meta["grant_types"],
                        scope=meta["scope"],
                        post_logout_redirect_uris=meta["post_logout_redirect_uris"])
        for key in ("backchannel_logout_uri", "jwks_uri"):
            if meta[key]:
                new_meta[key] = meta[key]
            else:
                new_meta.pop(key, None)
        current.meta = new_meta
        current.name = meta["extra"].get("client_name", current.name)
        db.flush()
        doc = _client_document(svc, current)
    client_cache(svc).bump()
    resp = jsonify(doc)
    resp.headers["Cache-Control"] = "no-store"
    return resp
