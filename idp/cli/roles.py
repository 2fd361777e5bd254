"""``idp roles``: create and delete roles, their permissions and composites."""

from __future__ import annotations

import click

from ..manage import roles as manage_roles
from .base import as_operator, emit, out, ready


@click.group()
def roles() -> None:
    """Roles."""


@roles.command("create")
@click.argument("name")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    help="module:feature:action, '*' allowed; repeatable.",
)
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_create(name, permissions, description, as_json) -> None:
    with as_operator(ready()) as ctx:
        role = manage_roles.create(ctx, name, list(permissions), description=description)
        result = {"id": role.id, "name": role.name, "permissions": sorted(permissions)}
    out(as_json, result, f"created role {result['name']}")


@roles.command("add-permission")
@click.argument("role")
@click.argument("permissions", nargs=-1, required=True)
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_add_permission(role, permissions, client_id, as_json):
    """Add permissions (module:feature:action, '*' allowed) to a role."""
    with as_operator(ready()) as ctx:
        r = ctx.directory.role_by_name(role, client_id)
        now = manage_roles.add_permissions(ctx, r, list(permissions))
        result = {"role": r.name, "permissions": now}
    emit(as_json, result, "\n".join(result["permissions"]))


@roles.command("remove-permission")
@click.argument("role")
@click.argument("permission")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_remove_permission(role, permission, client_id, as_json):
    with as_operator(ready()) as ctx:
        r = ctx.directory.role_by_name(role, client_id)
        removed = manage_roles.remove_permission(ctx, r, permission)
        result = {
            "role": r.name,
            "removed": removed,
            "permissions": ctx.directory.role_permissions(r),
        }
    emit(as_json, result, "\n".join(result["permissions"]))


@roles.command("add-composite")
@click.argument("role")
@click.argument("child")
@click.option("--json", "as_json", is_flag=True)
def roles_add_composite(role, child, as_json):
    """Make ROLE include CHILD (global name or client_id/name). Cycles are refused."""
    with as_operator(ready()) as ctx:
        parent_row, child_row = ctx.directory.role_ref(role), ctx.directory.role_ref(child)
        manage_roles.add_composite(ctx, parent_row, child_row)
        result = {"role": parent_row.name, "includes": child_row.name}
    emit(as_json, result, f"{role} now includes {child}")


@roles.command("delete")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--force", is_flag=True, help="Delete even while assigned (assignments go too).")
@click.option("--json", "as_json", is_flag=True)
def roles_delete(role, client_id, force, as_json):
    """Delete a role; refused while anything uses it, and the refusal says what."""
    with as_operator(ready()) as ctx:
        usage = manage_roles.delete(ctx, ctx.directory.role_by_name(role, client_id), force=force)
    emit(as_json, {"deleted": role, "was_used_by": usage.as_dict()}, f"deleted role {role}")
