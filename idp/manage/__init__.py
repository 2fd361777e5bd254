"""Management operations: users, groups, roles, the organization, clients, SAML service
providers, claim rules and SSO sessions, each with its permission check and audit row.

One layer for every surface that administers the IdP (the ``idp`` command line, the REST API,
SCIM, the admin console): the surface parses its input, opens a :func:`transaction` for an
:class:`Actor`, calls an operation, and renders the result. An operation refuses with
:class:`~idp.errors.Forbidden` before changing anything, and records what it changed in
``audit_events`` in the same transaction. No web framework here (an import-linter contract).

    with transaction(svc, Actor.operator()) as ctx:
        user = users.create(ctx, NewUser("ann", "ann@example.org"), roles=["Helpdesk"])
"""

from __future__ import annotations

from ..errors import Forbidden
from .context import Actor, Context, transaction

__all__ = ["Actor", "Context", "Forbidden", "transaction"]
