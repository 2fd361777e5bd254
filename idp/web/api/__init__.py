"""The admin REST API ``/api/v1`` (``docs/api.md``): one module per area, each declaring its
operations with :func:`framework.operation`; ``openapi.py`` publishes them."""

from __future__ import annotations

# Each module registers its operations on bp.
from . import (  # noqa: F401
    access,
    audit,
    claim_rules,
    clients,
    devices,
    directory_users,
    federations,
    fields,
    gdpr,
    groups,
    ip_rules,
    openapi,
    org,
    provisioning,
    reports,
    role_holders,
    roles,
    saml_fetch,
    saml_providers,
    session_limits,
    settings,
    stats,
    user_photo,
    users,
    users_batch,
    users_bulk,
)
from .framework import bp

__all__ = ["bp"]
