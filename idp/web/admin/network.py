"""Admin console: the "Network access" page of a role, a group, an OIDC client and a SAML SP
(``/admin/roles/<id>/network``, ``/admin/groups/<id>/network``,
``/admin/clients/<client_id>/network``, ``/admin/saml/sp/<pid>/network``), each linked from
the scope's own screen: its allow / deny lists as two text areas, one entry per line, saved
through ``idp.manage.iprules`` (the same checks, permissions and audit rows as
``/api/v1/.../ip-rules`` and ``idp ip-rules``). A refused entry is shown beside its list with
its line number, and nothing is stored. The global rules are on the settings screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...manage import clients as manage_clients
from ...manage import groups as manage_groups
from ...manage import iprules
from ...manage import roles as manage_roles
from ...manage import service_providers as sps
from ...manage.context import Context
from ..api.saml_providers import entity_id_of
from ..requestinfo import client_ip
from .apps_common import mapped
from .blueprint import bp
from .guard import console

# A pasted list longer than this is not a network plan (200 entries fit many times over).
_MAX_TEXT = 20_000

WHERE = {
    "role": _l(
        "Checked when someone holding this role signs in, and each time their session signs "
        "them in to an application."
    ),
    "group": _l(
        "Checked for the members of this group and of its subgroups when they sign in, and each "
        "time their session signs them in to an application."
    ),
    "client": _l(
        "Checked when this application sends someone here to sign in (the browser's address) "
        "and when it calls the token endpoint (its server's address): allow both."
    ),
    "sp": _l("Checked each time someone signs in to this service provider."),
}
# The sidebar entry each page sits under.
_ACTIVE = {
    "role": "admin.roles",
    "group": "admin.groups",
    "client": "admin.clients",
    "sp": "admin.saml_providers",
}


@dataclass(frozen=True)
class Scope:
    """What the page is about: the manage layer's kind and key, and how to show and link it."""

    kind: str
    key: int | str
    name: str
    back: str
    crumbs: list[tuple[str, Any]]
    action: str
    permission: str


def _role(ctx: Context, role_id: int) -> Scope:
    role = manage_roles.get(ctx, role_id)
    back = url_for("admin.role", role_id=role.id)
    return Scope(
        "role",
        role.id,
        role.name,
        back,
        [(url_for("admin.roles"), _("Roles")), (back, role.name)],
        url_for("admin.role_network", role_id=role.id),
        "roles:roles",
    )


def _group(ctx: Context, group_id: int) -> Scope:
    group = manage_groups.get(ctx, group_id)
    back = url_for("admin.group", group_id=group.id)
    return Scope(
        "group",
        group.id,
        group.path,
        back,
        [(url_for("admin.groups"), _("Groups")), (back, group.name)],
        url_for("admin.group_network", group_id=group.id),
        "groups:groups",
    )


def _client(ctx: Context, client_id: str) -> Scope:
    client = manage_clients.get(ctx, client_id)
    name = client.name or client.client_id
    back = url_for("admin.client", client_id=client.client_id)
    return Scope(
        "client",
        client.client_id,
        name,
        back,
        [(url_for("admin.clients"), _("OIDC clients")), (back, name)],
        url_for("admin.client_network", client_id=client.client_id),
        "clients:clients",
    )


def _sp(ctx: Context, pid: str) -> Scope:
    row = sps.get(ctx, entity_id_of(pid))
    name = (row.settings or {}).get("display_name") or row.name or row.entity_id
    back = url_for("admin.saml_provider", pid=pid)
    return Scope(
        "sp",
        row.entity_id,
        name,
        back,
        [(url_for("admin.saml_providers"), _("SAML service providers")), (back, name)],
        url_for("admin.saml_network", pid=pid),
        "saml:providers",
    )


def _message(exc: iprules.InvalidRules) -> str:
    if exc.index is None:
        return _("At most %(n)s entries.", n=iprules.MAX_ENTRIES)
    if exc.suggestion:
        return _(
            "Line %(line)s: %(entry)s has bits set after the prefix; did you mean %(net)s?",
            line=exc.index + 1,
            entry=exc.entry,
            net=exc.suggestion,
        )
    return _(
        "Line %(line)s: %(entry)s is not an IP address or CIDR network.",
        line=exc.index + 1,
        entry=exc.entry,
    )


def _page(find, key) -> Any:
    errors: dict[str, str] = {}
    submitted: dict[str, str] | None = None
    if request.method == "POST":
        submitted = {name: (request.form.get(name) or "")[:_MAX_TEXT] for name in ("allow", "deny")}
        try:
            with console() as ctx:
                scope = find(ctx, key)
                before = iprules.get(ctx, scope.kind, scope.key)
                saved = iprules.set_rules(
                    ctx,
                    scope.kind,
                    scope.key,
                    submitted["allow"].splitlines(),
                    submitted["deny"].splitlines(),
                )
        except iprules.InvalidRules as exc:
            errors[exc.field] = _message(exc)
        else:
            if saved == before:
                flash(_("Nothing changed."), "info")
            else:
                flash(
                    _(
                        "Network access saved: %(allow)s allowed and %(deny)s refused networks; "
                        "it applies from the next sign-in.",
                        allow=len(saved.allow),
                        deny=len(saved.deny),
                    ),
                    "success",
                )
            return redirect(scope.action)
    with console() as ctx:
        scope = find(ctx, key)
        current = iprules.get(ctx, scope.kind, scope.key)
        may_update = ctx.allowed(scope.permission + ":update")
    values = submitted or {"allow": "\n".join(current.allow), "deny": "\n".join(current.deny)}
    return render_template(
        "admin/network.html",
        active=_ACTIVE[scope.kind],
        scope=scope,
        where=WHERE[scope.kind],
        current=current,
        values=values,
        errors=errors,
        may_update=may_update,
        address=client_ip(),
    ), (400 if errors else 200)


@bp.route("/roles/<int:role_id>/network", methods=["GET", "POST"])
@mapped
def role_network(role_id: int):
    return _page(_role, role_id)


@bp.route("/groups/<int:group_id>/network", methods=["GET", "POST"])
@mapped
def group_network(group_id: int):
    return _page(_group, group_id)


@bp.route("/clients/<client_id>/network", methods=["GET", "POST"])
@mapped
def client_network(client_id: str):
    return _page(_client, client_id)


@bp.route("/saml/sp/<pid>/network", methods=["GET", "POST"])
@mapped
def saml_network(pid: str):
    return _page(_sp, pid)
