"""CLI for the identity model: role and group assignments, composites, permissions, the
organization, claim rules, and "why does this user have that permission".

Registered onto the ``users``, ``groups`` and ``roles`` groups of ``idp.cli`` by ``register``;
``org`` and ``claims`` are new top-level groups. Every command takes ``--json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from .errors import ValidationError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str | None, now: datetime) -> datetime | None:
    """``30d`` / ``12h`` / ``90m`` from now, or an ISO 8601 time (UTC when no offset)."""
    if not value:
        return None
    m = _DURATION.match(value.strip())
    if m:
        return now + timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"--expires must be a duration like 30d / 12h or an ISO time, not {value!r}"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _ctx():
    from .cli import _require_migrated, _services

    svc = _services()
    _require_migrated(svc)
    return svc


def _emit(as_json: bool, obj: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(obj, default=str) if as_json else text)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- users -------------------------------------------------------------------------------------


@click.command("add-role")
@click.argument("username")
@click.argument("role")
@click.option("--client-id", default=None, help="The role is this client's role.")
@click.option("--expires", default=None, help="30d, 12h... or an ISO time: a temporary grant.")
@click.option("--scope-company", default=None, help="Only over users of this company (slug).")
@click.option(
    "--scope-department",
    default=None,
    help="Only over users of this department subtree (id or company/Dept/Sub).",
)
@click.option("--json", "as_json", is_flag=True)
def users_add_role(username, role, client_id, expires, scope_company, scope_department, as_json):
    """Give a user a role (optionally temporary, optionally scoped for delegation)."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        user = d.user_by_username(username)
        r = d.role_by_name(role, client_id)
        row = d.assign_role(
            user,
            r,
            scope_company=d.company(scope_company) if scope_company else None,
            scope_department=d.department(scope_department) if scope_department else None,
            expires_at=parse_expiry(expires, svc.clock.utcnow()),
        )
        out = {
            "username": user.username,
            "role": r.name,
            "client_id": r.client_id,
            "scope_company_id": row.scope_company_id,
            "scope_department_id": row.scope_department_id,
            "expires_at": _iso(row.expires_at),
        }
    _emit(as_json, out, f"{username} now has role {role}")


@click.command("remove-role")
@click.argument("username")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def users_remove_role(username, role, client_id, as_json):
    """Take a role away from a user (every scope)."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        removed = d.unassign_role(d.user_by_username(username), d.role_by_name(role, client_id))
    _emit(as_json, {"removed": removed}, f"removed {removed} assignment(s)")


@click.command("explain")
@click.argument("username")
@click.argument("permission")
@click.option("--json", "as_json", is_flag=True)
def users_explain(username, permission, as_json):
    """Why does the user have PERMISSION? One line per path that grants it."""
    from .storage.claims import explain
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions() as db:
        user = Directory(db, svc.clock).user_by_username(username)
        paths = explain(db, user.id, permission, clock=svc.clock)
    text = "\n".join(paths) if paths else f"{username} does not have {permission}"
    _emit(
        as_json,
        {"username": username, "permission": permission, "granted": bool(paths), "paths": paths},
        text,
    )


@click.command("permissions")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_permissions(username, as_json):
    """The user's effective permissions: global, and per delegated scope."""
    from .storage.directory import Directory
    from .storage.rbac import grants_for

    svc = _ctx()
    with svc.sessions() as db:
        user = Directory(db, svc.clock).user_by_username(username)
        grants = grants_for(db, svc.store, user.id, clock=svc.clock)
    scoped = [{"permission": p, "scope": k, "scope_id": s} for p, k, s in sorted(grants.scoped)]
    text = "\n".join(
        sorted(grants.everywhere)
        + [f"{x['permission']} (in {x['scope']} #{x['scope_id']})" for x in scoped]
    )
    _emit(
        as_json,
        {"username": username, "permissions": sorted(grants.everywhere), "scoped": scoped},
        text or f"{username} has no permissions",
    )


@click.command("claims")
@click.argument("username")
@click.option("--client-id", default=None, help="OIDC: the requesting client.")
@click.option("--scope", "scope", default="openid profile email groups roles", show_default=True)
@click.option("--sp", "sp_entity_id", default=None, help="SAML: show attributes for this SP.")
@click.option("--json", "as_json", is_flag=True)
def users_claims(username, client_id, scope, sp_entity_id, as_json):
    """Preview the OIDC claims (or SAML attributes) the mapper releases for a user."""
    from .storage.claims import oidc_claims, saml_attributes
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions() as db:
        user = Directory(db, svc.clock).user_by_username(username)
        if sp_entity_id:
            attrs = saml_attributes(db, user.id, sp_entity_id=sp_entity_id, clock=svc.clock)
            out = {"attributes": [a.__dict__ for a in attrs]}
        else:
            out = {
                "claims": oidc_claims(
                    db, user.id, client_id=client_id, scopes=scope.split(), clock=svc.clock
                )
            }
    _emit(as_json, out, json.dumps(out, indent=2, default=str))


# --- groups ------------------------------------------------------------------------------------


@click.command("add-member")
@click.argument("group")
@click.argument("username")
@click.option("--expires", default=None, help="30d, 12h... or an ISO time: a temporary membership.")
@click.option("--json", "as_json", is_flag=True)
def groups_add_member(group, username, expires, as_json):
    """Add a user to a group (by path, e.g. staff/it)."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        g = d.group_by_path(group)
        row = d.add_member(
            g, d.user_by_username(username), expires_at=parse_expiry(expires, svc.clock.utcnow())
        )
        out = {"group": g.path, "username": username, "expires_at": _iso(row.expires_at)}
    _emit(as_json, out, f"{username} is now a member of {out['group']}")


@click.command("remove-member")
@click.argument("group")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def groups_remove_member(group, username, as_json):
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        removed = d.remove_member(d.group_by_path(group), d.user_by_username(username))
    _emit(as_json, {"removed": removed}, "removed" if removed else "was not a member")


@click.command("add-role")
@click.argument("group")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def groups_add_role(group, role, client_id, as_json):
    """Give every member of a group (and of its subgroups) a role."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        g = d.group_by_path(group)
        d.assign_group_role(g, d.role_by_name(role, client_id))
        out = {"group": g.path, "role": role, "client_id": client_id}
    _emit(as_json, out, f"group {out['group']} now has role {role}")


@click.command("move")
@click.argument("group")
@click.option("--parent", default=None, help="The new parent's path; omit for top level.")
@click.option("--json", "as_json", is_flag=True)
def groups_move(group, parent, as_json):
    """Move a group (with its subgroups) under another group."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        g = d.move_group(d.group_by_path(group), d.group_by_path(parent) if parent else None)
        out = {"id": g.id, "path": g.path}
    _emit(as_json, out, f"group is now {out['path']}")


# --- roles -------------------------------------------------------------------------------------


@click.command("add-permission")
@click.argument("role")
@click.argument("permissions", nargs=-1, required=True)
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_add_permission(role, permissions, client_id, as_json):
    """Add permissions (module:feature:action, '*' allowed) to a role."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        r = d.role_by_name(role, client_id)
        for p in permissions:
            d.add_permission(r, p)
        out = {"role": r.name, "permissions": d.role_permissions(r)}
    _emit(as_json, out, "\n".join(out["permissions"]))


@click.command("remove-permission")
@click.argument("role")
@click.argument("permission")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_remove_permission(role, permission, client_id, as_json):
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        r = d.role_by_name(role, client_id)
        removed = d.remove_permission(r, permission)
        out = {"role": r.name, "removed": removed, "permissions": d.role_permissions(r)}
    _emit(as_json, out, "\n".join(out["permissions"]))


@click.command("add-composite")
@click.argument("role")
@click.argument("child")
@click.option("--json", "as_json", is_flag=True)
def roles_add_composite(role, child, as_json):
    """Make ROLE include CHILD (global name or client_id/name). Cycles are refused."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        parent_row, child_row = d.role_ref(role), d.role_ref(child)
        d.add_composite(parent_row, child_row)
        out = {"role": parent_row.name, "includes": child_row.name}
    _emit(as_json, out, f"{role} now includes {child}")


@click.command("delete")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--force", is_flag=True, help="Delete even while assigned (assignments go too).")
@click.option("--json", "as_json", is_flag=True)
def roles_delete(role, client_id, force, as_json):
    """Delete a role; refused while anything uses it, and the refusal says what."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        usage = d.delete_role(d.role_by_name(role, client_id), force=force)
    _emit(as_json, {"deleted": role, "was_used_by": usage.as_dict()}, f"deleted role {role}")


# --- organization ------------------------------------------------------------------------------


@click.group("org")
def org() -> None:
    """Companies, departments and positions."""


@org.command("company-create")
@click.argument("slug")
@click.argument("name")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_company_create(slug, name, names, as_json):
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        c = Directory(db, svc.clock).create_company(slug, name, _names(names))
        out = {"id": c.id, "slug": c.slug, "name": c.name, "names": c.names}
    _emit(as_json, out, f"created company {slug}")


@org.command("department-create")
@click.argument("company")
@click.argument("name")
@click.option("--parent", default=None, help="Parent department: id or company/Dept/Sub.")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_department_create(company, name, parent, names, as_json):
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        dept = d.create_department(
            d.company(company), name, d.department(parent) if parent else None, _names(names)
        )
        out = {"id": dept.id, "name": dept.name, "path": dept.path}
    _emit(as_json, out, f"created department {name} ({out['path']})")


@org.command("department-move")
@click.argument("department")
@click.option("--parent", default=None, help="New parent; omit to make it a top department.")
@click.option("--json", "as_json", is_flag=True)
def org_department_move(department, parent, as_json):
    """Move a department with its subtree; refused when it would create a cycle."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        dept = d.move_department(d.department(department), d.department(parent) if parent else None)
        out = {"id": dept.id, "path": dept.path}
    _emit(as_json, out, f"department is now at {out['path']}")


@org.command("position-create")
@click.argument("company")
@click.argument("name")
@click.option("--name-in", "names", multiple=True, help="Translation LANG=NAME; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def org_position_create(company, name, names, as_json):
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        p = d.create_position(d.company(company), name, _names(names))
        out = {"id": p.id, "name": p.name, "names": p.names}
    _emit(as_json, out, f"created position {name}")


@org.command("place")
@click.argument("username")
@click.option("--department", default=None)
@click.option("--company", default=None)
@click.option("--position", default=None)
@click.option("--manager", default=None, help="The manager's username.")
@click.option("--json", "as_json", is_flag=True)
def org_place(username, department, company, position, manager, as_json):
    """Put a user into a company / department / position, with a manager."""
    from .storage.directory import Directory

    svc = _ctx()
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        user = d.user_by_username(username)
        dept = d.department(department) if department else None
        comp = d.company(company) if company else None
        pos = None
        if position:
            pos_company = comp or (d.company(dept.company_id) if dept else None)
            if pos_company is None:
                raise ValidationError("--position needs --company or --department")
            pos = d.position(pos_company, position)
        d.place_user(
            user,
            company=comp,
            department=dept,
            position=pos,
            manager=d.user_by_username(manager) if manager else None,
        )
        out = {
            "username": user.username,
            "company_id": user.company_id,
            "department_id": user.department_id,
            "position_id": user.position_id,
            "manager_id": user.manager_id,
        }
    _emit(as_json, out, f"placed {username}")


def _names(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        lang, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--name-in takes LANG=NAME, not {item!r}")
        out[lang.strip()] = value.strip()
    return out


# --- claim rules -------------------------------------------------------------------------------


@click.group("claims")
def claims() -> None:
    """Claim mapping rules (see docs/claims.md)."""


@claims.command("list")
@click.option("--client-id", default=None)
@click.option("--sp", "sp_entity_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def claims_list(client_id, sp_entity_id, as_json):
    """The realm rules, or one client's / SP's own rules."""
    from .storage.claims import list_rules

    svc = _ctx()
    with svc.sessions() as db:
        rows = [
            {
                "id": r.id,
                "scope": r.scope,
                "enabled": r.enabled,
                "sort_order": r.sort_order,
                "rule": r.rule,
            }
            for r in list_rules(db, client_id=client_id, sp_entity_id=sp_entity_id)
        ]
    text = "\n".join(
        f"{r['id']:>4} {r['scope'] or '-':10} {'on ' if r['enabled'] else 'off'} "
        f"{json.dumps(r['rule'])}"
        for r in rows
    )
    _emit(as_json, {"rules": rows}, text)


@claims.command("add")
@click.argument("rule_json")
@click.option("--client-id", default=None)
@click.option("--sp", "sp_entity_id", default=None)
@click.option("--scope", default=None, help="The OIDC scope that releases it (omit: always).")
@click.option("--order", "sort_order", type=int, default=1000)
@click.option("--disabled", is_flag=True, help="Save disabled (suppresses a realm default).")
@click.option("--json", "as_json", is_flag=True)
def claims_add(rule_json, client_id, sp_entity_id, scope, sort_order, disabled, as_json):
    """Add a rule, e.g. '{"target":"department","source":{"type":"department_path"}}'."""
    from .storage.claims import save_rule

    try:
        rule = json.loads(rule_json)
    except ValueError as exc:
        raise ValidationError(f"the rule is not JSON: {exc}") from None
    svc = _ctx()
    with svc.sessions.begin() as db:
        row = save_rule(
            db,
            rule,
            client_id=client_id,
            sp_entity_id=sp_entity_id,
            scope=scope,
            sort_order=sort_order,
            enabled=not disabled,
        )
        out = {"id": row.id}
    _emit(as_json, out, f"added claim rule {out['id']}")


@claims.command("delete")
@click.argument("rule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def claims_delete(rule_id, as_json):
    from .storage.claims import delete_rule

    svc = _ctx()
    with svc.sessions.begin() as db:
        delete_rule(db, rule_id)
    _emit(as_json, {"deleted": rule_id}, f"deleted claim rule {rule_id}")


def register(cli: click.Group, users: click.Group, groups: click.Group, roles: click.Group) -> None:
    for cmd in (users_add_role, users_remove_role, users_explain, users_permissions, users_claims):
        users.add_command(cmd)
    for cmd in (groups_add_member, groups_remove_member, groups_add_role, groups_move):
        groups.add_command(cmd)
    for cmd in (roles_add_permission, roles_remove_permission, roles_add_composite, roles_delete):
        roles.add_command(cmd)
    cli.add_command(org)
    cli.add_command(claims)
