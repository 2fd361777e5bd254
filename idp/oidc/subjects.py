"""Subject identifiers (OIDC Core §8): public, or pairwise per sector (§8.1).

A ``public`` client sees the user's stable uuid as ``sub``. A ``pairwise`` client sees
``base64url(SHA-256(sector || local id || salt))``: clients of one sector (the host of their
``sector_identifier_uri``, or the one host of their redirect URIs) see one value for a user,
clients of different sectors cannot join their users by ``sub``. The salt is derived (HKDF)
from the instance secret key (``IDP_SECRET_KEY`` or the generated ``instance/secret_key``):
every node of a deployment computes the same subjects, and the salt is never stored or logged
on its own. Changing the secret key changes every pairwise subject.

``check_sector_document`` is the one place that fetches a ``sector_identifier_uri``
(OIDC Registration §5), through the outbound guard; every service that writes client metadata
calls it (the metadata validator itself stays pure).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from ..core.client_metadata import MetadataError, sector_of
from ..crypto import derive_key
from ..services import Services
from .fetch import OutboundError, outbound


class SectorDocumentError(MetadataError):
    """The sector document refuses the client (cannot be fetched, does not list a redirect
    URI): the state of a resource outside the request (the admin API answers 409)."""


def is_pairwise(client: Any) -> bool:
    return client is not None and client.setting("subject_type", "public") == "pairwise"


def subject(svc: Services, client: Any, user_uuid: str) -> str:
    """The ``sub`` that ``client`` sees for the user ``user_uuid``."""
    if not is_pairwise(client):
        return user_uuid
    # The validator refuses a pairwise client without a sector; a row that lost it still gets
    # a pairwise value of its own, never the public one.
    sector = sector_of(client.meta) or client.client_id
    salt = derive_key(svc.secret_key, "pairwise-subjects")
    digest = hashlib.sha256(sector.encode() + user_uuid.encode() + salt).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_sector_document(svc: Services, meta: Mapping[str, Any]) -> None:
    """OIDC Registration §5: the JSON array at ``sector_identifier_uri`` lists every redirect
    URI of the client. Raises SectorDocumentError (``invalid_client_metadata``) when it cannot be
    fetched (refused by the outbound policy, unreachable, not JSON) or lacks one."""
    uri = meta.get("sector_identifier_uri")
    if not uri:
        return
    try:
        listed = outbound(svc).get_json(uri)
    except OutboundError as exc:
        raise _refused(f"cannot be fetched: {exc.reason}") from None
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
        raise _refused("is not a JSON array of URIs")
    missing = [u for u in meta.get("redirect_uris") or [] if u not in listed]
    if missing:
        raise _refused(f"does not list the redirect URI {missing[0]!r}")


def _refused(why: str) -> SectorDocumentError:
    return SectorDocumentError("invalid_client_metadata",
                               f"sector_identifier_uri: the document {why}",
                               "sector_identifier_uri")


def sector_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether an update must fetch the sector document again: a new document or new redirect
    URIs (an unrelated change must not fail because the document's host is down)."""
    return bool(after.get("sector_identifier_uri")) and any(
        before.get(k) != after.get(k) for k in ("sector_identifier_uri", "redirect_uris"))
