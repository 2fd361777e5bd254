"""The admin console at ``/admin/``: server-rendered management screens over ``idp.manage``
(the same operations as the REST API and the CLI). Every request passes the guard in
``guard.py`` (IP allowlist, a signed-in user, the console permission, MFA by policy); every
screen then asks ``idp.manage`` under the signed-in administrator's :class:`Actor`, so the
permission checks, delegation scopes and audit rows are those of the API.

One Blueprint, ``admin``; each area is a module that adds its routes to it."""

from __future__ import annotations

from . import (  # the area modules add their routes to bp
    apps,
    audit,
    dashboard,
    directory,
    directory_access,
    directory_org,
    directory_roles,
    gdpr,
    guard,
    network,
    provisioning,
    reports,
    session_limit,
    settings,
    user_devices,
    users,
    users_bulk,
)
from .blueprint import bp

__all__ = [
    "apps",
    "audit",
    "bp",
    "dashboard",
    "directory",
    "directory_access",
    "directory_org",
    "directory_roles",
    "gdpr",
    "guard",
    "reports",
    "network",
    "provisioning",
    "session_limit",
    "settings",
    "user_devices",
    "users",
    "users_bulk",
]
