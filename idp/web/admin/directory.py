"""Admin console: groups (``/admin/groups``). A group list in tree order (by path, indented by
depth, paginated in SQL, searchable), and a group's page: rename, move (a cycle is refused
beside the field), delete, members (add by username, optionally until a time; remove) and the
group's roles. Roles, permission groups, access and the organisation are the
``directory_*`` modules."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import Forbidden, NotFound, ValidationError
from ...manage import groups as manage_groups
from ...manage import roles as manage_roles
from ...manage import users as manage_users
from ...manage.context import Context
from .blueprint import bp
from .directory_common import BadTime, attempt, optional, refusals, text, until
from .guard import console
from .paging import paging, whole_number


def _group_by_path(ctx: Context, path: str):
    """The group at this path (the actor may read groups), else a message for the field."""
    ctx.require("groups:groups:read")
    try:
        return ctx.directory.group_by_path(path)
    except NotFound:
        raise ValidationError(_("There is no group %(path)s.", path=path)) from None


def user_by_name(ctx: Context, username: str, permission: str):
    """The user with this username, within the actor's reach for ``permission`` (a missing
    user and one out of reach read the same: a message for the field, no existence leak,
    naming up to five similar usernames the actor may manage)."""
    try:
        user = ctx.directory.user_by_username(username)
        return manage_users.get(ctx, user.uuid, permission)
    except NotFound:
        pass
    try:
        similar, _total = manage_users.search(
            ctx, manage_users.UserQuery(q=username, per_page=5, sort="username")
        )
    except Forbidden:  # may manage but not list users: no suggestions
        similar = []
    names = [u.username for u in similar if ctx.allowed(permission, u.id)]
    message = _("There is no user %(name)s you may manage.", name=username)
    if names:
        message += " " + _("Similar: %(names)s", names=", ".join(names))
    raise ValidationError(message)


def _groups_page(
    q: str,
    page: int,
    per_page: int,
    error: str | None = None,
    status: int = 200,
    parent_id: int | None = None,
):
    """The list: every group in tree order, or one group's direct subgroups (``parent``)."""
    with refusals(), console() as ctx:
        parent = manage_groups.get(ctx, parent_id) if parent_id is not None else None
        rows, total = manage_groups.search(
            ctx,
            manage_groups.GroupQuery(
                q=q or None, parent_id=parent_id, page=page, per_page=per_page
            ),
        )
        roles = manage_groups.roles_of(ctx, [r.id for r in rows])
        items = [
            {"group": r, "depth": r.path.count("/"), "roles": [x.name for x in roles[r.id]]}
            for r in rows
        ]
        return render_template(
            "admin/groups.html",
            active="admin.groups",
            items=items,
            total=total,
            page=page,
            per_page=per_page,
            q=q,
            parent=parent,
            may_create=ctx.allowed("groups:groups:create"),
            form=request.form,
            error=error,
        ), status


@bp.route("/groups")
def groups():
    page, per_page = paging()
    parent_id = whole_number(request.args.get("parent"))
    if request.args.get("parent") and parent_id is None:
        abort(404)
    q = (request.args.get("q") or "").strip()[:200]
    return _groups_page(q, page, per_page, parent_id=parent_id)


@bp.route("/groups", methods=["POST"])
def groups_create():
    name, parent = text("name", 200), optional("parent")

    def run():
        with console() as ctx:
            if parent:
                _group_by_path(ctx, parent)  # a missing parent is a message, not a 404 page
            return manage_groups.create(ctx, name, parent, optional("description")).id

    group_id, error = attempt(run)
    if error is None:
        flash(_("Group %(name)s created.", name=name), "success")
        return redirect(url_for("admin.group", group_id=group_id))
    return _groups_page("", 1, 25, error, 409 if "exists" in error else 400)


def _group_page(group_id: int, errors: dict[str, str] | None = None, status: int = 200):
    page, per_page = paging()
    with refusals(), console() as ctx:
        group = manage_groups.get(ctx, group_id)
        members, total = manage_groups.members(ctx, group, page=page, per_page=per_page)
        own_roles = manage_groups.roles_of(ctx, [group.id])[group.id]
        children, children_total = manage_groups.search(
            ctx, manage_groups.GroupQuery(parent_id=group.id, per_page=10)
        )
        role_choices = []
        if ctx.allowed("roles:roles:read"):
            rows, _n = manage_roles.search(ctx, manage_roles.RoleQuery(per_page=100))
            taken = {r.id for r in own_roles}
            role_choices = [r for r in rows if r.id not in taken]
        parent, _sep, _leaf = group.path.rpartition("/")
        return render_template(
            "admin/group.html",
            active="admin.groups",
            group=group,
            parent_path=parent,
            members=members,
            total=total,
            page=page,
            per_page=per_page,
            roles=own_roles,
            children=children,
            children_total=children_total,
            role_choices=role_choices,
            may_update=ctx.allowed("groups:groups:update"),
            may_delete=ctx.allowed("groups:groups:delete"),
            may_assign=ctx.allowed("groups:roles:assign"),
            errors=errors or {},
            form=request.form,
            now=ctx.svc.clock.utcnow(),
        ), status


@bp.route("/groups/<int:group_id>")
def group(group_id: int):
    return _group_page(group_id)


def _change(group_id: int, field: str, fn, done: str):
    """Run a change on the group; on a refusal show the group page with the message beside
    ``field`` (409 for a conflict such as a cycle, 400 for bad input)."""
    result, error = attempt(fn)
    if error is None:
        flash(done, "success")
        return None
    conflict = any(w in error for w in ("cycle", "exists", "subgroups", "away from you"))
    return _group_page(group_id, {field: error}, 409 if conflict else 400)


@bp.route("/groups/<int:group_id>/rename", methods=["POST"])
def group_rename(group_id: int):
    name = text("name", 200)

    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            manage_groups.update(ctx, group, name=name, description=optional("description"))

    return _change(group_id, "name", run, _("Group saved.")) or redirect(
        url_for("admin.group", group_id=group_id)
    )


@bp.route("/groups/<int:group_id>/move", methods=["POST"])
def group_move(group_id: int):
    target = text("parent", 1000)

    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            new_parent = _group_by_path(ctx, target) if target else None
            manage_groups.move(ctx, group, new_parent)

    return _change(group_id, "parent", run, _("Group moved.")) or redirect(
        url_for("admin.group", group_id=group_id)
    )


@bp.route("/groups/<int:group_id>/delete", methods=["POST"])
def group_delete(group_id: int):
    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            path = group.path
            manage_groups.delete(ctx, group)
            return path

    return _change(group_id, "delete", run, _("Group deleted.")) or redirect(
        url_for("admin.groups")
    )


@bp.route("/groups/<int:group_id>/members", methods=["POST"])
def group_member_add(group_id: int):
    username = text("username", 200)
    try:
        expires_at = until("expires_at")
    except BadTime:
        return _group_page(group_id, {"expires_at": _("Enter a date and time.")}, 400)
    if not username:
        return _group_page(group_id, {"username": _("Enter a username.")}, 400)

    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            user = user_by_name(ctx, username, "users:groups:assign")
            manage_groups.add_member(ctx, group, user, expires_at=expires_at)

    result, error = attempt(run)
    if error is not None:
        return _group_page(group_id, {"username": error}, 400)
    flash(_("%(name)s added to the group.", name=username), "success")
    return redirect(url_for("admin.group", group_id=group_id))


@bp.route("/groups/<int:group_id>/members/<user_ref>/remove", methods=["POST"])
def group_member_remove(group_id: int, user_ref: str):
    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            user = manage_groups.member_user(ctx, user_ref)
            manage_groups.remove_member(ctx, group, user)
            return user.username

    result, error = attempt(run)
    if error is not None:
        return _group_page(group_id, {"members": error}, 409)
    flash(_("%(name)s removed from the group.", name=result), "success")
    return redirect(url_for("admin.group", group_id=group_id))


@bp.route("/groups/<int:group_id>/roles", methods=["POST"])
def group_role_assign(group_id: int):
    role_id = whole_number(request.form.get("role_id"))
    if role_id is None:
        return _group_page(group_id, {"role_id": _("Choose a role.")}, 400)

    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            manage_groups.assign_role(ctx, group, manage_roles.get(ctx, role_id))

    return _change(group_id, "role_id", run, _("Role given to the group.")) or redirect(
        url_for("admin.group", group_id=group_id)
    )


@bp.route("/groups/<int:group_id>/roles/<int:role_id>/remove", methods=["POST"])
def group_role_unassign(group_id: int, role_id: int):
    def run():
        with console() as ctx:
            group = manage_groups.get(ctx, group_id)
            manage_groups.unassign_role(ctx, group, manage_roles.get(ctx, role_id))

    return _change(group_id, "roles", run, _("Role taken from the group.")) or redirect(
        url_for("admin.group", group_id=group_id)
    )
