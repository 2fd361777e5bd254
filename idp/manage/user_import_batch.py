"""The import's batched lane for new users: the rows ``users.create`` would accept, written many
at a time with the same permission checks and the same audit rows.

Creating users one ``users.create`` call at a time costs a handful of statements per user
through the ORM (about 3-5 ms a row on SQLite: 10,000 rows take most of a minute before
anything else is done). When the actor holds the permissions globally (the operator, an
Administrator's service account or user), those checks do not depend on the new user, so they
are made once per import and per group and role instead of once per row; the rows are checked
with the rules the operations use (``manage.users`` normalises each field, the directory's
username and e-mail rules, custom fields by their schema, the organization's consistency) and
inserted together, each with the audit rows the one-at-a-time path writes (``user.created``,
and ``user.placed`` when the row puts them in the organization).

Anything this lane is not sure of goes the one-at-a-time way, which then gives the canonical
answer: a row that matches an existing user, has a password (hashing dominates anyway), a
value a rule refuses, a group, role, company, department, position or manager that is not
found, a manager created in the same batch, a username or e-mail address taken or repeated,
an actor without the global grants. ``tests/api/test_api_import_export.py`` imports the same
file both ways and compares the users and the audit rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import IdPError
from ..storage.directory import valid_username
from ..storage.models import Group, GroupMember, Role, User, UserRole
from ..storage.rbac import role_grants
from . import users as manage_users
from .groups import group_grants
from .org import audit_placed

if TYPE_CHECKING:
    from .user_import import _Parsed, _Run
    from .user_sheet import Row

# Fields a new user gets through ``users.create(fields=...)`` (``NewUser`` takes the username,
# e-mail, given and family name and the dates).
EXTRA_FIELDS = ("middle_name", "display_name", "phone", "locale", "timezone", "color")
CHUNK = 500


@dataclass
class Fresh:
    """A row ready to be inserted as a new user, and what its audit rows say."""

    row: Row
    attrs: dict[str, Any]
    groups: list[Group]
    roles: list[Role]
    group_names: list[str]
    role_names: list[str]
    placed: bool


@dataclass
class Lane:
    run: _Run
    pending: list[Fresh] = field(default_factory=list)
    # lower-case usernames and e-mail addresses created by this import, or taken already
    taken_names: set[str] = field(default_factory=set)
    taken_emails: set[str] = field(default_factory=set)
    found_keys: set[str] = field(default_factory=set)
    managers: dict[str, User | None] = field(default_factory=dict)
    _holds: dict[tuple[str, int], bool] = field(default_factory=dict)
    _open: bool | None = None

    # -- is the lane open to this actor at all --

    def open(self) -> bool:
        if self._open is None:
            ctx = self.run.ctx
            self._open = ctx.allowed("users:accounts:create") and ctx.allowed(
                "users:accounts:update"
            )
        return self._open

    # -- what a chunk of rows refers to, in a few queries --

    def prefetch(self, parsed: list[tuple[Row, _Parsed]]) -> None:
        db, run = self.run.ctx.db, self.run
        values = [p.values for _, p in parsed if not p.errors]
        self._prefetch_managers(values)
        if not self.open():
            return
        names = {v["username"].lower() for v in values if v.get("username")}
        emails = {v["email"] for v in values if v.get("email")}
        if names:
            self.taken_names |= set(
                db.scalars(
                    select(func.lower(User.username)).where(func.lower(User.username).in_(names))
                )  # fmt: skip
            )
        if emails:
            self.taken_emails |= set(db.scalars(select(User.email).where(User.email.in_(emails))))
        key = run.options.match
        keys = {v[key] if key == "email" else v[key].lower() for v in values if v.get(key)}
        if keys:
            column = User.email if key == "email" else func.lower(User.username)
            self.found_keys |= set(db.scalars(select(column).where(column.in_(keys), run.readable)))

    def _prefetch_managers(self, values: list[dict[str, Any]]) -> None:
        db, run = self.run.ctx.db, self.run
        wanted = {v["manager"].lower() for v in values if v.get("manager")} - set(self.managers)
        if wanted:
            found = {
                u.username.lower(): u
                for u in db.scalars(
                    select(User).where(func.lower(User.username).in_(wanted), run.readable)
                )
            }
            for name in wanted:
                self.managers[name] = found.get(name)

    # -- one row --

    def take(self, row: Row, p: _Parsed) -> bool:
        """Queue the row when it is surely a valid new user; False: it goes the other way
        (after the queue is written: the rows keep the file's order)."""
        fresh = self._fresh(row, p)
        if fresh is None:
            return False
        self.pending.append(fresh)
        self.taken_names.add(fresh.attrs["username"].lower())
        if fresh.attrs.get("email"):
            self.taken_emails.add(fresh.attrs["email"])
        return True

    def _fresh(self, row: Row, p: _Parsed) -> Fresh | None:  # noqa: C901 - a list of checks
        run, v = self.run, p.values
        if not self.open() or v.get("password"):
            return None
        key = run.options.match
        keyval = v[key] if key == "email" else v[key].lower()
        if keyval in self.found_keys:
            return None  # an update
        username, email = v.get("username"), v.get("email")
        if not username or not valid_username(username):
            return None
        if username.lower() in self.taken_names or (email and email in self.taken_emails):
            return None
        start, end = v.get("start_date"), v.get("end_date")
        if start and end and end < start:
            return None
        if v.get("email_verified") and not email:
            return None
        status = v.get("status")
        if status not in (None, "active", "inactive"):
            return None
        active = v.get("active") if status is None else status == "active"
        attrs: dict[str, Any] = {
            "username": username,
            "email": email,
            "email_verified": bool(v.get("email_verified") and email),
            "given_name": v.get("given_name"),
            "family_name": v.get("family_name"),
            "start_date": start,
            "end_date": end,
            "require_mfa": False,
            "must_change_password": False,
        }
        try:
            # Each field through the rule users.create applies to it.
            for name in ("given_name", "family_name"):
                if (
                    attrs[name] is not None
                    and manage_users._normalized(run.ctx, None, name, attrs[name]) != attrs[name]
                ):
                    return None
            for name in EXTRA_FIELDS:
                if v.get(name) is not None:
                    attrs[name] = manage_users._normalized(run.ctx, None, name, v[name])
        except IdPError:
            return None
        custom = {k: c for k, c in p.custom.items() if c is not None}
        if custom and any(f.required and n not in custom for n, f in run.fields.items()):
            return None  # setting some custom fields checks the required ones: refused there
        attrs["custom"] = custom
        if active is False:
            attrs["status"] = "inactive"
        placed = self._placement(v, attrs)
        if placed is None:
            return None
        groups = self._resolve(v.get("groups") or [], run.group, "users:groups:assign")
        roles = self._resolve(v.get("roles") or [], run.role, "users:roles:assign")
        if groups is None or roles is None:
            return None
        return Fresh(
            row,
            attrs,
            groups,
            roles,
            list(v.get("groups") or []),
            list(v.get("roles") or []),
            placed,
        )

    def _placement(self, v: dict[str, Any], attrs: dict[str, Any]) -> bool | None:
        """Fill in the organization (True: the user is placed); None: not sure, or refused."""
        run = self.run
        if not any(v.get(k) for k in ("company", "department", "position", "manager")):
            return False
        try:
            company = run.company(v["company"]) if v.get("company") else None
            if (v.get("department") or v.get("position")) and company is None:
                return None
            dept = run.department(company, v["department"]) if v.get("department") else None
            pos = run.position(company, v["position"]) if v.get("position") else None
        except IdPError:
            return None
        manager = None
        if v.get("manager"):
            manager = self.managers.get(v["manager"].lower())
            if manager is None or manager.username.lower() != v["manager"].lower():
                return None  # not found, created or renamed in this import: the other way
        company_id = company.id if company else None
        for thing in (dept, pos):
            if thing is not None:
                if company_id is not None and thing.company_id != company_id:
                    return None
                company_id = thing.company_id
        attrs.update(
            company_id=company_id,
            department_id=dept.id if dept else None,
            position_id=pos.id if pos else None,
            manager_id=manager.id if manager else None,
        )
        return any(
            attrs[k] is not None
            for k in ("company_id", "department_id", "position_id", "manager_id")
        )

    def _resolve(self, names: list[str], find, permission: str) -> list[Any] | None:
        ctx = self.run.ctx
        out = []
        for name in names:
            try:
                thing = find(name)
            except IdPError:
                return None
            if not ctx.allowed(permission):
                return None
            if not self._may_give(thing):
                return None
            out.append(thing)
        return out

    def _may_give(self, thing: Group | Role) -> bool:
        """Nobody hands out more than they hold: what ``users.create`` checks per user, here
        once per group or role (a new user is in no company yet, so only global grants count,
        whatever the user)."""
        key = ("group" if isinstance(thing, Group) else "role", thing.id)
        if key not in self._holds:
            ctx = self.run.ctx
            grants = (
                group_grants(ctx, thing.id)
                if isinstance(thing, Group)
                else role_grants(ctx.db, [thing.id], clock=ctx.svc.clock)
            )
            try:
                ctx.require_holds(grants)
                self._holds[key] = True
            except IdPError:
                self._holds[key] = False
        return self._holds[key]

    # -- writing the queued rows --

    def saw(self, p: _Parsed) -> None:
        """A row went the one-at-a-time way: what it names may exist now."""
        v = p.values
        if v.get("username"):
            self.taken_names.add(v["username"].lower())
            self.found_keys.add(v["username"].lower())
        if v.get("email"):
            self.taken_emails.add(v["email"])
            self.found_keys.add(v["email"])

    def write(self) -> list[tuple[Row, str | None]]:
        """Insert the queued users; (row, "created") each, or (row, None) for every row when
        the database refused the batch (they are then tried one at a time)."""
        batch, self.pending = self.pending, []
        if not batch:
            return []
        ctx = self.run.ctx
        db = ctx.db
        try:
            with db.begin_nested():
                users = [User(**f.attrs) for f in batch]
                db.add_all(users)
                db.flush()
                for f, user in zip(batch, users, strict=True):
                    db.add_all(GroupMember(group_id=g.id, user_id=user.id) for g in f.groups)
                    db.add_all(UserRole(user_id=user.id, role_id=r.id) for r in f.roles)
                    ctx.audit(
                        "user.created",
                        user.uuid,
                        username=user.username,
                        groups=f.group_names,
                        roles=f.role_names,
                        password_set=False,
                        email_verified=user.email_verified,
                        must_change_password=False,
                        require_mfa=False,
                    )
                    if f.placed:
                        audit_placed(ctx, user)
                db.flush()
        except (IntegrityError, IdPError):
            for f in batch:
                self.taken_names.discard(f.attrs["username"].lower())
                self.taken_emails.discard(f.attrs.get("email"))
            return [(f.row, None) for f in batch]
        for f in batch:
            key = self.run.options.match
            self.found_keys.add(f.attrs[key] if key == "email" else f.attrs[key].lower())
        return [(f.row, "created") for f in batch]
