"""The SCIM operations (RFC 7644 §3): list, read, create, replace, patch and delete Users and
Groups, each on a management :class:`~idp.manage.Context`, so the permission checks, the
delegation scopes and the audit rows are those of ``idp.manage``. The caller opens one
transaction per request: a PATCH is all-or-nothing (RFC 7644 §3.5.2).

Bodies come in as parsed JSON and leave as scim2-models resources; the web layer only renders.

Policy for what Entra ID and Okta send (``ScimPolicy``): attributes this server does not keep
are dropped rather than refused; a ``remove`` whose ``value`` names the members to remove
(Entra) removes them; a ``replace`` whose path filter matches nothing adds the value it
describes (Entra's ``emails[type eq "work"].value`` on a user without an address).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim2_models import Context as ScimContext
from scim2_models import (
    InvalidValueException,
    MutabilityException,
    PatchOp,
    ScimPolicy,
)
from sqlalchemy import False_, func, select

from ..manage import Context
from ..manage import fields as manage_fields
from ..manage import groups as manage_groups
from ..manage import org as manage_org
from ..manage import users as manage_users
from ..storage.directory import NewUser
from ..storage.models import Group, User
from . import filters
from .errors import ScimError, invalid_value
from .filters import EMPLOYEE_NUMBER_FIELD
from .mapping import (
    Urls,
    group_resource,
    user_changes,
    user_resource,
    wanted_fields,
    wanted_members,
)
from .models import FullUser
from .models import Group as ScimGroup

MAX_RESULTS = 200
"""The most resources one page carries (``filter.maxResults`` of the ServiceProviderConfig)."""

POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

READ_ONLY_PATHS = ("id", "meta", "groups", "schemas")


@dataclass(frozen=True)
class ListQuery:
    """RFC 7644 §3.4.2: ``filter``, ``sortBy`` / ``sortOrder``, ``startIndex`` (1-based; less
    than 1 reads as 1) and ``count`` (negative reads as 0; more than :data:`MAX_RESULTS` is cut
    to it, as §3.4.2.4 allows)."""

    filter: str | None = None
    sort_by: str | None = None
    sort_order: str | None = None
    start_index: int = 1
    count: int | None = None

    def page(self) -> tuple[int, int]:
        start = max(self.start_index, 1)
        count = MAX_RESULTS if self.count is None else min(max(self.count, 0), MAX_RESULTS)
        return start, count


def check_version(if_match: str | None, current: str) -> None:
    """RFC 7644 §3.14: a stale ``If-Match`` is 412; ``*`` and any listed tag that is the
    current version (weak comparison) pass."""
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    bare = current.removeprefix("W/")
    if "*" in tags or any(t.removeprefix("W/") == bare for t in tags):
        return
    raise ScimError(412, "The resource was changed since you read it; read it again.")


def _dialect(ctx: Context) -> str:
    return ctx.db.get_bind().dialect.name


def _page(ctx: Context, query, q: ListQuery, target: filters.Target, default_sort):
    if q.filter:
        query = query.where(filters.where(target, q.filter, _dialect(ctx)))
    total = ctx.db.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    if q.sort_order not in (None, "", "ascending", "descending"):
        raise invalid_value("sortOrder: ascending or descending")
    start, count = q.page()
    if q.sort_by:
        col = filters.order_by(target, q.sort_by)
        col = col.desc() if q.sort_order == "descending" else col.asc()
        query = query.order_by(col, default_sort)
    else:
        query = query.order_by(default_sort)
    rows = ctx.db.scalars(query.offset(start - 1).limit(count)).all() if count else []
    return rows, total, start


# --- Users ---------------------------------------------------------------------------------------


def _visible_users(ctx: Context):
    where = manage_users.visible(ctx)
    if isinstance(where, False_):
        ctx.require("users:accounts:read")
    return where


def list_users(ctx: Context, urls: Urls, q: ListQuery) -> tuple[list[FullUser], int, int]:
    query = select(User).where(_visible_users(ctx))
    rows, total, start = _page(ctx, query, q, filters.USERS, User.id)
    return [user_resource(ctx.db, u, urls) for u in rows], total, start


def _user(ctx: Context, user_id: str, permission: str = "users:accounts:read") -> User:
    return manage_users.get(ctx, user_id, permission)


def get_user(ctx: Context, urls: Urls, user_id: str) -> FullUser:
    return user_resource(ctx.db, _user(ctx, user_id), urls)


def _read_user(body: Any, scim_ctx: ScimContext, active: bool = True) -> FullUser:
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    if not any(str(k).lower() == "active" for k in body):
        body = {**body, "active": active}
    return FullUser.model_validate(body, scim_ctx=scim_ctx, scim_policy=POLICY)


def create_user(ctx: Context, urls: Urls, body: Any) -> FullUser:
    resource = _read_user(body, ScimContext.RESOURCE_CREATION_REQUEST)
    wanted = wanted_fields(resource)
    username = wanted["username"]
    if not username:
        raise invalid_value("userName is required")
    user = manage_users.create(
        ctx,
        NewUser(
            username=username,
            email=wanted["email"],
            given_name=wanted["given_name"],
            family_name=wanted["family_name"],
        ),
    )
    _apply_user(ctx, user, resource)
    return user_resource(ctx.db, user, urls)


def _apply_user(ctx: Context, user: User, resource: FullUser) -> None:
    """Make ``user`` what ``resource`` says, through the management operations."""
    changes = user_changes(ctx.db, user, resource)
    deactivated = changes.fields.get("active") is False
    if (changes.fields.get("custom") or {}).get(EMPLOYEE_NUMBER_FIELD):
        manage_fields.ensure(ctx, EMPLOYEE_NUMBER_FIELD, "Employee number")
    if changes.fields:
        manage_users.update(ctx, user, changes.fields)
    if changes.manager is not None:
        boss = None
        if changes.manager:
            try:
                boss = manage_users.get(ctx, changes.manager)
            except Exception as exc:  # noqa: BLE001 - NotFound or outside the caller's scope
                raise invalid_value(f"manager.value: there is no user {changes.manager}") from exc
        manage_org.place_user(
            ctx,
            user,
            company=user.company,
            department=user.department,
            position=user.position,
            manager=boss,
        )
    if deactivated:
        _end_sessions(ctx, user)


def _end_sessions(ctx: Context, user: User) -> None:
    """A deactivated user is signed out everywhere (their tokens already stop working, as
    an inactive account cannot use them)."""
    from ..manage import sessions as manage_sessions

    if ctx.allowed("users:sessions:revoke", user.id):
        manage_sessions.end_all(ctx, user, ctx.svc.sso_sessions)


def replace_user(
    ctx: Context, urls: Urls, user_id: str, body: Any, if_match: str | None
) -> FullUser:
    user = _user(ctx, user_id, "users:accounts:update")
    current = user_resource(ctx.db, user, urls)
    check_version(if_match, current.meta.version)
    resource = _read_user(
        body, ScimContext.RESOURCE_REPLACEMENT_REQUEST, active=user.status != "inactive"
    )
    if resource.id is not None and resource.id != user.uuid:
        raise ScimError(400, "id cannot be changed", "mutability")
    if not resource.user_name:
        raise invalid_value("userName is required")
    _apply_user(ctx, user, resource)
    return user_resource(ctx.db, user, urls)


def _read_patch(model: Any, body: Any, current_id: str) -> PatchOp:
    """The PATCH request, refusing a change to ``id``, ``meta``, ``schemas`` or ``groups``
    (400 ``mutability``). Okta's ``replace`` carrying the resource's own ``id`` among the
    values is read without it; Entra's manager given as a bare id string is read as
    ``{"value": id}``, and the null ``$ref`` of the members it removes is left out."""
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    body = dict(body)
    ops = body.get("Operations")
    if isinstance(ops, list):
        body["Operations"] = [_tolerated(op, current_id) for op in ops]
    return PatchOp[model].model_validate(
        body, scim_ctx=ScimContext.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
    )


def _tolerated(op: Any, current_id: str) -> Any:
    if not isinstance(op, dict):
        return op
    op = dict(op)
    path, value = op.get("path"), op.get("value")
    if isinstance(path, str):
        head = path.split("[", 1)[0].split(".", 1)[0].strip().lower()
        if head in READ_ONLY_PATHS:
            raise ScimError(400, f"{path} is read-only", "mutability")
        if path.lower().endswith(":manager") and isinstance(value, str):
            op["value"] = {"value": value}
        if str(op.get("op", "")).lower() == "remove" and isinstance(value, list):
            # Entra names the members to remove as [{"$ref": null, "value": id}]: the null
            # says nothing about which entries are meant.
            op["value"] = [
                {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
                for item in value
            ]
    elif isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            head = str(key).split(".", 1)[0].lower()
            if head == "id" and item == current_id:
                continue
            if head in READ_ONLY_PATHS:
                raise ScimError(400, f"{key} is read-only", "mutability")
            kept[key] = item
        op["value"] = kept
    return op


def _patched(patch: PatchOp, resource: Any) -> Any:
    wanted = resource.model_copy(deep=True)
    try:
        patch.patch(wanted, scim_policy=POLICY)
    except (MutabilityException, InvalidValueException):
        raise
    return wanted


def patch_user(ctx: Context, urls: Urls, user_id: str, body: Any, if_match: str | None) -> FullUser:
    user = _user(ctx, user_id, "users:accounts:update")
    current = user_resource(ctx.db, user, urls)
    check_version(if_match, current.meta.version)
    patch = _read_patch(FullUser, body, user.uuid)
    wanted = _patched(patch, current)
    if not wanted.user_name:
        raise ScimError(400, "userName is required", "mutability")
    _apply_user(ctx, user, wanted)
    return user_resource(ctx.db, user, urls)


def delete_user(ctx: Context, urls: Urls, user_id: str, if_match: str | None) -> None:
    user = _user(ctx, user_id, "users:accounts:delete")
    if if_match is not None:
        check_version(if_match, user_resource(ctx.db, user, urls).meta.version)
    manage_users.delete(ctx, user, sessions=ctx.svc.sso_sessions)


# --- Groups --------------------------------------------------------------------------------------


def _members_where(ctx: Context):
    return manage_users.visible(ctx)


def list_groups(ctx: Context, urls: Urls, q: ListQuery) -> tuple[list[ScimGroup], int, int]:
    ctx.require("groups:groups:read")
    rows, total, start = _page(ctx, select(Group), q, filters.GROUPS, Group.id)
    where = _members_where(ctx)
    return [group_resource(ctx.db, g, urls, members_where=where) for g in rows], total, start


def _group(ctx: Context, group_id: str) -> Group:
    if not (group_id.isascii() and group_id.isdigit()) or len(group_id) > 18:
        from ..errors import NotFound

        ctx.require("groups:groups:read")
        raise NotFound(f"no group {group_id}")
    return manage_groups.get(ctx, int(group_id))


def get_group(ctx: Context, urls: Urls, group_id: str) -> ScimGroup:
    return group_resource(ctx.db, _group(ctx, group_id), urls, members_where=_members_where(ctx))


def _read_group(body: Any, scim_ctx: ScimContext) -> ScimGroup:
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    return ScimGroup.model_validate(body, scim_ctx=scim_ctx, scim_policy=POLICY)


def _split(display_name: str) -> tuple[str | None, str]:
    parent, _, name = display_name.strip().strip("/").rpartition("/")
    return parent or None, name


def create_group(ctx: Context, urls: Urls, body: Any) -> ScimGroup:
    resource = _read_group(body, ScimContext.RESOURCE_CREATION_REQUEST)
    if not resource.display_name:
        raise invalid_value("displayName is required")
    parent, name = _split(resource.display_name)
    group = manage_groups.create(ctx, name, parent)
    if resource.external_id:
        manage_groups.set_external_id(ctx, group, resource.external_id)
    _apply_members(ctx, group, wanted_members(resource))
    return group_resource(ctx.db, group, urls, members_where=_members_where(ctx))


def _member_user(ctx: Context, user_id: str) -> User:
    try:
        return manage_users.get(ctx, user_id)
    except Exception as exc:  # noqa: BLE001 - NotFound or outside the caller's scope
        raise invalid_value(f"members: there is no user {user_id}") from exc


def _apply_members(ctx: Context, group: Group, wanted: list[str], *, current=()) -> None:
    current_set, wanted_set = set(current), set(wanted)
    for user_id in wanted:
        if user_id not in current_set:
            manage_groups.add_member(ctx, group, _member_user(ctx, user_id))
    for user_id in current:
        if user_id not in wanted_set:
            manage_groups.remove_member(ctx, group, _member_user(ctx, user_id))


def _apply_group(ctx: Context, group: Group, before: ScimGroup, wanted: ScimGroup) -> Group:
    if not wanted.display_name:
        raise invalid_value("displayName is required")
    if wanted.display_name.strip("/") != group.path:
        parent, name = _split(wanted.display_name)
        old_parent = group.path.rpartition("/")[0] or None
        if parent != old_parent:
            target = ctx.directory.group_by_path(parent) if parent else None
            group = manage_groups.move(ctx, group, target)
        if name != group.name:
            group = manage_groups.rename(ctx, group, name)
    if (wanted.external_id or None) != group.external_id:
        manage_groups.set_external_id(ctx, group, wanted.external_id or None)
    _apply_members(ctx, group, wanted_members(wanted), current=wanted_members(before))
    return group


def replace_group(
    ctx: Context, urls: Urls, group_id: str, body: Any, if_match: str | None
) -> ScimGroup:
    group = _group(ctx, group_id)
    where = _members_where(ctx)
    current = group_resource(ctx.db, group, urls, members_where=where)
    check_version(if_match, current.meta.version)
    wanted = _read_group(body, ScimContext.RESOURCE_REPLACEMENT_REQUEST)
    group = _apply_group(ctx, group, current, wanted)
    return group_resource(ctx.db, group, urls, members_where=where)


def patch_group(
    ctx: Context, urls: Urls, group_id: str, body: Any, if_match: str | None
) -> ScimGroup:
    group = _group(ctx, group_id)
    where = _members_where(ctx)
    current = group_resource(ctx.db, group, urls, members_where=where)
    check_version(if_match, current.meta.version)
    patch = _read_patch(ScimGroup, body, str(group.id))
    wanted = _patched(patch, current)
    group = _apply_group(ctx, group, current, wanted)
    return group_resource(ctx.db, group, urls, members_where=where)


def delete_group(ctx: Context, urls: Urls, group_id: str, if_match: str | None) -> None:
    group = _group(ctx, group_id)
    if if_match is not None:
        current = group_resource(ctx.db, group, urls, members_where=_members_where(ctx))
        check_version(if_match, current.meta.version)
    manage_groups.delete(ctx, group)


# --- the root search (RFC 7644 §3.4.3) -----------------------------------------------------------


def search_all(ctx: Context, urls: Urls, q: ListQuery) -> tuple[list[Any], int, int]:
    """Users, then Groups, matching the filter, paged over both. A filter naming an attribute
    one type does not have matches nothing of that type (§3.4.2.1); one that fits neither is
    ``invalidFilter``. A type the caller may not read is left out."""
    from dataclasses import replace

    from scim2_models import InvalidFilterException

    from ..errors import Forbidden

    kinds = []
    refusal: Exception | None = None
    for lister, target in ((list_users, filters.USERS), (list_groups, filters.GROUPS)):
        try:
            if q.filter:
                filters.parse(target, q.filter)
            total = lister(ctx, urls, replace(q, start_index=1, count=0))[1]
        except (InvalidFilterException, Forbidden) as exc:
            refusal = refusal or exc
            continue
        kinds.append((lister, total))
    if not kinds and refusal is not None:
        raise refusal
    start, count = q.page()
    offset, remaining, found = start - 1, count, []
    for lister, total in kinds:
        if remaining <= 0:
            break
        if offset >= total:
            offset -= total
            continue
        got = lister(ctx, urls, replace(q, start_index=offset + 1, count=remaining))[0]
        found.extend(got)
        remaining -= len(got)
        offset = 0
    return found, sum(total for _, total in kinds), start
