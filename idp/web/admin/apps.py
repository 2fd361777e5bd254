"""Admin console: applications. OIDC clients (``apps_clients``), SAML service providers and
federation aggregates (``apps_saml``); what they share is in ``apps_common``."""

from __future__ import annotations

from . import apps_clients, apps_saml

__all__ = ["apps_clients", "apps_saml"]
