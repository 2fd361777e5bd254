"""``idp ip-rules show`` / ``set``: the allow / deny lists of a role, a group, an OIDC client, a
SAML SP, or (no scope option) the global ``[ip_rules]``, through ``idp.manage.iprules``. As
the local operator, who has no client address: global rules are not checked against one, so
this is also the way back in after rules that shut every administrator out."""

from __future__ import annotations

from typing import Any

import click

from ..manage import Context, iprules
from ..settings import environment_keys
from .base import CliFailure, as_operator, out, ready


def _scope_options(fn):
    for option in reversed(
        [
            click.option("--role", default=None, help="a role's name"),
            click.option(
                "--client-id", default=None, help="with --role: the client the role belongs to"
            ),
            click.option("--group", default=None, help="a group's path (parent/child)"),
            click.option("--client", default=None, help="an OIDC client's client_id"),
            click.option("--sp", default=None, metavar="ENTITYID", help="a SAML SP's entityID"),
            click.option("--json", "as_json", is_flag=True),
        ]
    ):
        fn = option(fn)
    return fn


def _scope(
    ctx: Context, role: str | None, client_id: str | None, group: str | None, client, sp
) -> tuple[str, int | str, str]:
    """(kind, the manage layer's key, the name to print) of the one scope named; ("global",
    "", "global") when none is."""
    given = [
        name
        for name, value in (
            ("--role", role),
            ("--group", group),
            ("--client", client),
            ("--sp", sp),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise CliFailure(f"name one scope, not {' and '.join(given)}", 2)
    if client_id is not None and role is None:
        raise CliFailure("--client-id goes with --role", 2)
    if role is not None:
        found = ctx.directory.role_by_name(role, client_id)
        return "role", found.id, found.name
    if group is not None:
        found_group = ctx.directory.group_by_path(group)
        return "group", found_group.id, found_group.path
    if client is not None:
        return "client", client, client
    if sp is not None:
        return "sp", sp, sp
    return "global", "", "global"


def _result(kind: str, name: str, rules: iprules.RuleLists) -> dict[str, Any]:
    return {"scope": kind, "name": name, **rules.as_dict()}


def _text(result: dict[str, Any]) -> str:
    allow = ", ".join(result["allow"]) or "(any)"
    deny = ", ".join(result["deny"]) or "(none)"
    return f"{result['scope']} {result['name']}\nallow: {allow}\ndeny:  {deny}"


@click.group("ip-rules")
def ip_rules() -> None:
    """Network rules: allow / deny CIDR lists."""


@ip_rules.command("show")
@_scope_options
def ip_rules_show(role, client_id, group, client, sp, as_json) -> None:
    """The rules of one scope (no option: the global rules)."""
    with as_operator(ready()) as ctx:
        kind, key, name = _scope(ctx, role, client_id, group, client, sp)
        rules = iprules.get_global(ctx) if kind == "global" else iprules.get(ctx, kind, key)
    result = _result(kind, name, rules)
    out(as_json, result, _text(result))


@ip_rules.command("set")
@_scope_options
@click.option(
    "--allow", "allow", multiple=True, metavar="CIDR", help="an allowed network; repeatable"
)
@click.option("--deny", "deny", multiple=True, metavar="CIDR", help="a refused network; repeatable")
@click.option("--clear", is_flag=True, help="remove every rule of the scope")
def ip_rules_set(role, client_id, group, client, sp, as_json, allow, deny, clear) -> None:
    """Replace the rules of one scope (no option: the global rules) with the --allow and
    --deny networks given."""
    if clear and (allow or deny):
        raise CliFailure("--clear takes no --allow or --deny", 2)
    if not (clear or allow or deny):
        raise CliFailure("give --allow / --deny networks, or --clear", 2)
    try:
        with as_operator(ready()) as ctx:
            kind, key, name = _scope(ctx, role, client_id, group, client, sp)
            if kind == "global":
                rules = iprules.set_global(ctx, allow, deny, frozenset(environment_keys()))
            else:
                rules = iprules.set_rules(ctx, kind, key, allow, deny)
    except iprules.InvalidRules as exc:
        raise CliFailure(str(exc), 2) from None
    result = _result(kind, name, rules)
    out(as_json, result, _text(result))
