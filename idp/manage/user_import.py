"""Importing users from a CSV or XLSX file (``docs/api.md``, "Import and export").

Each row goes through the same operations as a single change (``users.create`` /
``users.update``, ``org.place_user``, ``groups.add_member`` ...), so every row is checked
against the actor's permissions (a delegated administrator imports into their scope only) and
audited like a change made by hand. Each row runs in a SAVEPOINT: a failed row is rolled back
alone and reported, the others stay. The whole import runs in one more SAVEPOINT, rolled back
at the end of a dry run, and of an ``atomic`` import with any failed row: then nothing is
written, audit rows included.

Upsert: the row's ``match`` key (``email`` or ``username``) finds an existing user among those
the actor may read; found, the row updates them (``updated``, or ``unchanged`` when every value
already is as the file says); not found, it creates one (``created``). A column present in the
file is the truth for the users it names: an empty cell clears the field (except ``username``,
``status`` / ``active`` and ``password``, which an empty cell leaves alone); ``groups`` and
``roles`` become exactly the listed direct group memberships and unscoped global roles (scoped
and client roles are not touched). A column absent from the file leaves that field alone.

The file as a whole is refused (``FileRefused``, nothing imported) when it is not CSV or XLSX,
over the size or row limits (``[api] import_max_bytes`` / ``import_max_rows``), empty, has an
unknown or repeated column, or lacks the ``username`` column or the match column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import False_

from ..errors import Forbidden, IdPError, NotFound, ValidationError
from ..storage.directory import EMAIL_RE, NewUser, coerce_field, username_key
from ..storage.models import (
    USER_STATUSES,
    Company,
    Department,
    Group,
    GroupMember,
    Position,
    Role,
    User,
    UserRole,
)
from ..storage.rbac import bump_generation
from . import groups as manage_groups
from . import org as manage_org
from . import users as manage_users
from .context import Context
from .user_import_batch import CHUNK, Lane
from .user_sheet import (
    COLUMNS,
    CUSTOM_PREFIX,
    IMPORT_ONLY,
    LIST_SEPARATOR,
    FileRefused,
    Row,
    Table,
    cell_text,
    read_table,
)

MATCH_KEYS = ("email", "username")
_TEXT = ("given_name", "middle_name", "family_name", "display_name", "phone", "locale",
         "timezone", "color")  # fmt: skip
_ORG = ("company", "department", "position", "manager")
_TRUE = {"true", "1", "yes", "y", "on", "x"}
_FALSE = {"false", "0", "no", "n", "off"}


@dataclass(frozen=True)
class ImportOptions:
    dry_run: bool = False
    match: str = "email"  # email | username
    atomic: bool = False


@dataclass
class RowResult:
    row: int
    status: str  # created | updated | unchanged | failed
    errors: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    kind: str
    rows: list[RowResult]
    dry_run: bool
    committed: bool

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "dry_run": self.dry_run,
            "committed": self.committed,
            "rows": [{"row": r.row, "status": r.status, "errors": r.errors} for r in self.rows],
        }


Progress = Callable[[int, int], None]  # (rows done, rows in the file)


def import_users(
    ctx: Context,
    data: bytes,
    *,
    filename: str | None = None,
    options: ImportOptions = ImportOptions(),  # noqa: B008 - frozen
    max_bytes: int,
    max_rows: int,
    progress: Progress | None = None,
) -> ImportResult:
    """Import the users of a CSV or XLSX file (bytes) in the caller's transaction.

    Refused as a whole (:class:`~idp.manage.user_sheet.FileRefused`, a ValidationError,
    nothing written) when the file or its header is unusable; :class:`Forbidden` when the
    actor may neither create nor update users anywhere. Otherwise every row is reported."""
    if options.match not in MATCH_KEYS:
        raise ValidationError("match: email or username")
    _require_some_write(ctx)
    table = read_table(data, filename=filename, max_bytes=max_bytes, max_rows=max_rows)
    fields = {f.name: f for f in ctx.directory.fields()}
    _check_columns(table, fields, options.match)
    run = _Run(ctx, table, fields, options)
    sqlite = _sqlite_transaction(ctx)
    outer = ctx.db.begin_nested()
    try:
        if sqlite:
            _no_permission_cache(ctx)
        run.process(progress)
        failed = any(r.status == "failed" for r in run.rows)
        keep = not options.dry_run and not (options.atomic and failed)
        result = ImportResult(table.kind, run.rows, options.dry_run, keep)
        if keep:
            ctx.audit(
                "users.imported",
                None,
                format=table.kind,
                match=options.match,
                atomic=options.atomic,
                rows=len(run.rows),
                created=result.count("created"),
                updated=result.count("updated"),
                unchanged=result.count("unchanged"),
                failed=result.count("failed"),
            )
            outer.commit()
        else:
            outer.rollback()
    except BaseException:
        if outer.is_active:
            outer.rollback()
        raise
    return result


def _require_some_write(ctx: Context) -> None:
    if ctx.allowed("users:accounts:create"):
        return
    if isinstance(manage_users.visible(ctx, "users:accounts:update"), False_):
        raise Forbidden("permission users:accounts:create or users:accounts:update is required")


def _sqlite_transaction(ctx: Context) -> bool:
    """On SQLite, open the driver's transaction now; True on SQLite.

    Python's driver opens its transaction lazily, at the first write: a SAVEPOINT before that
    would start (and its RELEASE commit) a transaction of its own, which the rollback of a dry
    run could no longer undo."""
    conn = ctx.db.connection()
    if conn.dialect.name != "sqlite":
        return False
    raw = conn.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        conn.exec_driver_sql("BEGIN")
    return True


def _no_permission_cache(ctx: Context) -> None:
    """SQLite has one writer: once a row is written, the permission cache (the embedded store,
    another connection) cannot be written until this transaction commits, so it must compute
    grants itself. A transaction that changed RBAC data does (``idp.storage.rbac``): mark it
    so, first thing (a write, so no older snapshot is held), inside the import's SAVEPOINT (a
    dry run rolls the mark back with everything else)."""
    bump_generation(ctx.db)


def _check_columns(table: Table, fields: dict[str, Any], match: str) -> None:
    known = set(COLUMNS) | set(IMPORT_ONLY)
    for name in table.columns:
        if name.startswith(CUSTOM_PREFIX):
            if name[len(CUSTOM_PREFIX) :] not in fields:
                raise FileRefused(
                    f"column {name!r}: there is no custom field {name[len(CUSTOM_PREFIX) :]!r}",
                    field=name,
                )
        elif name not in known:
            raise FileRefused(f"unknown column {name!r}", field=name)
    if "status" in table.columns and "active" in table.columns:
        raise FileRefused("give the column status or active, not both", field="active")
    for needed in ("username", match):
        if needed not in table.columns:
            raise FileRefused(
                f"the file has no {needed!r} column"
                + (f" (match={match} needs it)" if needed == match else ""),
                field=needed,
            )


# --- one row ------------------------------------------------------------------------------------


class _RowError(Exception):
    pass


@dataclass
class _Parsed:
    """The values of one row, typed; a key is present only when its column is."""

    values: dict[str, Any]
    custom: dict[str, Any]
    errors: list[str]


def _parse(row: Row, columns: list[str], fields: dict[str, Any]) -> _Parsed:
    out = _Parsed({}, {}, [])
    if row.formulas:
        out.errors.append(f"{', '.join(row.formulas)}: formulas are not accepted")
    if row.extra:
        out.errors.append("the row has values beyond the last named column")
    for col in columns:
        raw = row.values.get(col)
        try:
            if col.startswith(CUSTOM_PREFIX):
                name = col[len(CUSTOM_PREFIX) :]
                text = cell_text(raw)
                out.custom[name] = None if text is None else _custom(fields[name], raw, text)
            else:
                out.values[col] = _value(col, raw)
        except ValidationError as exc:
            out.errors.append(f"{col}: {exc}")
    return out


def _custom(f: Any, raw: Any, text: str) -> Any:
    value = raw if isinstance(raw, bool | int) and f.type in ("boolean", "integer") else text
    try:
        return coerce_field(f, value)
    except ValidationError as exc:
        raise ValidationError(str(exc).removeprefix(f.label).strip() or str(exc)) from None


def _value(col: str, raw: Any) -> Any:
    if col == "password":
        if raw is None or not str(raw).strip():
            return None
        return raw if isinstance(raw, str) else str(raw)
    text = cell_text(raw)
    if col == "username":
        return text
    if col == "email":
        if text is None:
            return None
        email = text.lower()
        if not EMAIL_RE.fullmatch(email):
            raise ValidationError(f"{text!r} is not an e-mail address")
        return email
    if col in ("email_verified", "active"):
        return _bool(raw, text, default=False if col == "email_verified" else None)
    if col == "status":
        if text is None:
            return None
        if text.lower() not in USER_STATUSES:
            raise ValidationError(f"one of {', '.join(USER_STATUSES)}, not {text!r}")
        return text.lower()
    if col in ("start_date", "end_date"):
        return _date(raw, text)
    if col in ("groups", "roles"):
        items = [p.strip() for p in (text or "").split(LIST_SEPARATOR)]
        return list(dict.fromkeys(p for p in items if p))
    if col == "locale" and text:
        return text.replace("_", "-")
    if col == "color" and text:
        return text.lower()
    return text  # the other text columns and the organization


def _bool(raw: Any, text: str | None, default: bool | None) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValidationError(f"true or false, not {text!r}")


def _date(raw: Any, text: str | None) -> date | None:
    if isinstance(raw, datetime):
        if raw.time() != datetime.min.time():
            raise ValidationError(f"a date without a time, not {raw.isoformat()}")
        return raw.date()
    if isinstance(raw, date):
        return raw
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a date YYYY-MM-DD") from None


_SNAPSHOT = (
    "username", "email", "email_verified", *_TEXT, "status", "start_date", "end_date",
    "company_id", "department_id", "position_id", "manager_id", "password_hash",
)  # fmt: skip


def _snapshot(user: User) -> tuple[Any, ...]:
    return (*(getattr(user, a) for a in _SNAPSHOT), dict(user.custom or {}))


class _Run:
    """One import: the caches of what rows refer to (companies, groups, roles...)."""

    def __init__(
        self, ctx: Context, table: Table, fields: dict[str, Any], options: ImportOptions
    ) -> None:
        self.ctx = ctx
        self.table = table
        self.fields = fields
        self.options = options
        self.rows: list[RowResult] = []
        self.readable = manage_users.visible(ctx, "users:accounts:read")
        self.cols = set(table.columns)
        self._companies: dict[str, Company] = {}
        self._departments: dict[tuple[int, str], Department] = {}
        self._positions: dict[tuple[int, str], Position] = {}
        self._groups: dict[str, Group] = {}
        self._roles: dict[str, Role] = {}
        # Read per chunk of rows, kept current as rows change them; dropped for a user whose
        # row failed (a rolled-back SAVEPOINT), so that they are read again.
        self._known: dict[str, User] = {}  # match key -> user
        self._member_of: dict[int, set[int]] = {}  # user id -> direct group ids
        self._global_roles: dict[int, set[int]] = {}  # user id -> unscoped global role ids
        self.lane = Lane(self)

    # -- lookups (cached for the whole file) --

    def find(self, key: str, value: str) -> User | None:
        wanted = value if key == "email" else value.lower()
        known = self._known.get(wanted)
        if known is not None and _key_of(known, key) == wanted:
            return known
        if key == "email":
            cond = User.email == value
        else:
            cond = func.lower(User.username) == username_key(value)
        return self.ctx.db.scalar(select(User).where(cond, self.readable))

    def manager(self, username: str) -> User | None:
        known = self.lane.managers.get(username.lower())
        if known is not None and known.username.lower() == username.lower():
            return known
        return self.find("username", username)

    def prefetch(self, parsed: list[tuple[Row, _Parsed]]) -> None:
        """The chunk's existing users with their groups and global roles: three queries
        instead of three per row."""
        db, key = self.ctx.db, self.options.match
        keys = {
            p.values[key] if key == "email" else p.values[key].lower()
            for _, p in parsed
            if not p.errors and p.values.get(key)
        }
        if not keys:
            return
        column = User.email if key == "email" else func.lower(User.username)
        users = db.scalars(select(User).where(column.in_(keys), self.readable)).all()
        for user in users:
            self._known[_key_of(user, key)] = user
        ids = [u.id for u in users if u.id not in self._member_of]
        if not ids:
            return
        for uid in ids:
            self._member_of[uid] = set()
            self._global_roles[uid] = set()
        for uid, gid in db.execute(
            select(GroupMember.user_id, GroupMember.group_id).where(GroupMember.user_id.in_(ids))
        ):
            self._member_of[uid].add(gid)
        for uid, rid in db.execute(
            select(UserRole.user_id, UserRole.role_id)
            .where(UserRole.user_id.in_(ids), *_UNSCOPED_GLOBAL)
            .join(Role, Role.id == UserRole.role_id)
        ):
            self._global_roles[uid].add(rid)

    def forget(self, user_id: int) -> None:
        self._member_of.pop(user_id, None)
        self._global_roles.pop(user_id, None)

    def company(self, slug: str) -> Company:
        if slug not in self._companies:
            self._companies[slug] = self.ctx.directory.company(slug)
        return self._companies[slug]

    def department(self, company: Company, path: str) -> Department:
        key = (company.id, path.strip("/"))
        if key not in self._departments:
            self._departments[key] = self.ctx.directory.department(f"{company.slug}/{key[1]}")
        return self._departments[key]

    def position(self, company: Company, name: str) -> Position:
        key = (company.id, name)
        if key not in self._positions:
            self._positions[key] = self.ctx.directory.position(company, name)
        return self._positions[key]

    def group(self, path: str) -> Group:
        if path not in self._groups:
            self._groups[path] = self.ctx.directory.group_by_path(path)
        return self._groups[path]

    def role(self, name: str) -> Role:
        if name not in self._roles:
            self._roles[name] = self.ctx.directory.role_by_name(name)
        return self._roles[name]

    # -- a row --

    def process(self, progress: Progress | None) -> None:
        """Every row, in the file's order: new users through the batched lane when it is sure
        of them (``user_import_batch``), anything else one at a time."""
        results: dict[int, RowResult] = {}
        lane = self.lane
        total = len(self.table.rows)

        def write() -> None:
            for row, status in lane.write():
                if status is None:  # the database refused the batch: one at a time
                    results[row.number] = self.one(row, _parse(row, self.table.columns,
                                                               self.fields))  # fmt: skip
                else:
                    results[row.number] = RowResult(row.number, status)

        done = 0
        for start in range(0, total, CHUNK):
            chunk = self.table.rows[start : start + CHUNK]
            parsed = [(row, _parse(row, self.table.columns, self.fields)) for row in chunk]
            lane.prefetch(parsed)
            self.prefetch(parsed)
            for row, p in parsed:
                done += 1
                if self.refused(row, p, results) or lane.take(row, p):
                    continue
                write()
                results[row.number] = self.one(row, p)
                lane.saw(p)
                if progress is not None:
                    progress(done, total)
            write()
            if progress is not None:
                progress(done, total)
        self.rows = [results[row.number] for row in self.table.rows]

    def refused(self, row: Row, p: _Parsed, results: dict[int, RowResult]) -> bool:
        """A row that fails before any lookup (bad cells, no key): reported, True."""
        key = self.options.match
        if p.errors:
            results[row.number] = RowResult(row.number, "failed", p.errors)
        elif not p.values.get(key):
            results[row.number] = RowResult(
                row.number, "failed", [f"{key}: empty (the rows match on {key})"]
            )
        else:
            return False
        return True

    def one(self, row: Row, parsed: _Parsed) -> RowResult:
        """One row in its own SAVEPOINT through the operations: created, updated, unchanged,
        or failed with the reason (and nothing of it written)."""
        key = self.options.match
        db = self.ctx.db
        user_id = None
        try:
            with db.begin_nested():
                user = self.find(key, parsed.values[key])
                user_id = user.id if user is not None else None
                status = self.create(parsed) if user is None else self.update(user, parsed)
            return RowResult(row.number, status)
        except (_RowError, IdPError, IntegrityError) as exc:
            if user_id is not None:
                self.forget(user_id)
            return RowResult(row.number, "failed", [_message(exc)])

    def create(self, p: _Parsed) -> str:
        v = p.values
        if not v.get("username"):
            raise _RowError("username: required to create a user")
        status = v.get("status")
        if status not in (None, "active", "inactive"):
            raise _RowError(f"status: a new user is active or inactive, not {status}")
        active = v.get("active")
        if status is not None:
            active = status == "active"
        fields: dict[str, Any] = {k: v[k] for k in _TEXT if v.get(k) is not None}
        fields.pop("given_name", None)
        fields.pop("family_name", None)
        custom = {k: c for k, c in p.custom.items() if c is not None}
        if custom:
            fields["custom"] = custom
        if active is False:
            fields["active"] = False
        user = manage_users.create(
            self.ctx,
            NewUser(
                username=v["username"],
                email=v.get("email"),
                given_name=v.get("given_name"),
                family_name=v.get("family_name"),
                start_date=v.get("start_date"),
                end_date=v.get("end_date"),
            ),
            password=v.get("password"),
            groups=v.get("groups") or [],
            roles=v.get("roles") or [],
            email_verified=bool(v.get("email_verified")),
            # The API keeps to the password policy; the operator at the command line may not.
            check_password_policy=self.ctx.actor.kind != "operator",
            fields=fields,
        )
        if any(v.get(k) for k in _ORG):
            self.place(user, v)
        return "created"

    def update(self, user: User, p: _Parsed) -> str:
        v = p.values
        before = _snapshot(user)
        wrote = False
        changes: dict[str, Any] = {}
        # Matched by username (case-insensitively): the key is not a change.
        if self.options.match != "username" and v.get("username") not in (None, user.username):
            changes["username"] = v["username"]
        if "email" in v and v["email"] != user.email:
            changes["email"] = v["email"]
            if "email_verified" in v:
                changes["email_verified"] = v["email_verified"]
        if "email_verified" in v and v["email_verified"] != user.email_verified:
            changes["email_verified"] = v["email_verified"]
        for k in (*_TEXT, "start_date", "end_date"):
            if k in v and v[k] != getattr(user, k):
                changes[k] = v[k]
        want = self.wanted_active(user, v)
        if want is not None and want != (user.status == "active"):
            changes["active"] = want
        current = user.custom or {}
        custom = {k: c for k, c in p.custom.items() if current.get(k) != c}
        if custom:
            changes["custom"] = custom
        if changes:
            manage_users.update(self.ctx, user, changes)
        if self.cols & set(_ORG):
            wrote |= self.place(user, v)
        if "groups" in v:
            wrote |= self.sync_groups(user, v["groups"])
        if "roles" in v:
            wrote |= self.sync_roles(user, v["roles"])
        if v.get("password"):
            manage_users.set_password(self.ctx, user, v["password"])
            wrote = True
        return "updated" if wrote or _snapshot(user) != before else "unchanged"

    def wanted_active(self, user: User, v: dict[str, Any]) -> bool | None:
        if v.get("active") is not None:
            return v["active"]
        status = v.get("status")
        if status is None or status == user.status:
            return None
        if status not in ("active", "inactive"):
            raise _RowError(f"status: can be set to active or inactive only, not {status}")
        return status == "active"

    # -- organization, groups, roles --

    def place(self, user: User, v: dict[str, Any]) -> bool:
        """Put the user where the row says (absent columns: where they are; an empty company
        also empties department and position); True if they moved."""
        company = user.company
        if "company" in v:
            company = self.resolve("company", v["company"], self.company)
        cleared = "company" in v and company is None
        dept = None if cleared else user.department
        pos = None if cleared else user.position
        if (v.get("department") or v.get("position")) and company is None:
            raise _RowError("department / position: give the company too")
        if "department" in v:
            dept = self.resolve("department", v["department"],
                                lambda path: self.department(company, path))  # fmt: skip
        if "position" in v:
            pos = self.resolve("position", v["position"], lambda n: self.position(company, n))
        manager_id = user.manager_id
        if "manager" in v:
            manager = None
            if v["manager"]:
                manager = self.manager(v["manager"])
                if manager is None:
                    raise _RowError(f"manager: no user {v['manager']!r}")
            manager_id = manager.id if manager else None
        owner = dept or pos
        company_id = owner.company_id if owner else company.id if company else None
        target = (company_id, dept.id if dept else None, pos.id if pos else None, manager_id)
        if target == (user.company_id, user.department_id, user.position_id, user.manager_id):
            return False
        if "manager" not in v:
            manager = self.ctx.db.get(User, manager_id) if manager_id else None
        manage_org.place_user(
            self.ctx, user, company=company, department=dept, position=pos, manager=manager
        )
        return True

    @staticmethod
    def resolve(col: str, value: str | None, find: Callable[[str], Any]) -> Any:
        if not value:
            return None
        try:
            return find(value)
        except NotFound as exc:
            raise _RowError(f"{col}: {exc}") from None

    def sync_groups(self, user: User, paths: list[str]) -> bool:
        db = self.ctx.db
        wanted: dict[int, Group] = {}
        for path in paths:
            group = self.resolve("groups", path, self.group)
            wanted[group.id] = group
        have = self._member_of.get(user.id)
        if have is None:
            have = set(
                db.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user.id))
            )
        for gid in sorted(set(wanted) - have):
            manage_groups.add_member(self.ctx, wanted[gid], user)
        gone = sorted(have - set(wanted))
        for gid in gone:
            manage_groups.remove_member(self.ctx, db.get(Group, gid), user)
        self._member_of[user.id] = set(wanted)
        return bool(set(wanted) - have or gone)

    def sync_roles(self, user: User, names: list[str]) -> bool:
        db = self.ctx.db
        wanted = {self.resolve("roles", n, self.role).id for n in names}
        have = self._global_roles.get(user.id)
        if have is None:
            have = set(
                db.scalars(
                    select(UserRole.role_id)
                    .join(Role, Role.id == UserRole.role_id)
                    .where(UserRole.user_id == user.id, *_UNSCOPED_GLOBAL)
                )
            )
        changed = False
        for name in names:
            role = self.role(name)
            if role.id not in have:
                manage_users.assign_role(self.ctx, user, role)
                changed = True
        gone = []
        if have - wanted:
            gone = db.scalars(
                select(UserRole)
                .join(Role, Role.id == UserRole.role_id)
                .where(
                    UserRole.user_id == user.id,
                    UserRole.role_id.in_(have - wanted),
                    *_UNSCOPED_GLOBAL,
                )
            ).all()
        self._global_roles[user.id] = set(wanted)
        if gone:
            self.ctx.require("users:roles:assign", user.id)
            for r in gone:
                role = db.get(Role, r.role_id)
                db.delete(r)
                self.ctx.audit(
                    "user.role_removed",
                    user.uuid,
                    role=role.name if role else None,
                    client_id=None,
                    removed=1,
                    scope="global",
                )
            db.flush()
            changed = True
        return changed


# Global roles assigned everywhere: the ones the roles column lists (scoped and client roles
# are not the import's business).
_UNSCOPED_GLOBAL = (
    Role.client_id.is_(None),
    UserRole.scope_company_id.is_(None),
    UserRole.scope_department_id.is_(None),
)


def _key_of(user: User, key: str) -> str | None:
    return user.email if key == "email" else user.username.lower()


def _message(exc: Exception) -> str:
    if isinstance(exc, IntegrityError):
        return "refused by the database (a duplicate or a broken reference)"
    return str(exc) or type(exc).__name__
