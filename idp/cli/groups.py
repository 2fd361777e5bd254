"""``idp groups``: create and move groups, members and group roles."""

from __future__ import annotations

import click

from ..manage import groups as manage_groups
from .base import as_operator, emit, iso, out, parse_expiry, ready


@click.group()
def groups() -> None:
    """Groups."""


@groups.command("create")
@click.argument("name")
@click.option("--parent", default=None, help="Path of the parent group, e.g. staff/it.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
def groups_create(name, parent, description, as_json) -> None:
    with as_operator(ready()) as ctx:
        group = manage_groups.create(ctx, name, parent, description)
        result = {"id": group.id, "name": group.name, "path": group.path}
    out(as_json, result, f"created group {result['path']}")


@groups.command("add-member")
@click.argument("group")
@click.argument("username")
@click.option("--expires", default=None, help="30d, 12h... or an ISO time: a temporary membership.")
@click.option("--json", "as_json", is_flag=True)
def groups_add_member(group, username, expires, as_json):
    """Add a user to a group (by path, e.g. staff/it)."""
    svc = ready()
    with as_operator(svc) as ctx:
        d = ctx.directory
        g = d.group_by_path(group)
        row = manage_groups.add_member(
            ctx,
            g,
            d.user_by_username(username),
            expires_at=parse_expiry(expires, svc.clock.utcnow()),
        )
        result = {"group": g.path, "username": username, "expires_at": iso(row.expires_at)}
    emit(as_json, result, f"{username} is now a member of {result['group']}")


@groups.command("remove-member")
@click.argument("group")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def groups_remove_member(group, username, as_json):
    with as_operator(ready()) as ctx:
        d = ctx.directory
        removed = manage_groups.remove_member(
            ctx, d.group_by_path(group), d.user_by_username(username)
        )
    emit(as_json, {"removed": removed}, "removed" if removed else "was not a member")


@groups.command("add-role")
@click.argument("group")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def groups_add_role(group, role, client_id, as_json):
    """Give every member of a group (and of its subgroups) a role."""
    with as_operator(ready()) as ctx:
        d = ctx.directory
        g = d.group_by_path(group)
        manage_groups.assign_role(ctx, g, d.role_by_name(role, client_id))
        result = {"group": g.path, "role": role, "client_id": client_id}
    emit(as_json, result, f"group {result['group']} now has role {role}")


@groups.command("move")
@click.argument("group")
@click.option("--parent", default=None, help="The new parent's path; omit for top level.")
@click.option("--json", "as_json", is_flag=True)
def groups_move(group, parent, as_json):
    """Move a group (with its subgroups) under another group."""
    with as_operator(ready()) as ctx:
        d = ctx.directory
        g = manage_groups.move(
            ctx, d.group_by_path(group), d.group_by_path(parent) if parent else None
        )
        result = {"id": g.id, "path": g.path}
    emit(as_json, result, f"group is now {result['path']}")
