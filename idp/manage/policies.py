"""Policy settings applied with configuration as code (``idp config apply``): the keys of
[password_policy], [lockout], [session] and [mfa] named in ``idp.settings.APPLIED_SECTIONS``,
kept in the database and laid over the TOML file when a node starts (the environment wins).

Permissions: ``config:policies:read`` / ``config:policies:update``. A stored value is what
``idp config apply`` validated with the settings' own rules; nodes use it from their next start.
"""

from __future__ import annotations

from typing import Any

from ..storage import applied_settings
from .context import Context


def stored(ctx: Context) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} of the stored policy settings."""
    ctx.require("config:policies:read")
    return applied_settings.rows(ctx.db)


def store(ctx: Context, section: str, key: str, value: Any) -> None:
    ctx.require("config:policies:update")
    applied_settings.put(ctx.db, section, key, value, ctx.svc.clock.utcnow())
    ctx.audit("config.policy_set", f"{section}.{key}", value=value)


def clear(ctx: Context, section: str, key: str) -> bool:
    """Drop a stored value: the TOML file's (or the default) applies again."""
    ctx.require("config:policies:update")
    dropped = applied_settings.drop(ctx.db, section, key)
    ctx.audit("config.policy_cleared", f"{section}.{key}")
    return dropped
