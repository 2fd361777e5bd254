"""``idp users``: create users, give and take roles, and say what a user holds. The second
factors (``idp users mfa``) are in ``idp.cli.mfa``."""

from __future__ import annotations

import json

import click

from ..manage import users as manage_users
from ..storage.directory import NewUser
from .base import (
    as_operator,
    drain,
    emit,
    iso,
    out,
    parse_date,
    parse_expiry,
    ready,
    with_logout,
)


@click.group()
def users() -> None:
    """Users."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", default=None, help="Omit to let the user set one by e-mail.")
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--group", "groups", multiple=True)
@click.option("--role", "roles", multiple=True)
@click.option("--start-date", default=None)
@click.option("--end-date", default=None)
@click.option("--require-mfa", is_flag=True)
@click.option("--must-change-password", is_flag=True)
@click.option(
    "--email-verified",
    is_flag=True,
    help="The address is known to be theirs: applications get email_verified true.",
)
@click.option("--json", "as_json", is_flag=True)
def users_create(
    username,
    email,
    password,
    given_name,
    family_name,
    groups,
    roles,
    start_date,
    end_date,
    require_mfa,
    must_change_password,
    email_verified,
    as_json,
) -> None:
    """Create a user."""
    new = NewUser(
        username=username,
        email=email,
        given_name=given_name,
        family_name=family_name,
        start_date=parse_date(start_date, "--start-date"),
        end_date=parse_date(end_date, "--end-date"),
        require_mfa=require_mfa,
        must_change_password=must_change_password,
    )
    svc = ready()
    with as_operator(svc) as ctx:
        user = manage_users.create(
            ctx,
            new,
            password=password,
            groups=list(groups),
            roles=list(roles),
            email_verified=email_verified,
        )
        result = {"id": user.uuid, "username": user.username}
    out(as_json, result, f"created user {result['username']} ({result['id']})")


@users.command("add-role")
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
    svc = ready()
    with as_operator(svc) as ctx:
        d = ctx.directory
        user = d.user_by_username(username)
        r = d.role_by_name(role, client_id)
        row = manage_users.assign_role(
            ctx,
            user,
            r,
            scope_company=d.company(scope_company) if scope_company else None,
            scope_department=d.department(scope_department) if scope_department else None,
            expires_at=parse_expiry(expires, svc.clock.utcnow()),
        )
        result = {
            "username": user.username,
            "role": r.name,
            "client_id": r.client_id,
            "scope_company_id": row.scope_company_id,
            "scope_department_id": row.scope_department_id,
            "expires_at": iso(row.expires_at),
        }
    emit(as_json, result, f"{username} now has role {role}")


@users.command("remove-role")
@click.argument("username")
@click.argument("role")
@click.option("--client-id", default=None)
@click.option("--json", "as_json", is_flag=True)
def users_remove_role(username, role, client_id, as_json):
    """Take a role away from a user (every scope)."""
    with as_operator(ready()) as ctx:
        d = ctx.directory
        removed = manage_users.remove_role(
            ctx, d.user_by_username(username), d.role_by_name(role, client_id)
        )
    emit(as_json, {"removed": removed}, f"removed {removed} assignment(s)")


def _ending_sessions(username: str, change) -> str:
    """Apply ``change(ctx, user)`` and wait until the relying parties of the sessions it ends
    were told (back-channel logout, SAML SOAP); the user's uuid."""
    svc = with_logout(ready())
    try:
        with as_operator(svc) as ctx:
            user = ctx.directory.user_by_username(username)
            change(ctx, user)
            uuid = user.uuid
    finally:
        drain(svc)
    return uuid


@users.command("lock")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_lock(username, as_json):
    """Lock USERNAME's account until `idp users unlock`; their sessions and refresh tokens
    end and the applications are told (docs/sessions.md)."""
    uuid = _ending_sessions(username, manage_users.lock)
    out(as_json, {"id": uuid, "status": "locked"}, f"locked {username}; sessions ended")


@users.command("unlock")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_unlock(username, as_json):
    """Lift an administrator's lock and the lockout after failed sign-ins."""
    with as_operator(ready()) as ctx:
        user = manage_users.unlock(ctx, ctx.directory.user_by_username(username))
        result = {"id": user.uuid, "status": user.status}
    out(as_json, result, f"unlocked {username}")


@users.command("deactivate")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_deactivate(username, as_json):
    """Deactivate USERNAME (no sign-in); their sessions and refresh tokens end and the
    applications are told."""
    uuid = _ending_sessions(
        username, lambda ctx, user: manage_users.update(ctx, user, {"active": False})
    )
    out(as_json, {"id": uuid, "status": "inactive"}, f"deactivated {username}; sessions ended")


@users.command("set-password")
@click.argument("username")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when omitted (an argument is visible to other local users).",
)
@click.option("--temporary", is_flag=True, help="They must change it at the next sign-in.")
@click.option("--json", "as_json", is_flag=True)
def users_set_password(username, password, temporary, as_json):
    """Set USERNAME's password (the password policy applies); their sessions and refresh
    tokens end and the applications are told."""
    uuid = _ending_sessions(
        username,
        lambda ctx, user: manage_users.set_password(ctx, user, password, temporary=temporary),
    )
    text = f"password of {username} set; sessions ended"
    out(as_json, {"id": uuid, "temporary": temporary}, text)


@users.command("explain")
@click.argument("username")
@click.argument("permission")
@click.option("--json", "as_json", is_flag=True)
def users_explain(username, permission, as_json):
    """Why does the user have PERMISSION? One line per path that grants it."""
    with as_operator(ready()) as ctx:
        user = ctx.directory.user_by_username(username)
        paths = manage_users.explain(ctx, user, permission)
    text = "\n".join(paths) if paths else f"{username} does not have {permission}"
    emit(
        as_json,
        {"username": username, "permission": permission, "granted": bool(paths), "paths": paths},
        text,
    )


@users.command("permissions")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def users_permissions(username, as_json):
    """The user's effective permissions: global, and per delegated scope."""
    with as_operator(ready()) as ctx:
        grants = manage_users.permissions(ctx, ctx.directory.user_by_username(username))
    scoped = [{"permission": p, "scope": k, "scope_id": s} for p, k, s in sorted(grants.scoped)]
    text = "\n".join(
        sorted(grants.everywhere)
        + [f"{x['permission']} (in {x['scope']} #{x['scope_id']})" for x in scoped]
    )
    emit(
        as_json,
        {"username": username, "permissions": sorted(grants.everywhere), "scoped": scoped},
        text or f"{username} has no permissions",
    )


@users.command("claims")
@click.argument("username")
@click.option("--client-id", default=None, help="OIDC: the requesting client.")
@click.option("--scope", "scope", default="openid profile email groups roles", show_default=True)
@click.option("--sp", "sp_entity_id", default=None, help="SAML: show attributes for this SP.")
@click.option("--json", "as_json", is_flag=True)
def users_claims(username, client_id, scope, sp_entity_id, as_json):
    """Preview the OIDC claims (or SAML attributes) the mapper releases for a user."""
    with as_operator(ready()) as ctx:
        result = manage_users.claims(
            ctx,
            ctx.directory.user_by_username(username),
            client_id=client_id,
            scopes=scope.split(),
            sp_entity_id=sp_entity_id,
        )
    emit(as_json, result, json.dumps(result, indent=2, default=str))
