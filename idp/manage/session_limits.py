"""Concurrent-session limits stored on roles and groups (docs/sessions.md): read with the
role's or group's read permission, set with its update permission, audited."""

from __future__ import annotations

from ..errors import ValidationError
from ..storage import session_limits
from ..storage.models import Group, Role
from .context import Context

MAX = 10000


def _checked(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX):
        raise ValidationError(f"max_sessions: a whole number from 1 to {MAX}, or null")
    return value


def of_role(ctx: Context, role: Role) -> int | None:
    ctx.require("roles:roles:read")
    return session_limits.limit_of(ctx.db, role_id=role.id)


def set_for_role(ctx: Context, role: Role, value: int | None) -> None:
    """Store (None: remove) the most sessions each holder of the role may have at once."""
    ctx.require("roles:roles:update")
    before = session_limits.limit_of(ctx.db, role_id=role.id)
    session_limits.set_limit(ctx.db, _checked(value), role_id=role.id)
    ctx.audit("role.session_limit", role.name, before=before, after=value)


def of_group(ctx: Context, group: Group) -> int | None:
    ctx.require("groups:groups:read")
    return session_limits.limit_of(ctx.db, group_id=group.id)


def set_for_group(ctx: Context, group: Group, value: int | None) -> None:
    """Store (None: remove) the most sessions each member of the group may have at once."""
    ctx.require("groups:groups:update")
    before = session_limits.limit_of(ctx.db, group_id=group.id)
    session_limits.set_limit(ctx.db, _checked(value), group_id=group.id)
    ctx.audit("group.session_limit", group.path, before=before, after=value)
