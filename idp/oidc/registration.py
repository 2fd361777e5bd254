"""Dynamic client registration (RFC 7591, OIDC Dynamic Registration 1.0) and management
(RFC 7592). Registration needs an admin-issued initial access token (one use) unless
``oidc.open_registration`` is on; each registered client gets a registration access token for
reading, updating and deleting itself."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from ..core.client_metadata import MetadataError, Policy, check_client_metadata
from ..crypto import new_token
from ..errors import Conflict, ValidationError
from ..services import Services
from ..storage.clients import ClientRegistry
from ..storage.models import Client, InitialAccessToken
from .clients import client_cache
from .http import HttpRequest
from .results import BodyResult, JsonResult
from .server import STANDARD_SCOPES
from .subjects import check_sector_document

log = logging.getLogger("idp.oidc.registration")

_KEPT = ("client_name", "logo_uri", "client_uri", "policy_uri", "tos_uri", "contacts",
         "id_token_signed_response_alg", "userinfo_signed_response_alg",
         "frontchannel_logout_uri", "frontchannel_logout_session_required",
         "backchannel_logout_session_required", "default_max_age", "require_auth_time",
         "jwks", "sector_identifier_uri", "subject_type", "software_id", "software_version",
         "dpop_bound_access_tokens", "tls_client_certificate_bound_access_tokens",
         "authorization_signed_response_alg", "authorization_encrypted_response_alg",
         "authorization_encrypted_response_enc")


_NO_STORE = {"Cache-Control": "no-store"}


def _error(error: str, description: str, status: int = 400) -> JsonResult:
    return JsonResult(status, {"error": error, "error_description": description}, _NO_STORE)


def _bearer(req: HttpRequest) -> str | None:
    scheme, _, value = req.header("Authorization").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def validate_metadata(meta: Any, policy: Policy) -> dict[str, Any]:
    """Check the body with the one client-metadata validator (``metadata.py``); return what we
    keep. Raises MetadataError (RFC 7591 §3.2.2 codes)."""
    check_client_metadata(meta, policy)
    grant_types = meta.get("grant_types", ["authorization_code"])
    redirect_uris = meta.get("redirect_uris", [])
    scope = meta.get("scope", "openid profile email")
    scope = " ".join(s for s in scope.split() if s in STANDARD_SCOPES) or "openid"
    kept = {k: meta[k] for k in _KEPT if k in meta}
    return {"grant_types": grant_types, "redirect_uris": redirect_uris,
            "method": meta.get("token_endpoint_auth_method", "client_secret_basic"),
            "scope": scope, "post_logout_redirect_uris": meta.get("post_logout_redirect_uris",
                                                                  []),
            "backchannel_logout_uri": meta.get("backchannel_logout_uri"),
            "jwks_uri": meta.get("jwks_uri"), "extra": kept}


def check_sector(svc, meta: dict[str, Any]) -> None:
    """OIDC Registration §5: the sector document lists every redirect URI (``subjects.py``)."""
    check_sector_document(svc, {"redirect_uris": meta["redirect_uris"],
                                "sector_identifier_uri":
                                    meta["extra"].get("sector_identifier_uri")})


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


def register(svc: Services, req: HttpRequest) -> JsonResult:
    """RFC 7591 §3: register a client from the JSON body."""
    if not svc.settings.oidc.open_registration and not _take_initial_token(svc, _bearer(req)):
        return _error("invalid_token", "Registration needs a valid initial access token.",
                      401)
    try:
        policy = Policy.from_settings(svc.settings)
        meta = validate_metadata(req.json, policy)
        check_sector(svc, meta)
        with svc.sessions.begin() as db:
            registry = ClientRegistry(db, svc.hasher, svc.sealer, policy)
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
    return JsonResult(201, doc, _NO_STORE)


def _managed_client(svc: Services, req: HttpRequest, client_id: str) -> Client | None:
    token = _bearer(req)
    with svc.sessions() as db:
        row = db.get(Client, client_id)
        if row is None or token is None or not svc.hasher.verify(token,
                                                                 row.registration_token_hash):
            return None
        db.expunge(row)
        return row


def manage(svc: Services, req: HttpRequest, client_id: str) -> JsonResult | BodyResult:
    """RFC 7592 §2: read (GET), update (PUT) or delete (DELETE) a registered client; an
    unknown client and a wrong token look the same (401)."""
    row = _managed_client(svc, req, client_id)
    if row is None:
        return _error("invalid_token", "Unknown client or wrong registration access token.",
                      401)
    if req.method == "GET":
        return JsonResult(200, _client_document(svc, row), _NO_STORE)
    if req.method == "DELETE":
        with svc.sessions.begin() as db:
            db.delete(db.get(Client, client_id))
        client_cache(svc).bump()
        return BodyResult(204)
    body = req.json
    if not isinstance(body, dict) or body.get("client_id") != client_id:
        return _error("invalid_client_metadata", "The body must repeat the client_id.")
    if "client_secret" in body and not svc.hasher.verify(str(body["client_secret"]),
                                                         row.secret_hash):
        return _error("invalid_client_metadata", "client_secret does not match.")
    policy = Policy.from_settings(svc.settings)
    try:
        meta = validate_metadata(body, policy)
        if meta["method"] != row.meta.get("token_endpoint_auth_method"):
            raise MetadataError("invalid_client_metadata",
                                "token_endpoint_auth_method cannot change.")
        check_sector(svc, meta)
        with svc.sessions.begin() as db:
            current = db.scalar(select(Client).where(Client.client_id == client_id))
            new_meta = dict(current.meta)
            new_meta.update(meta["extra"])
            new_meta.update(redirect_uris=meta["redirect_uris"],
                            grant_types=meta["grant_types"], scope=meta["scope"],
                            post_logout_redirect_uris=meta["post_logout_redirect_uris"])
            for key in ("backchannel_logout_uri", "jwks_uri"):
                if meta[key]:
                    new_meta[key] = meta[key]
                else:
                    new_meta.pop(key, None)
            # The whole resulting document passes the validator, as at registration.
            check_client_metadata(new_meta, policy)
            current.meta = new_meta
            current.name = meta["extra"].get("client_name", current.name)
            db.flush()
            doc = _client_document(svc, current)
    except MetadataError as exc:
        return _error(exc.error, exc.description)
    client_cache(svc).bump()
    return JsonResult(200, doc, _NO_STORE)
