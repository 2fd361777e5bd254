"""Configuration as code: ``idp config export`` / ``idp config apply`` (docs/configuration.md).

One YAML file describes OIDC clients (with their own roles and claim rules), SAML service
providers, roles, groups, permission groups, the realm's claim rules and the policy settings
([password_policy], [lockout], [mfa], [session]). ``export`` builds it as a plain dict from what
is configured; ``apply`` diffs a file against that and makes the changes through the management
operations in the caller's transaction (so an error anywhere leaves nothing written).

    with transaction(svc, actor) as ctx:
        doc = parse(load_yaml(text))
        plan = apply(ctx, doc, environ=os.environ, prune=False)
"""

from __future__ import annotations

from .apply import apply
from .export import export, header, secret_variable
from .plan import Change, Plan
from .schema import Document, dump_yaml, load_yaml, parse

__all__ = [
    "Change",
    "Document",
    "Plan",
    "apply",
    "dump_yaml",
    "export",
    "header",
    "load_yaml",
    "parse",
    "secret_variable",
]
