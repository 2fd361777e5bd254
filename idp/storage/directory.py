"""The directory: users, groups and roles with the rules that keep them consistent.

Used by the CLI, the admin API and the login; every method works in the caller's session and
leaves committing to the caller (one unit of work per command or request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound, ValidationError
from .models import Group, GroupMember, Role, RolePermission, User, UserRole

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# module:feature:action, each part a name or "*"; shorter forms ("users:*") allowed.
PERMISSION_RE = re.compile(r"^(\*|[a-z][a-z0-9_-]*)(:(\*|[a-z][a-z0-9_-]*)){0,2}$")
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
    if not PERMISSION_RE.match(permission):
        raise ValidationError(
            f"permission {permission!r} is not of the form module:feature:action (parts may be '*')"
        )
    return permission


class Directory:
    def __init__(self, db: Session) -> None:
        self.db = db

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, new: NewUser, groups: list[str] = (), roles: list[str] = ()) -> User:
        if not USERNAME_RE.match(new.username):
            raise ValidationError(
                "username must be 1-150 letters, digits or . _ @ + - "
                "and start with a letter or digit"
            )
        email = new.email.strip().lower() if new.email else None
        if email and not EMAIL_RE.match(email):
            raise ValidationError(f"{new.email!r} is not an e-mail address")
        if new.start_date and new.end_date and new.end_date < new.start_date:
            raise ValidationError("end date is before start date")
        if self.db.scalar(select(User.id).where(func.lower(User.username) == new.username.lower())):
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
        user = self.db.scalar(select(User).where(func.lower(User.username) == username.lower()))
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
