"""Custom-field definitions: the admin-defined schema of user attributes (``docs/identity.md``,
"Custom fields"); the values live on each user and are set through ``users``.

Permissions: ``users:fields:read`` / ``create`` / ``update`` / ``delete`` (the User Manager
template holds them through ``users:*:*``; Auditor and Read-only may read). A field's name
and type never change: users' values are stored under the name, coerced to the type.
Deleting a field that users hold values for is refused unless forced, which removes the
values too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..errors import NotFound
from ..storage.models import CustomField
from .context import Context
from .org import ID_MAX

UPDATABLE = (
    "label",
    "labels",
    "required",
    "pattern",
    "choices",
    "visible_to_user",
    "editable_by_user",
    "sort_order",
)


def find(ctx: Context, ref: str | int) -> CustomField:
    """A field by id or name, or NotFound (no permission check: callers check theirs)."""
    text = str(ref)
    if text.isascii() and text.isdigit():
        row = ctx.db.get(CustomField, int(text)) if 0 < int(text) <= ID_MAX else None
    elif "\x00" in text:
        row = None
    else:
        row = ctx.db.scalar(select(CustomField).where(CustomField.name == text))
    if row is None:
        raise NotFound(f"no custom field {text!r}")
    return row


def get(ctx: Context, ref: str | int) -> CustomField:
    ctx.require("users:fields:read")
    return find(ctx, ref)


def list_all(ctx: Context) -> list[CustomField]:
    """Every definition, in display order."""
    ctx.require("users:fields:read")
    return ctx.directory.fields()


def create(
    ctx: Context,
    name: str,
    label: str,
    *,
    type: str = "string",
    required: bool = False,
    pattern: str | None = None,
    choices: list[str] | None = None,
    visible_to_user: bool = True,
    editable_by_user: bool = False,
    labels: dict[str, str] | None = None,
    sort_order: int = 0,
) -> CustomField:
    ctx.require("users:fields:create")
    f = ctx.directory.define_field(
        name,
        label,
        type=type,
        required=required,
        pattern=pattern,
        choices=choices,
        visible_to_user=visible_to_user,
        editable_by_user=editable_by_user,
        labels=labels,
    )
    if sort_order:
        f.sort_order = sort_order
        ctx.db.flush()
    ctx.audit("field.created", f.name, field_id=f.id, type=f.type, required=f.required)
    return f


def ensure(ctx: Context, name: str, label: str, *, type: str = "string") -> CustomField:
    """The custom field ``name``, defined first when it does not exist yet (SCIM's
    enterprise ``employeeNumber`` lives in one)."""
    row = ctx.db.scalar(select(CustomField).where(CustomField.name == name))
    return row if row is not None else create(ctx, name, label, type=type)


def update(ctx: Context, f: CustomField, changes: dict[str, Any]) -> CustomField:
    """Change what ``changes`` names (a subset of ``UPDATABLE``)."""
    ctx.require("users:fields:update")
    before = {k: _plain(getattr(f, k)) for k in changes}
    ctx.directory.update_field(f, changes)
    diff = {k: [before[k], _plain(getattr(f, k))] for k in changes if before[k] != getattr(f, k)}
    if diff:
        ctx.audit("field.updated", f.name, field_id=f.id, changes=diff)
    return f


def delete(ctx: Context, f: CustomField, *, force: bool = False) -> int:
    """Delete a definition; refused while users hold values unless ``force`` (then the
    values are removed; how many users had one is returned and recorded)."""
    ctx.require("users:fields:delete")
    name, field_id = f.name, f.id
    removed = ctx.directory.delete_field(f, force=force)
    ctx.audit("field.deleted", name, field_id=field_id, values_removed=removed)
    return removed


def _plain(value: Any) -> Any:
    """A copy of a JSON value, so the record shows it as it was before the change."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
