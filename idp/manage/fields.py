"""Custom user fields: the schema of ``User.custom`` (``idp.storage.directory.define_field``).

Permission: ``users:fields:create``. Audit: ``custom_field.defined``.
"""

from __future__ import annotations

from sqlalchemy import select

from ..storage.models import CustomField
from .context import Context


def define(
    ctx: Context, name: str, label: str, *, type: str = "string", visible_to_user: bool = True
) -> CustomField:
    """A new custom field (Conflict when one of that name exists)."""
    ctx.require("users:fields:create")
    row = ctx.directory.define_field(name, label, type=type, visible_to_user=visible_to_user)
    ctx.audit("custom_field.defined", name, label=label, type=type)
    return row


def ensure(ctx: Context, name: str, label: str, *, type: str = "string") -> CustomField:
    """The custom field ``name``, defined first when it does not exist yet."""
    row = ctx.db.scalar(select(CustomField).where(CustomField.name == name))
    return row if row is not None else define(ctx, name, label, type=type)
