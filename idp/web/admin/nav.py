"""The console's sidebar: (section, endpoint, label, permission the entry needs). An entry
shows when its endpoint exists and the administrator holds its permission (a delegated admin
with users:accounts:read sees Users only). Section headings show when an entry under them does."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

NAV: list[tuple[str, str, object, str | None]] = [
    ("overview", "admin.dashboard", _l("Dashboard"), None),
    ("directory", "admin.users", _l("Users"), "users:accounts:read"),
    ("directory", "admin.users_import", _l("Import users"), "users:accounts:create"),
    ("directory", "admin.groups", _l("Groups"), "groups:groups:read"),
    ("directory", "admin.org", _l("Organisation"), "org:companies:read"),
    ("access", "admin.roles", _l("Roles"), "roles:roles:read"),
    ("access", "admin.permission_groups", _l("Permission groups"), "roles:permission_groups:read"),
    ("access", "admin.access", _l("Requests and grants"), "users:roles:read"),
    ("access", "admin.deletion_requests", _l("Deletion requests"), "users:accounts:delete"),
    ("applications", "admin.clients", _l("OIDC clients"), "clients:clients:read"),
    ("applications", "admin.saml_providers", _l("SAML providers"), "saml:providers:read"),
    ("applications", "admin.provisioning", _l("Provisioning"), "provisioning:targets:read"),
    ("system", "admin.settings", _l("Settings"), "config:policies:read"),
    ("system", "admin.audit", _l("Audit log"), "audit:log:read"),
    ("system", "admin.reports_index", _l("Compliance reports"), "reports:compliance:read"),
]

SECTIONS = {
    "overview": _l("Overview"),
    "directory": _l("Directory"),
    "access": _l("Access"),
    "applications": _l("Applications"),
    "system": _l("System"),
}
