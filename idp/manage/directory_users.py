"""Local users linked to the directory (LDAP): add one by its directory username (as its first
sign-in would provision it) and read one again from the directory. Used by the console
(``/admin/users/new`` "wrap an existing directory account", the user page's "refresh from
directory") and ``/api/v1/users/from-directory`` / ``/api/v1/users/{id}/directory-refresh``.

The directory is read between two short transactions (never while one is open), as
``idp.backends.ldap_sync`` writes in its own. Raises NotFound (no single account of that name),
DirectoryNotConfigured / NotADirectoryUser / Conflict (a clash with a local account, as
ValidationError from the provisioning), ``idp.backends.ldap.DirectoryUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Conflict
from ..services import Services
from . import users
from .context import Actor, transaction


class DirectoryNotConfigured(Conflict):
    """No directory (``[ldap] enabled``) is configured."""


class NotADirectoryUser(Conflict):
    """The user is a local one, not linked to a directory account."""


@dataclass(frozen=True)
class Added:
    uuid: str
    username: str
    change: str  # what the provisioning did: "created", "updated", "unchanged"...


def _configured(svc: Services) -> None:
    if not svc.settings.ldap.enabled:
        raise DirectoryNotConfigured("no directory (LDAP) is configured")


def add(svc: Services, actor: Actor, username: str) -> Added:
    """Create the local user of the directory account ``username`` now (or refresh it when it
    exists already); ``users:accounts:create``."""
    with transaction(svc, actor) as ctx:
        ctx.require("users:accounts:create")
        _configured(svc)
    from ..backends.ldap_sync import provision_by_username  # ldap3: only with a directory

    outcome = provision_by_username(svc, username)
    with transaction(svc, actor) as ctx:
        user = users.get(ctx, outcome["uuid"])
        ctx.audit("user.created", user.uuid, username=user.username, source="ldap")
        return Added(user.uuid, user.username, outcome["change"])


def refresh_user(svc: Services, actor: Actor, uuid: str) -> dict[str, Any]:
    """Read the directory user ``uuid`` again (attributes, groups; gone from the directory:
    inactive); ``users:accounts:update`` over them. The result of ``ldap_sync.refresh``."""
    with transaction(svc, actor) as ctx:
        target = users.get(ctx, uuid, "users:accounts:update")
        if target.source != "ldap":
            raise NotADirectoryUser(f"user {target.username!r} is not a directory user")
        _configured(svc)
        username = target.username
    from ..backends.ldap_sync import refresh  # ldap3: only with a directory

    result = refresh(svc, username)
    with transaction(svc, actor) as ctx:
        ctx.audit("user.ldap_refreshed", uuid, change=result["change"])
    return result
