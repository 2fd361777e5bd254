"""The ``idp`` command line (console script ``idp = "idp.cli:main"``). Every command exits 0
on success; on failure it prints one line to stderr and exits 2 (bad usage or settings) or 1
(anything else). ``--json`` prints exactly one JSON object on stdout.

One module per command group (``init``, ``serve``, ``db``, ``keys``, ``users`` with ``mfa``
and ``users_bulk`` (import, export), ``groups``, ``roles``, ``org``, ``claims``, ``clients``,
``saml``, ``ldap``, ``audit``, ``gdpr`` with ``users erase``); ``base`` holds
what they share and imports none of them; ``root`` assembles the ``idp`` group. Commands parse
their options, call ``idp.manage`` (or the service they drive) and print the result.
"""

from __future__ import annotations

from .base import CliFailure
from .root import cli, main
from .serve import _check_port, default_workers, server_threads

__all__ = ["CliFailure", "_check_port", "cli", "default_workers", "main", "server_threads"]
