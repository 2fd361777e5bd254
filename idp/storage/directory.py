"""The directory: users, groups and roles with the rules that keep them consistent.

Used by the CLI, the admin API and the login; every method works in the caller's session and
leaves committing to the caller (one unit of work per command or request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, delete, func, literal, select, update
from sqlalchemy.orm import Session

from ..clock import Clock
from ..core import rbac
from ..errors import Conflict, NotFound, ValidationError
from .models import (
    AccessRequest,
    ClientServiceRole,
    Company,
    CustomField,
    Department,
    Group,
    GroupMember,
    GroupRole,
    PermissionGroup,
    Position,
    Role,
    RoleComposite,
    RolePermission,
    RolePermissionGroup,
    User,
    UserRole,
)
from .rbac import Authorizer, bump_generation, group_role_ids, role_grants, subtree_range

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def valid_username(value: object) -> bool:
    """Whether ``value`` may be a username: USERNAME_RE over the whole string. ASCII only, so
    no look-alike of another script, compatibility form (full-width, ligatures) or invisible
    character can make two accounts look the same (RFC 8265 §3.3 is laxer). ``fullmatch``:
    with ``match``, "$" also matches before a final newline, which let a second "alice"
    (ending in a newline) in beside "alice"."""
    return isinstance(value, str) and USERNAME_RE.fullmatch(value) is not None


def username_key(value: str) -> str:
    """The one form usernames are compared in, for uniqueness and every lookup by a typed
    login: surrounding spaces dropped, lower case (PRECIS UsernameCaseMapped agrees on ASCII).
    No NFKC: a full-width or other look-alike spelling reaches no account."""
    return value.strip().lower()


# module:feature:action, each part a name or "*"; shorter forms ("users:*") allowed.
PERMISSION_RE = rbac.GRANT_RE
GROUP_NAME_RE = re.compile(r"^[^/\x00-\x1f]{1,200}$")


@dataclass
class NewUser:
    username: str
    email: str | None = None
    password_hash: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    require_mfa: bool = False
    must_change_password: bool = False


def validate_permission(permission: str) -> str:
    try:
        rbac.normalize_grant(permission)
    except rbac.PermissionError_ as exc:
        raise ValidationError(str(exc)) from None
    return permission


class RoleInUse(Conflict):
    """Deleting a role that is still used; ``usage`` says by whom."""

    def __init__(self, message: str, usage: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class Usage:
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    composites: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return {
            "users": self.users,
            "groups": self.groups,
            "included_by_roles": self.composites,
            "client_service_accounts": self.clients,
            "pending_requests": self.requests,
        }

    def __bool__(self) -> bool:
        return any(self.as_dict().values())


SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
FIELD_TYPES = ("string", "integer", "boolean", "date", "email", "url", "choice")
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or name.strip() != name:
        raise ValidationError(f"{what} must be 1-200 characters without surrounding spaces")
    if any(c < " " for c in name):
        raise ValidationError(f"{what} must not contain control characters")
    return name


def _check_names(names: dict[str, str] | None) -> dict[str, str]:
    """Translations keyed by language tag ({"de": "Vertrieb", "pt-BR": "Vendas"})."""
    out: dict[str, str] = {}
    for tag, value in (names or {}).items():
        if not LOCALE_RE.fullmatch(tag):
            raise ValidationError(f"{tag!r} is not a language tag")
        out[tag.replace("_", "-")] = _check_name(value, f"name ({tag})")
    return out


GROUP_PATH_MAX = 1000  # the column's length


def _check_group_path(path: str) -> None:
    if len(path) > GROUP_PATH_MAX:
        raise ValidationError(f"a group path must not be longer than {GROUP_PATH_MAX} characters")


def _check_field_rules(type: str, pattern: str | None, choices: list[str] | None) -> None:
    if type not in FIELD_TYPES:
        raise ValidationError(f"field type must be one of {FIELD_TYPES}")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise ValidationError(f"pattern is not a regular expression: {exc}") from None
        problem = _unportable(pattern)
        if problem:
            raise ValidationError(f"pattern is not a portable regular expression: {problem}")
    if type == "choice" and not choices:
        raise ValidationError("a choice field needs choices")


# A field's pattern is checked here with Python's re, and by forms and API clients with
# JavaScript's (ECMA-262, as JSON Schema's "regex" format and HTML's pattern attribute do). So a
# pattern must mean the same to both: the syntax they share, without Python's extensions
# ((?P<n>...), inline flags, possessive quantifiers, \A \Z) or JavaScript's unicode-mode errors
# (a lone { } or ], an escaped character that is not special).
_SYNTAX = frozenset("^$\\.*+?()[]{}|/")
_LETTER_ESCAPES = frozenset("dDwWsSbBfnrtvxu0123456789")
_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_COUNT = re.compile(r"\{\d+(?:,\d*)?\}")


def _unportable(pattern: str) -> str | None:
    i, n, in_class, quantified = 0, len(pattern), False, False
    while i < n:
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1 : i + 2]
            if not (e in _SYNTAX or e in _LETTER_ESCAPES or (in_class and e == "-")):
                return f"\\{e} is not an escape both Python and JavaScript know"
            i, quantified = i + 2, False
            continue
        if in_class:
            in_class = c != "]"
            i += 1
            continue
        if c in "*+?" or c == "{":
            if c == "{":
                count = _COUNT.match(pattern, i)
                if count is None:
                    return "a { must start a count such as {2} or {1,3}"
                end = count.end()
            else:
                end = i + 1
            if quantified:
                return "a quantifier cannot follow another (only ? may, for a lazy one)"
            i, quantified = end, True
            if pattern[i : i + 1] == "?":
                i += 1
            continue
        quantified = False
        if c in "}]":
            return f"a lone {c} must be escaped"
        if c == "[":
            if pattern[i + 1 : i + 2] == "]" or pattern[i + 1 : i + 3] == "^]":
                return "a ] first in a character class must be escaped"
            in_class = True
        elif c == "(" and pattern[i + 1 : i + 2] == "?":
            if not pattern.startswith(_GROUP_OPENERS, i):
                return "only (?: (?= (?! (?<= (?<! groups are portable"
        i += 1
    return None


class Directory:
    def __init__(self, db: Session, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, new: NewUser, groups: list[str] = (), roles: list[str] = ()) -> User:
        if not valid_username(new.username):
            raise ValidationError(
                "username must be 1-150 letters, digits or . _ @ + - "
                "and start with a letter or digit"
            )
        email = new.email.strip().lower() if new.email else None
        if email and not EMAIL_RE.fullmatch(email):
            raise ValidationError(f"{new.email!r} is not an e-mail address")
        if new.start_date and new.end_date and new.end_date < new.start_date:
            raise ValidationError("end date is before start date")
        if self.db.scalar(
            select(User.id).where(func.lower(User.username) == username_key(new.username))
        ):
            raise Conflict(f"user {new.username!r} already exists")
        if email and self.db.scalar(select(User.id).where(User.email == email)):
            raise Conflict(f"e-mail {email!r} is already used by another user")
        group_rows = [self.group_by_path(g) for g in groups]
        role_rows = [self.role_by_name(r) for r in roles]
        user = User(
            username=new.username,
            email=email,
            password_hash=new.password_hash,
            given_name=new.given_name,
            family_name=new.family_name,
            start_date=new.start_date,
            end_date=new.end_date,
            require_mfa=new.require_mfa,
            must_change_password=new.must_change_password,
            custom={},
        )
        self.db.add(user)
        self.db.flush()
        for g in group_rows:
            self.db.add(GroupMember(group_id=g.id, user_id=user.id))
        for r in role_rows:
            self.db.add(UserRole(user_id=user.id, role_id=r.id))
        self.db.flush()
        return user

    def user_by_username(self, username: str) -> User:
        user = self.db.scalar(
            select(User).where(func.lower(User.username) == username_key(username))
        )
        if user is None:
            raise NotFound(f"no user {username!r}")
        return user

    # --- groups --------------------------------------------------------------------------------

    def group_by_path(self, path: str) -> Group:
        """A group by its path ("staff/it") or, when unambiguous, by its bare name."""
        path = path.strip("/")
        group = self.db.scalar(select(Group).where(Group.path == path))
        if group is None and "/" not in path:
            found = self.db.scalars(select(Group).where(Group.name == path)).all()
            if len(found) == 1:
                group = found[0]
            elif len(found) > 1:
                raise Conflict(f"several groups are named {path!r}; give the full path")
        if group is None:
            raise NotFound(f"no group {path!r}")
        return group

    def create_group(
        self, name: str, parent: str | None = None, description: str | None = None
    ) -> Group:
        if not GROUP_NAME_RE.match(name) or name.strip() != name:
            raise ValidationError(
                "group name must be 1-200 characters without '/' or "
                "control characters, and no surrounding spaces"
            )
        parent_row = self.group_by_path(parent) if parent else None
        path = f"{parent_row.path}/{name}" if parent_row else name
        _check_group_path(path)
        if self.db.scalar(select(Group.id).where(Group.path == path)):
            raise Conflict(f"group {path!r} already exists")
        group = Group(
            name=name,
            parent_id=parent_row.id if parent_row else None,
            path=path,
            description=description,
        )
        self.db.add(group)
        self.db.flush()
        return group

    # --- roles ---------------------------------------------------------------------------------

    def role_by_name(self, name: str, client_id: str | None = None) -> Role:
        role = self.db.scalar(
            select(Role).where(Role.name == name, Role.client_id.is_(None))
            if client_id is None
            else select(Role).where(Role.name == name, Role.client_id == client_id)
        )
        if role is None:
            raise NotFound(f"no role {name!r}")
        return role

    def create_role(
        self,
        name: str,
        permissions: list[str] = (),
        client_id: str | None = None,
        description: str | None = None,
        template: str | None = None,
    ) -> Role:
        if not name or len(name) > 200 or name.strip() != name:
            raise ValidationError("role name must be 1-200 characters without surrounding spaces")
        perms = sorted({validate_permission(p) for p in permissions})
        exists = select(Role.id).where(Role.name == name)
        exists = exists.where(
            Role.client_id.is_(None) if client_id is None else Role.client_id == client_id
        )
        if self.db.scalar(exists):
            raise Conflict(f"role {name!r} already exists")
        role = Role(name=name, client_id=client_id, description=description, template=template)
        self.db.add(role)
        self.db.flush()
        for p in perms:
            self.db.add(RolePermission(role_id=role.id, permission=p))
        self.db.flush()
        return role

    def role_ref(self, ref: str) -> Role:
        """A global role by name, or a client role as ``client_id/name``."""
        if "/" in ref:
            client_id, _, name = ref.partition("/")
            try:
                return self.role_by_name(name, client_id)
            except NotFound:
                pass  # a global role whose name contains "/"
        return self.role_by_name(ref)

    def add_permission(self, role: Role, permission: str) -> bool:
        validate_permission(permission)
        if self.db.get(RolePermission, (role.id, permission)) is not None:
            return False
        self.db.add(RolePermission(role_id=role.id, permission=permission))
        self.db.flush()
        return True

    def remove_permission(self, role: Role, permission: str) -> bool:
        row = self.db.get(RolePermission, (role.id, permission))
        if row is None:
            return False
        self.db.delete(row)
        self.db.flush()
        return True

    def role_permissions(self, role: Role) -> list[str]:
        return sorted(
            self.db.scalars(
                select(RolePermission.permission).where(RolePermission.role_id == role.id)
            )
        )

    def _composite_edges(self) -> dict[int, list[int]]:
        edges: dict[int, list[int]] = {}
        for parent, child in self.db.execute(select(RoleComposite.role_id, RoleComposite.child_id)):
            edges.setdefault(parent, []).append(child)
        return edges

    def add_composite(self, role: Role, child: Role) -> bool:
        """``role`` now includes ``child``; refused when ``child`` already includes ``role``."""
        if self.db.get(RoleComposite, (role.id, child.id)) is not None:
            return False
        names = {r.id: r.name for r in self.db.execute(select(Role.id, Role.name))}
        try:
            rbac.check_new_edge(role.id, child.id, self._composite_edges(), names)
        except rbac.CycleError as exc:
            raise Conflict(f"role composition refused: {exc}") from None
        self.db.add(RoleComposite(role_id=role.id, child_id=child.id))
        self.db.flush()
        return True

    def remove_composite(self, role: Role, child: Role) -> bool:
        row = self.db.get(RoleComposite, (role.id, child.id))
        if row is None:
            return False
        self.db.delete(row)
        self.db.flush()
        return True

    def create_permission_group(
        self, name: str, permissions: list[str], description: str | None = None
    ) -> PermissionGroup:
        _check_name(name, "permission group name")
        perms = sorted({validate_permission(p) for p in permissions})
        if self.db.scalar(select(PermissionGroup.id).where(PermissionGroup.name == name)):
            raise Conflict(f"permission group {name!r} already exists")
        pg = PermissionGroup(name=name, permissions=perms, description=description)
        self.db.add(pg)
        self.db.flush()
        return pg

    def permission_group(self, name: str) -> PermissionGroup:
        pg = self.db.scalar(select(PermissionGroup).where(PermissionGroup.name == name))
        if pg is None:
            raise NotFound(f"no permission group {name!r}")
        return pg

    def add_permission_group(self, role: Role, pg: PermissionGroup) -> bool:
        if self.db.get(RolePermissionGroup, (role.id, pg.id)) is not None:
            return False
        self.db.add(RolePermissionGroup(role_id=role.id, permission_group_id=pg.id))
        self.db.flush()
        return True

    def rename_permission_group(self, pg: PermissionGroup, name: str) -> PermissionGroup:
        _check_name(name, "permission group name")
        if self.db.scalar(
            select(PermissionGroup.id).where(
                PermissionGroup.name == name, PermissionGroup.id != pg.id
            )
        ):
            raise Conflict(f"permission group {name!r} already exists")
        pg.name = name
        self.db.flush()
        return pg

    def permission_group_roles(self, pg: PermissionGroup) -> list[Role]:
        """The roles that include the permission group."""
        return list(
            self.db.scalars(
                select(Role)
                .join(RolePermissionGroup, RolePermissionGroup.role_id == Role.id)
                .where(RolePermissionGroup.permission_group_id == pg.id)
                .order_by(Role.name, Role.id)
            )
        )

    def role_usage(self, role: Role) -> Usage:
        db = self.db
        usage = Usage()
        usage.users = sorted(
            db.scalars(
                select(User.username)
                .join(UserRole, UserRole.user_id == User.id)
                .where(UserRole.role_id == role.id)
                .distinct()
            )
        )
        usage.groups = sorted(
            db.scalars(
                select(Group.path)
                .join(GroupRole, GroupRole.group_id == Group.id)
                .where(GroupRole.role_id == role.id)
            )
        )
        usage.composites = sorted(
            db.scalars(
                select(Role.name)
                .join(RoleComposite, RoleComposite.role_id == Role.id)
                .where(RoleComposite.child_id == role.id)
            )
        )
        usage.clients = sorted(
            db.scalars(
                select(ClientServiceRole.client_id).where(ClientServiceRole.role_id == role.id)
            )
        )
        usage.requests = sorted(
            db.scalars(
                select(AccessRequest.id).where(
                    AccessRequest.kind == "role",
                    AccessRequest.target_id == role.id,
                    AccessRequest.status == "pending",
                )
            )
        )
        return usage

    def delete_role(self, role: Role, force: bool = False) -> Usage:
        """Delete a role. While anything uses it the deletion is refused with what uses it,
        unless ``force`` (then the assignments go with it)."""
        usage = self.role_usage(role)
        if usage and not force:
            parts = [f"{k}: {', '.join(map(str, v))}" for k, v in usage.as_dict().items() if v]
            raise RoleInUse(f"role {role.name!r} is in use ({'; '.join(parts)})", usage.as_dict())
        if usage.requests:
            self.db.execute(
                update(AccessRequest)
                .where(AccessRequest.id.in_(usage.requests))
                .values(status="cancelled")
            )
        self.db.delete(role)
        self.db.flush()
        return usage

    # --- assignments ---------------------------------------------------------------------------

    def _future(self, expires_at: datetime | None) -> datetime | None:
        if expires_at is None:
            return None
        if expires_at.tzinfo is None:
            raise ValidationError("expiry must carry a time zone")
        if expires_at <= self.clock.utcnow():
            raise ValidationError("expiry is in the past")
        return expires_at

    def assign_role(
        self,
        user: User,
        role: Role,
        *,
        scope_company: Company | None = None,
        scope_department: Department | None = None,
        expires_at: datetime | None = None,
        granted_by: int | None = None,
    ) -> UserRole:
        """Give ``user`` the role, everywhere or only over a company / department subtree
        (delegated administration), permanently or until ``expires_at``. Assigning again
        updates the expiry."""
        if scope_company is not None and scope_department is not None:
            raise ValidationError("scope is a company or a department, not both")
        if role.client_id is not None and (scope_company or scope_department):
            raise ValidationError("client roles are not scoped")
        expires_at = self._future(expires_at)
        existing = self.db.scalar(
            select(UserRole).where(
                UserRole.user_id == user.id,
                UserRole.role_id == role.id,
                _is(UserRole.scope_company_id, scope_company.id if scope_company else None),
                _is(
                    UserRole.scope_department_id,
                    scope_department.id if scope_department else None,
                ),
            )
        )
        if existing is not None:
            existing.expires_at = expires_at
            existing.granted_by = granted_by
            self.db.flush()
            return existing
        row = UserRole(
            user_id=user.id,
            role_id=role.id,
            scope_company_id=scope_company.id if scope_company else None,
            scope_department_id=scope_department.id if scope_department else None,
            expires_at=expires_at,
            granted_by=granted_by,
        )
        self.db.add(row)
        self.db.flush()
        return row

    def unassign_role(self, user: User, role: Role) -> int:
        """Remove every assignment of the role to the user (all scopes); how many went."""
        rows = self.db.scalars(
            select(UserRole).where(UserRole.user_id == user.id, UserRole.role_id == role.id)
        ).all()
        for r in rows:
            self.db.delete(r)
        self.db.flush()
        return len(rows)

    def add_member(
        self,
        group: Group,
        user: User,
        *,
        expires_at: datetime | None = None,
        granted_by: int | None = None,
    ) -> GroupMember:
        expires_at = self._future(expires_at)
        row = self.db.get(GroupMember, (group.id, user.id))
        if row is not None:
            row.expires_at = expires_at
            row.granted_by = granted_by
        else:
            row = GroupMember(
                group_id=group.id, user_id=user.id, expires_at=expires_at, granted_by=granted_by
            )
            self.db.add(row)
        self.db.flush()
        return row

    def remove_member(self, group: Group, user: User) -> bool:
        row = self.db.get(GroupMember, (group.id, user.id))
        if row is None:
            return False
        self.db.delete(row)
        self.db.flush()
        return True

    def assign_group_role(self, group: Group, role: Role) -> bool:
        if self.db.get(GroupRole, (group.id, role.id)) is not None:
            return False
        self.db.add(GroupRole(group_id=group.id, role_id=role.id))
        self.db.flush()
        return True

    def unassign_group_role(self, group: Group, role: Role) -> bool:
        row = self.db.get(GroupRole, (group.id, role.id))
        if row is None:
            return False
        self.db.delete(row)
        self.db.flush()
        return True

    def purge_expired(self) -> int:
        """Delete grants whose expiry passed (they already grant nothing; this tidies up)."""
        now = self.clock.utcnow()
        n = self.db.execute(
            delete(UserRole).where(UserRole.expires_at.is_not(None), UserRole.expires_at <= now)
        ).rowcount
        n += self.db.execute(
            delete(GroupMember).where(
                GroupMember.expires_at.is_not(None), GroupMember.expires_at <= now
            )
        ).rowcount
        return n

    # --- nested groups -------------------------------------------------------------------------

    def group_children(self, group: Group) -> list[Group]:
        return list(
            self.db.scalars(select(Group).where(Group.parent_id == group.id).order_by(Group.name))
        )

    def move_group(self, group: Group, new_parent: Group | None) -> Group:
        """Re-parent a group (None = top level). Moving a group under itself or one of its
        own subgroups would make a cycle and is refused."""
        if new_parent is not None:
            if new_parent.id == group.id or new_parent.path.startswith(group.path + "/"):
                raise Conflict(
                    f"moving group {group.path!r} under {new_parent.path!r} would create a cycle"
                )
        new_path = f"{new_parent.path}/{group.name}" if new_parent else group.name
        if new_path == group.path:
            return group
        self._check_subtree_paths(group.path, new_path)
        if self.db.scalar(select(Group.id).where(Group.path == new_path)):
            raise Conflict(f"group {new_path!r} already exists")
        self._repath_groups(group.path, new_path)
        group.parent_id = new_parent.id if new_parent else None
        self.db.flush()
        self.db.refresh(group)
        return group

    def rename_group(self, group: Group, name: str) -> Group:
        if not GROUP_NAME_RE.match(name) or name.strip() != name:
            raise ValidationError("group name must not contain '/' or control characters")
        parent, _, _ = group.path.rpartition("/")
        new_path = f"{parent}/{name}" if parent else name
        self._check_subtree_paths(group.path, new_path)
        if new_path != group.path and self.db.scalar(
            select(Group.id).where(Group.path == new_path)
        ):
            raise Conflict(f"group {new_path!r} already exists")
        self._repath_groups(group.path, new_path)
        group.name = name
        self.db.flush()
        self.db.refresh(group)
        return group

    def _check_subtree_paths(self, old: str, new: str) -> None:
        """The group's paths after a move or rename still fit the column."""
        longest = self.db.scalar(
            select(func.max(func.length(Group.path))).where(
                (Group.path == old) | Group.path.startswith(old + "/", autoescape=True)
            )
        )
        _check_group_path("x" * ((longest or len(old)) - len(old) + len(new)))

    def _repath_groups(self, old: str, new: str) -> None:
        # The group and its subtree: "old" itself and every "old/..." path.
        self.db.execute(
            update(Group)
            .where((Group.path == old) | (Group.path.startswith(old + "/", autoescape=True)))
            .values(path=literal(new) + func.substr(Group.path, len(old) + 1))
            .execution_options(synchronize_session=False)
        )

    def delete_group(self, group: Group) -> None:
        if self.db.scalar(select(Group.id).where(Group.parent_id == group.id).limit(1)):
            raise Conflict(f"group {group.path!r} has subgroups; move or delete them first")
        self.db.execute(
            update(AccessRequest)
            .where(
                AccessRequest.kind == "group",
                AccessRequest.target_id == group.id,
                AccessRequest.status == "pending",
            )
            .values(status="cancelled")
        )
        self.db.delete(group)
        self.db.flush()

    def group_members(self, group: Group, *, include_subgroups: bool = False) -> list[User]:
        cond = GroupMember.group_id == group.id
        if include_subgroups:
            sub = select(Group.id).where(
                (Group.id == group.id) | Group.path.startswith(group.path + "/", autoescape=True)
            )
            cond = GroupMember.group_id.in_(sub)
        return list(
            self.db.scalars(
                select(User)
                .join(GroupMember, GroupMember.user_id == User.id)
                .where(cond)
                .distinct()
                .order_by(User.username)
            )
        )

    # --- organization --------------------------------------------------------------------------

    def create_company(self, slug: str, name: str, names: dict[str, str] | None = None) -> Company:
        if not SLUG_RE.match(slug):
            raise ValidationError("company slug must be 1-64 lowercase letters, digits or '-'")
        _check_name(name, "company name")
        if self.db.scalar(select(Company.id).where(Company.slug == slug)):
            raise Conflict(f"company {slug!r} already exists")
        company = Company(slug=slug, name=name, names=_check_names(names))
        self.db.add(company)
        self.db.flush()
        return company

    def company(self, ref: str | int) -> Company:
        number = id_ref(ref)
        row = (
            (self.db.get(Company, number) if number is not None else None)
            if str(ref).isascii() and str(ref).isdigit()
            else self.db.scalar(select(Company).where(Company.slug == ref))
        )
        if row is None:
            raise NotFound(f"no company {ref!r}")
        return row

    def update_company(
        self, company: Company, *, name: str | None = None, names: dict[str, str] | None = None
    ) -> Company:
        if name is not None:
            company.name = _check_name(name, "company name")
        if names is not None:
            company.names = _check_names(names)
        self.db.flush()
        return company

    def company_contents(self, company: Company) -> dict[str, int]:
        """What still belongs to the company (a company is deleted only when all are 0)."""
        counts = {
            "users": select(func.count(User.id)).where(User.company_id == company.id),
            "departments": select(func.count(Department.id)).where(
                Department.company_id == company.id
            ),
            "positions": select(func.count(Position.id)).where(Position.company_id == company.id),
            "groups": select(func.count(Group.id)).where(Group.company_id == company.id),
            "scoped_role_assignments": select(func.count(UserRole.id)).where(
                UserRole.scope_company_id == company.id
            ),
        }
        return {k: int(self.db.scalar(q) or 0) for k, q in counts.items()}

    def delete_company(self, company: Company) -> None:
        """Delete an empty company; refused while anything belongs to it."""
        left = {k: n for k, n in self.company_contents(company).items() if n}
        if left:
            what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in left.items())
            raise Conflict(f"company {company.slug!r} is not empty ({what})")
        self.db.delete(company)
        self.db.flush()

    def create_department(
        self,
        company: Company,
        name: str,
        parent: Department | None = None,
        names: dict[str, str] | None = None,
    ) -> Department:
        _check_name(name, "department name")
        if parent is not None and parent.company_id != company.id:
            raise ValidationError("a department's parent must be in the same company")
        if self.db.scalar(
            select(Department.id).where(
                Department.company_id == company.id,
                _is(Department.parent_id, parent.id if parent else None),
                Department.name == name,
            )
        ):
            raise Conflict(f"department {name!r} already exists there")
        dept = Department(
            company_id=company.id,
            parent_id=parent.id if parent else None,
            name=name,
            names=_check_names(names),
            path="",
        )
        self.db.add(dept)
        self.db.flush()
        dept.path = f"{parent.path if parent else '/'}{dept.id}/"
        self.db.flush()
        return dept

    def department(self, ref: str | int) -> Department:
        """By id, or by ``company-slug/Name/Sub name``."""
        if str(ref).isascii() and str(ref).isdigit():
            number = id_ref(ref)
            row = self.db.get(Department, number) if number is not None else None
            if row is None:
                raise NotFound(f"no department {ref!r}")
            return row
        slug, _, rest = str(ref).strip("/").partition("/")
        company = self.company(slug)
        row = None
        for part in [p for p in rest.split("/") if p]:
            row = self.db.scalar(
                select(Department).where(
                    Department.company_id == company.id,
                    _is(Department.parent_id, row.id if row else None),
                    Department.name == part,
                )
            )
            if row is None:
                break
        if row is None:
            raise NotFound(f"no department {ref!r}")
        return row

    def move_department(self, dept: Department, new_parent: Department | None) -> Department:
        """Re-parent a department with its subtree; one UPDATE rewrites the subtree's paths.
        Moving it under itself or its own subtree would make a cycle and is refused."""
        if new_parent is not None:
            if new_parent.company_id != dept.company_id:
                raise ValidationError("departments move within their company only")
            if new_parent.path.startswith(dept.path):
                raise Conflict(
                    f"moving department {dept.name!r} under {new_parent.name!r} would create "
                    "a cycle (the new parent is inside its subtree)"
                )
        if self.db.scalar(
            select(Department.id).where(
                Department.company_id == dept.company_id,
                _is(Department.parent_id, new_parent.id if new_parent else None),
                Department.name == dept.name,
                Department.id != dept.id,
            )
        ):
            raise Conflict(f"department {dept.name!r} already exists there")
        old = dept.path
        new = f"{new_parent.path if new_parent else '/'}{dept.id}/"
        lo, hi = subtree_range(old)
        self.db.execute(
            update(Department)
            .where(Department.path >= lo, Department.path < hi)
            .values(path=literal(new) + func.substr(Department.path, len(old) + 1))
            .execution_options(synchronize_session=False)
        )
        dept.parent_id = new_parent.id if new_parent else None
        self.db.flush()
        self.db.refresh(dept)
        # Scoped role assignments resolve through paths: cached decisions must not outlive this.
        bump_generation(self.db)
        return dept

    def subtree_ids(self, dept: Department) -> Select:
        lo, hi = subtree_range(dept.path)
        return select(Department.id).where(Department.path >= lo, Department.path < hi)

    def subtree_users(self, dept: Department, *, limit: int | None = None, offset: int = 0):
        """Users of the department and every department below it (an index range scan)."""
        lo, hi = subtree_range(dept.path)
        stmt = (
            select(User)
            .join(Department, Department.id == User.department_id)
            .where(Department.path >= lo, Department.path < hi)
            .order_by(User.username)
            .offset(offset)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(self.db.scalars(stmt))

    def subtree_user_count(self, dept: Department) -> int:
        lo, hi = subtree_range(dept.path)
        return int(
            self.db.scalar(
                select(func.count(User.id))
                .join(Department, Department.id == User.department_id)
                .where(Department.path >= lo, Department.path < hi)
            )
        )

    def department_chain(self, dept: Department) -> list[Department]:
        """Root first, down to ``dept``, from the ids in its path (one query)."""
        ids = [int(x) for x in dept.path.strip("/").split("/") if x]
        rows = {d.id: d for d in self.db.scalars(select(Department).where(Department.id.in_(ids)))}
        return [rows[i] for i in ids if i in rows]

    def rename_department(
        self, dept: Department, *, name: str | None = None, names: dict[str, str] | None = None
    ) -> Department:
        if name is not None and name != dept.name:
            _check_name(name, "department name")
            if self.db.scalar(
                select(Department.id).where(
                    Department.company_id == dept.company_id,
                    _is(Department.parent_id, dept.parent_id),
                    Department.name == name,
                    Department.id != dept.id,
                )
            ):
                raise Conflict(f"department {name!r} already exists there")
            dept.name = name
        if names is not None:
            dept.names = _check_names(names)
        self.db.flush()
        return dept

    def delete_department(self, dept: Department) -> None:
        """Delete an empty department: no sub-departments, no users, and no role assignments
        scoped to it (deleting it would silently take those delegated grants away)."""
        if self.db.scalar(select(Department.id).where(Department.parent_id == dept.id).limit(1)):
            raise Conflict(f"department {dept.name!r} has sub-departments")
        if self.db.scalar(select(User.id).where(User.department_id == dept.id).limit(1)):
            raise Conflict(f"department {dept.name!r} still has users")
        if self.db.scalar(
            select(UserRole.id).where(UserRole.scope_department_id == dept.id).limit(1)
        ):
            raise Conflict(f"department {dept.name!r} still scopes role assignments")
        self.db.delete(dept)
        self.db.flush()

    def create_position(
        self, company: Company, name: str, names: dict[str, str] | None = None
    ) -> Position:
        _check_name(name, "position name")
        if self.db.scalar(
            select(Position.id).where(Position.company_id == company.id, Position.name == name)
        ):
            raise Conflict(f"position {name!r} already exists in {company.slug}")
        pos = Position(company_id=company.id, name=name, names=_check_names(names))
        self.db.add(pos)
        self.db.flush()
        return pos

    def position(self, company: Company, name: str) -> Position:
        row = self.db.scalar(
            select(Position).where(Position.company_id == company.id, Position.name == name)
        )
        if row is None:
            raise NotFound(f"no position {name!r} in {company.slug}")
        return row

    def rename_position(
        self, pos: Position, *, name: str | None = None, names: dict[str, str] | None = None
    ) -> Position:
        if name is not None and name != pos.name:
            _check_name(name, "position name")
            if self.db.scalar(
                select(Position.id).where(
                    Position.company_id == pos.company_id, Position.name == name
                )
            ):
                raise Conflict(f"position {name!r} already exists in this company")
            pos.name = name
        if names is not None:
            pos.names = _check_names(names)
        self.db.flush()
        return pos

    def delete_position(self, pos: Position) -> None:
        held = int(
            self.db.scalar(select(func.count(User.id)).where(User.position_id == pos.id)) or 0
        )
        if held:
            raise Conflict(f"position {pos.name!r} is held by {held} user(s)")
        self.db.delete(pos)
        self.db.flush()

    def place_user(
        self,
        user: User,
        *,
        company: Company | None = None,
        department: Department | None = None,
        position: Position | None = None,
        manager: User | None = None,
    ) -> User:
        """Put a user in the organization; the department and position decide the company."""
        company_id = company.id if company else None
        for thing in (department, position):
            if thing is not None:
                if company_id is not None and thing.company_id != company_id:
                    raise ValidationError("department, position and company do not match")
                company_id = thing.company_id
        if manager is not None and manager.id == user.id:
            raise ValidationError("a user cannot be their own manager")
        if manager is not None:
            seen, m = {user.id}, manager
            while m is not None:
                if m.id in seen:
                    raise Conflict("that manager chain would loop back to this user")
                seen.add(m.id)
                m = self.db.get(User, m.manager_id) if m.manager_id else None
        user.company_id = company_id
        user.department_id = department.id if department else None
        user.position_id = position.id if position else None
        user.manager_id = manager.id if manager else None
        self.db.flush()
        return user

    # --- custom fields -------------------------------------------------------------------------

    def define_field(
        self,
        name: str,
        label: str,
        *,
        type: str = "string",
        required: bool = False,
        pattern: str | None = None,
        choices: list[str] | None = None,
        visible_to_user: bool = True,
        editable_by_user: bool = False,
        labels: dict[str, str] | None = None,
    ) -> CustomField:
        if not FIELD_NAME_RE.match(name):
            raise ValidationError("field name must be lowercase letters, digits and _")
        _check_field_rules(type, pattern, choices)
        if self.db.scalar(select(CustomField.id).where(CustomField.name == name)):
            raise Conflict(f"custom field {name!r} already exists")
        row = CustomField(
            name=name,
            label=_check_name(label, "label"),
            labels=_check_names(labels),
            type=type,
            required=required,
            pattern=pattern,
            choices=list(choices or []),
            visible_to_user=visible_to_user,
            editable_by_user=editable_by_user,
        )
        self.db.add(row)
        self.db.flush()
        return row

    def fields(self) -> list[CustomField]:
        return list(
            self.db.scalars(select(CustomField).order_by(CustomField.sort_order, CustomField.name))
        )

    def update_field(self, f: CustomField, changes: dict[str, Any]) -> CustomField:
        """Change a definition (``changes``: label, labels, required, pattern, choices,
        visible_to_user, editable_by_user, sort_order). Name and type stay: values already
        stored under the name were coerced to the type."""
        unknown = set(changes) - {
            "label",
            "labels",
            "required",
            "pattern",
            "choices",
            "visible_to_user",
            "editable_by_user",
            "sort_order",
        }
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]} cannot be changed")
        pattern = changes.get("pattern", f.pattern)
        choices = changes.get("choices", f.choices)
        _check_field_rules(f.type, pattern, choices)
        if "label" in changes:
            f.label = _check_name(changes["label"], "label")
        if "labels" in changes:
            f.labels = _check_names(changes["labels"])
        if "choices" in changes:
            f.choices = list(choices or [])
        if "pattern" in changes:
            f.pattern = pattern
        for flag in ("required", "visible_to_user", "editable_by_user", "sort_order"):
            if flag in changes:
                setattr(f, flag, changes[flag])
        self.db.flush()
        return f

    def field_usage(self, f: CustomField) -> int:
        """How many users hold a value for the field."""
        return int(
            self.db.scalar(
                select(func.count(User.id)).where(User.custom[f.name].as_string().is_not(None))
            )
            or 0
        )

    def delete_field(self, f: CustomField, *, force: bool = False) -> int:
        """Delete a definition. While users hold values for it the deletion is refused,
        unless ``force``: then the values go too (how many users had one is returned)."""
        used = self.field_usage(f)
        if used and not force:
            raise Conflict(f"{used} user(s) hold a value for custom field {f.name!r}")
        if used:
            for user in self.db.scalars(
                select(User).where(User.custom[f.name].as_string().is_not(None))
            ):
                user.custom = {k: v for k, v in (user.custom or {}).items() if k != f.name}
        self.db.delete(f)
        self.db.flush()
        return used

    def set_custom(self, user: User, values: dict[str, Any], *, by_user: bool = False) -> User:
        """Validate ``values`` against the schema and merge them into the user's custom
        fields (None clears a field). ``by_user``: only fields the user may edit."""
        schema = {f.name: f for f in self.fields()}
        merged = dict(user.custom or {})
        for name, value in values.items():
            f = schema.get(name)
            if f is None:
                raise ValidationError(f"there is no custom field {name!r}")
            if by_user and not (f.editable_by_user and f.visible_to_user):
                raise ValidationError(f"{f.label} cannot be changed here")
            if value is None or value == "":
                merged.pop(name, None)
            else:
                merged[name] = coerce_field(f, value)
        missing = [f.label for f in schema.values() if f.required and merged.get(f.name) is None]
        if missing:
            raise ValidationError(f"required: {', '.join(missing)}")
        user.custom = merged
        self.db.flush()
        return user

    # --- temporary access with approval --------------------------------------------------------

    def request_access(
        self,
        user: User,
        *,
        role: Role | None = None,
        group: Group | None = None,
        expires_at: datetime | None = None,
        reason: str | None = None,
        requested_by: User | None = None,
    ) -> AccessRequest:
        if (role is None) == (group is None):
            raise ValidationError("request a role or a group")
        expires_at = self._future(expires_at)
        kind, target = ("role", role.id) if role is not None else ("group", group.id)
        if self.db.scalar(
            select(AccessRequest.id).where(
                AccessRequest.user_id == user.id,
                AccessRequest.kind == kind,
                AccessRequest.target_id == target,
                AccessRequest.status == "pending",
            )
        ):
            raise Conflict("the same request is already waiting for a decision")
        req = AccessRequest(
            user_id=user.id,
            kind=kind,
            target_id=target,
            expires_at=expires_at,
            reason=(reason or "")[:2000] or None,
            requested_by=(requested_by or user).id,
        )
        self.db.add(req)
        self.db.flush()
        return req

    def may_decide(self, req: AccessRequest, approver: User, store: Any) -> bool:
        """The user's manager, or someone allowed users:access:approve over the user (and, for
        a role, allowed to grant it). Nobody decides their own request. Either way what is
        approved is held: its permissions everywhere (it is assigned everywhere), and the role
        itself (the group's roles) unless the approver holds users:access:approve unscoped —
        a delegated approver, and a manager, hand out only roles they have."""
        if approver.id in (req.user_id, req.requested_by) or approver.status != "active":
            return False
        user = self.db.get(User, req.user_id)
        manager = user is not None and user.manager_id == approver.id
        auth = Authorizer(self.db, store, self.clock)
        if not manager and not auth.authorize(approver.id, "users:access:approve", req.user_id):
            return False
        if req.kind == "role":
            role_ids = [req.target_id]
            if not manager and not auth.can_grant_role(approver.id, req.target_id, req.user_id):
                return False
        else:
            role_ids = group_role_ids(self.db, req.target_id) or []
            if not manager and not auth.can_grant_group(approver.id, req.target_id, req.user_id):
                return False
        # Approved, the role (the membership's roles) applies everywhere: a grant held over
        # the user's company only does not reach the rest.
        if not auth.holds_within(approver.id, role_grants(self.db, role_ids, clock=self.clock)):
            return False
        return not auth.may_give_roles(approver.id, role_ids, req.user_id, "users:access:approve")

    def decide(
        self, req: AccessRequest, approver: User, approve: bool, store: Any
    ) -> AccessRequest:
        if req.status != "pending":
            raise Conflict(f"request {req.id} is already {req.status}")
        if not self.may_decide(req, approver, store):
            raise ValidationError("you may not decide this request")
        user = self.db.get(User, req.user_id)
        if approve:
            if req.expires_at is not None and req.expires_at <= self.clock.utcnow():
                raise ValidationError("the requested access would already have ended")
            if req.kind == "role":
                role = self.db.get(Role, req.target_id)
                if role is None:
                    raise NotFound("the requested role no longer exists")
                self.assign_role(user, role, expires_at=req.expires_at, granted_by=approver.id)
            else:
                group = self.db.get(Group, req.target_id)
                if group is None:
                    raise NotFound("the requested group no longer exists")
                self.add_member(group, user, expires_at=req.expires_at, granted_by=approver.id)
        req.status = "approved" if approve else "rejected"
        req.decided_by = approver.id
        req.decided_at = self.clock.utcnow()
        self.db.flush()
        return req


def id_ref(ref: str | int) -> int | None:
    """A reference that is a row id ("42"), or None: Unicode digits ("²") and numbers beyond
    a 64-bit integer are no id (and must not reach the database as one)."""
    text = str(ref)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _is(column, value):
    """``column = value`` that also matches NULL when value is None."""
    return column.is_(None) if value is None else column == value


def coerce_field(f: CustomField, value: Any) -> Any:
    """A custom field value in its schema type, or ValidationError."""
    label = f.label
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ValidationError(f"{label} must be true or false")
    if f.type == "integer":
        if isinstance(value, bool):
            raise ValidationError(f"{label} must be a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValidationError(f"{label} must be a whole number") from None
        if f.pattern and not re.fullmatch(f.pattern, str(number)):
            raise ValidationError(f"{label} does not have the expected form")
        return number
    text = str(value).strip()
    if len(text) > 2000:
        raise ValidationError(f"{label} is longer than 2000 characters")
    if f.type == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValidationError(f"{label} must be a date YYYY-MM-DD") from None
    if f.type == "email" and not EMAIL_RE.fullmatch(text):
        raise ValidationError(f"{label} must be an e-mail address")
    if f.type == "url" and not URL_RE.match(text):
        raise ValidationError(f"{label} must be an http(s) URL")
    if f.type == "choice" and text not in (f.choices or []):
        raise ValidationError(f"{label} must be one of {', '.join(f.choices or [])}")
    if f.pattern and not re.fullmatch(f.pattern, text):
        raise ValidationError(f"{label} does not have the expected form")
    return text
