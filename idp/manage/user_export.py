"""Exporting users to CSV or XLSX (``docs/api.md``, "Import and export").

The users an actor may read (``users:accounts:read``, a delegated actor's scope only) that
match a :class:`~idp.manage.users.UserQuery`, read in batches, with the import's columns (an
export imports again unchanged) and never a password. Groups, roles, managers and departments
are looked up per batch, not per user. Audited as ``users.exported`` with the filter and the
number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import date
from itertools import chain, islice
from typing import Any, BinaryIO

from sqlalchemy import select

from ..errors import ValidationError
from ..storage.models import CustomField, Department, Group, GroupMember, Role, User, UserRole
from . import users as manage_users
from .context import Context
from .user_sheet import COLUMNS, CUSTOM_PREFIX, LIST_SEPARATOR, writer

FORMATS = ("csv", "xlsx")
_BATCH = 500


def columns(fields: list[CustomField]) -> list[str]:
    return [*COLUMNS, *(CUSTOM_PREFIX + f.name for f in fields)]


def export_users(ctx: Context, query: manage_users.UserQuery, kind: str, out: BinaryIO) -> int:
    """Write the users matching ``query`` to ``out`` as ``kind`` (csv | xlsx); how many.

    Forbidden (nothing written) when the actor may read users nowhere."""
    if kind not in FORMATS:
        raise ValidationError("format: csv or xlsx")
    query = replace(query, page=1, per_page=None)
    found = manage_users.iter_search(ctx, query, batch=1000)
    first = next(found, None)  # the permission check runs here, before a byte is written
    fields = ctx.directory.fields()
    sheet = writer(kind, out)
    sheet.header(columns(fields))
    count = 0
    rows = _Rows(ctx, fields)
    users: Iterator[User] = chain([first], found) if first is not None else iter(())
    while batch := list(islice(users, _BATCH)):
        for user, values in rows.of(batch):
            sheet.row(values, user.color)
            count += 1
    sheet.close()
    wanted = {
        k: v.isoformat() if isinstance(v, date) else v
        for k, v in asdict(query).items()
        if v and k not in ("page", "per_page")
    }
    ctx.audit("users.exported", None, format=kind, filter=wanted, rows=count)
    return count


class _Rows:
    """The cells of each user; what lives in other tables is read once per batch."""

    def __init__(self, ctx: Context, fields: list[CustomField]) -> None:
        self.db = ctx.db
        self.fields = fields
        self._departments: dict[int, str] | None = None

    def department_paths(self) -> dict[int, str]:
        """Every department's path of names below its company ("Engineering/Platform")."""
        if self._departments is None:
            rows = self.db.execute(select(Department.id, Department.name, Department.path)).all()
            names = {r.id: r.name for r in rows}
            self._departments = {
                r.id: "/".join(names.get(int(i), "?") for i in r.path.strip("/").split("/") if i)
                for r in rows
            }
        return self._departments

    def of(self, users: list[User]) -> Iterator[tuple[User, list[Any]]]:
        ids = [u.id for u in users]
        groups: dict[int, list[str]] = {}
        for uid, path in self.db.execute(
            select(GroupMember.user_id, Group.path)
            .join(Group, Group.id == GroupMember.group_id)
            .where(GroupMember.user_id.in_(ids))
        ):
            groups.setdefault(uid, []).append(path)
        roles: dict[int, list[str]] = {}
        for uid, name in self.db.execute(
            select(UserRole.user_id, Role.name)
            .join(Role, Role.id == UserRole.role_id)
            .where(
                UserRole.user_id.in_(ids),
                Role.client_id.is_(None),
                UserRole.scope_company_id.is_(None),
                UserRole.scope_department_id.is_(None),
            )
        ):
            roles.setdefault(uid, []).append(name)
        manager_ids = {u.manager_id for u in users if u.manager_id}
        managers = dict(
            self.db.execute(select(User.id, User.username).where(User.id.in_(manager_ids))).all()
            if manager_ids
            else []
        )
        departments = self.department_paths() if any(u.department_id for u in users) else {}
        for u in users:
            custom = u.custom or {}
            values: list[Any] = [
                u.username,
                u.email,
                bool(u.email_verified),
                u.given_name,
                u.middle_name,
                u.family_name,
                u.display_name,
                u.phone,
                u.locale,
                u.timezone,
                u.color,
                u.status,
                u.start_date,
                u.end_date,
                u.company.slug if u.company else None,
                departments.get(u.department_id) if u.department_id else None,
                u.position.name if u.position else None,
                managers.get(u.manager_id) if u.manager_id else None,
                LIST_SEPARATOR.join(sorted(set(groups.get(u.id, ())))) or None,
                LIST_SEPARATOR.join(sorted(set(roles.get(u.id, ())))) or None,
                *(custom.get(f.name) for f in self.fields),
            ]
            yield u, values
