"""Directory users in our database: just-in-time provisioning at login, refresh, and sync.

A directory user is a ``User`` row with ``source`` "ldap", found again by its immutable id
(entryUUID / objectGUID), else its DN, else its username. Directory groups become local groups
(remembered in ``ldap_groups``) whose memberships the directory owns; with ``groups_as_roles``
each such group grants the role of the same name, and ``group_role_map`` adds more roles, both
as ``group_roles`` rows so every role mechanism (claims, RBAC) sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import IdPError, NotFound, ValidationError
from ..settings import Section
from ..storage.directory import EMAIL_RE, Directory, NewUser, username_key, valid_username
from ..storage.models import Group, GroupMember, GroupRole, Role, User
from ..storage.models_ldap import LdapAccount, LdapGroup, LdapSyncState
from .ldap import DirectoryUnavailable, DirectoryUser, DirGroup, LdapConnector, ldap_connector

if TYPE_CHECKING:  # the container's type only: it is built above this layer
    from ..services import Services

log = logging.getLogger(__name__)

SYNC_STATE = "default"
# Users written per transaction during a sync (bounded memory, and progress survives a crash).
SYNC_BATCH = 200


class SyncError(IdPError):
    """A sync that must not run (or stopped); the message is one readable line."""


@dataclass
class ProvisionOutcome:
    user_id: int | None
    # created | updated | unchanged | skipped (disabled, never seen) | conflict
    change: str
    message: str | None = None


@dataclass
class SyncReport:
    mode: str
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    skipped: int = 0
    conflicts: list[str] = field(default_factory=list)
    high_water: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deactivated": self.deactivated,
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "high_water": self.high_water,
        }


def local_user_id(svc: Services, dn: str) -> int | None:
    with svc.sessions() as db:
        return db.scalar(
            select(User.id).where(User.source == "ldap", func.lower(User.ldap_dn) == dn.lower())
        )


def _find_row(db: Session, du: DirectoryUser) -> User | None:
    ldap_users = select(User).where(User.source == "ldap")
    if du.external_id:
        row = db.scalar(ldap_users.where(User.external_id == du.external_id))
        if row is not None:
            return row
    row = db.scalar(ldap_users.where(func.lower(User.ldap_dn) == du.dn.lower()))
    if row is None:
        row = db.scalar(ldap_users.where(func.lower(User.username) == username_key(du.username)))
    return row


def _usable_email(db: Session, email: str | None, user_id: int | None) -> str | None:
    """The directory's address when it is valid and no other account uses it; an address
    owned by another account is left off (never merged: that would hand the account over)."""
    if not email:
        return None
    email = email.strip().lower()
    if not EMAIL_RE.fullmatch(email) or len(email) > 320:
        return None
    owner = db.scalar(select(User.id).where(User.email == email))
    if owner is not None and owner != user_id:
        log.warning("ldap: e-mail %s of a directory user belongs to another account", email)
        return None
    return email


def _set(row: Any, name: str, value: Any) -> bool:
    if getattr(row, name) != value:
        setattr(row, name, value)
        return True
    return False


def apply_user(db: Session, cfg: Section, du: DirectoryUser, now: datetime) -> ProvisionOutcome:
    """Create or refresh the local row for ``du`` in ``db`` (the caller commits)."""
    row = _find_row(db, du)
    change = "unchanged"
    if row is None:
        if du.disabled:
            return ProvisionOutcome(None, "skipped")
        if not valid_username(du.username):
            return ProvisionOutcome(
                None, "conflict", f"directory username {du.username!r} is not a valid username"
            )
        if db.scalar(select(User.id).where(func.lower(User.username) == username_key(du.username))):
            return ProvisionOutcome(
                None,
                "conflict",
                f"a local account is already named {du.username!r}; "
                "an administrator must rename one of them",
            )
        row = Directory(db).create_user(
            NewUser(
                username=du.username,
                email=_usable_email(db, du.email, None),
                given_name=du.given_name,
                family_name=du.family_name,
            )
        )
        row.source = "ldap"
        change = "created"
    changed = False
    if du.username.lower() != row.username.lower() or du.username != row.username:
        taken = db.scalar(
            select(User.id).where(
                func.lower(User.username) == username_key(du.username), User.id != row.id
            )
        )
        if not taken and valid_username(du.username):
            changed |= _set(row, "username", du.username)
    changed |= _set(row, "email", _usable_email(db, du.email, row.id))
    changed |= _set(row, "email_verified", bool(row.email) and cfg.trust_email)
    changed |= _set(row, "given_name", du.given_name)
    changed |= _set(row, "family_name", du.family_name)
    changed |= _set(row, "display_name", du.display_name)
    changed |= _set(row, "ldap_dn", du.dn)
    changed |= _set(row, "external_id", du.external_id)
    # A directory user never has a local password: the directory is the only place to check it.
    changed |= _set(row, "password_hash", None)
    account = db.get(LdapAccount, row.id)
    if account is None:
        account = LdapAccount(user_id=row.id, deactivated=False)
        db.add(account)
    if du.disabled and row.status == "active":
        row.status, account.deactivated, changed = "inactive", True, True
    elif not du.disabled and account.deactivated:
        if row.status == "inactive":
            row.status = "active"
        account.deactivated, changed = False, True
    account.last_seen_at = now
    changed |= _apply_groups(db, cfg, row, du.groups)
    db.flush()
    if change == "unchanged" and changed:
        change = "updated"
    return ProvisionOutcome(row.id, change)


def deactivate(db: Session, row: User) -> bool:
    """Mark a directory user removed from the directory inactive (kept for the audit trail)."""
    account = db.get(LdapAccount, row.id)
    if account is None:
        account = LdapAccount(user_id=row.id, deactivated=False)
        db.add(account)
    if row.status != "active":
        return False
    row.status = "inactive"
    account.deactivated = True
    return True


# --- groups and roles ---------------------------------------------------------------------------


def _group_parent(db: Session, cfg: Section) -> Group | None:
    if not cfg.group_parent.strip("/"):
        return None
    directory = Directory(db)
    parent: Group | None = None
    for part in cfg.group_parent.strip("/").split("/"):
        path = f"{parent.path}/{part}" if parent else part
        found = db.scalar(select(Group).where(Group.path == path))
        parent = found or directory.create_group(part, parent=parent.path if parent else None)
    return parent


def _role_map(cfg: Section) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    for item in cfg.group_role_map:
        group, _, role = item.partition("=")
        mapping.setdefault(group.strip().lower(), []).append(role.strip())
    return mapping


def _ensure_group(db: Session, cfg: Section, g: DirGroup, parent: Group | None) -> Group:
    # "/" separates path segments in our group paths; a directory name may contain it.
    name = "".join(c if c >= " " else " " for c in g.name).replace("/", "-").strip()[:200]
    link = db.scalar(select(LdapGroup).where(LdapGroup.dn == g.dn.lower()))
    if link is not None:
        group = db.get(Group, link.group_id)
        if group is not None:
            return group
        db.delete(link)
        db.flush()
    path = f"{parent.path}/{name}" if parent else name
    group = db.scalar(select(Group).where(Group.path == path))
    if group is None:
        group = Directory(db).create_group(
            name, parent=parent.path if parent else None, description=f"Directory group {g.dn}"
        )
    else:
        # A group with that path already exists, or a directory group was renamed onto
        # it: adopt it. Only directory users' memberships in it are ever managed.
        stale = db.scalar(select(LdapGroup).where(LdapGroup.group_id == group.id))
        if stale is not None:
            db.delete(stale)
            db.flush()
    db.add(LdapGroup(group_id=group.id, dn=g.dn.lower()))
    _ensure_roles(db, cfg, group)
    return group


def _ensure_roles(db: Session, cfg: Section, group: Group) -> None:
    wanted: list[Role] = []
    if cfg.groups_as_roles:
        role_name = f"{cfg.role_prefix}{group.name}"[:200]
        role = db.scalar(select(Role).where(Role.name == role_name, Role.client_id.is_(None)))
        if role is None:
            role = Directory(db).create_role(
                role_name, description=f"From directory group {group.name}"
            )
        wanted.append(role)
    for role_name in _role_map(cfg).get(group.name.lower(), []):
        try:
            wanted.append(Directory(db).role_by_name(role_name))
        except NotFound:
            log.warning("ldap: group_role_map names role %r, which does not exist", role_name)
    for role in wanted:
        if db.get(GroupRole, (group.id, role.id)) is None:
            db.add(GroupRole(group_id=group.id, role_id=role.id))


def _apply_groups(db: Session, cfg: Section, user: User, groups: list[DirGroup]) -> bool:
    parent = _group_parent(db, cfg) if groups else None
    wanted = {_ensure_group(db, cfg, g, parent).id for g in groups}
    db.flush()
    managed = select(LdapGroup.group_id)
    current = set(
        db.scalars(
            select(GroupMember.group_id).where(
                GroupMember.user_id == user.id, GroupMember.group_id.in_(managed)
            )
        )
    )
    gone, new = current - wanted, wanted - current
    if gone:
        db.execute(
            delete(GroupMember).where(
                GroupMember.user_id == user.id, GroupMember.group_id.in_(gone)
            )
        )
    for group_id in sorted(new):
        db.add(GroupMember(group_id=group_id, user_id=user.id))
    return bool(gone or new)


# --- entry points -------------------------------------------------------------------------------


def provision(svc: Services, du: DirectoryUser) -> ProvisionOutcome:
    """JIT provisioning / refresh at login, in its own transaction. Two first logins of the
    same user at once race on the unique username: the loser retries and finds the row."""
    for attempt in range(2):
        with svc.sessions() as db:
            try:
                outcome = apply_user(db, svc.settings.ldap, du, svc.clock.utcnow())
                db.commit()
            except IntegrityError:
                db.rollback()
                if attempt:
                    raise
                continue
            except ValidationError as exc:
                db.rollback()
                outcome = ProvisionOutcome(None, "conflict", str(exc))
            if outcome.change == "conflict":
                log.warning("ldap: cannot provision %s: %s", du.dn, outcome.message)
                outcome.message = (
                    "Your directory account cannot be used here yet: "
                    "ask an administrator to resolve a conflict with a local account."
                )
            return outcome
    raise AssertionError("unreachable")  # pragma: no cover


def _state(db: Session) -> LdapSyncState:
    state = db.scalar(select(LdapSyncState).where(LdapSyncState.name == SYNC_STATE))
    if state is None:
        state = LdapSyncState(name=SYNC_STATE)
        db.add(state)
        db.flush()
    return state


def sync(svc: Services, full: bool = False, connector: LdapConnector | None = None) -> SyncReport:
    """Import every directory user (full) or those changed since the last sync (incremental).

    A full sync also marks directory users that are no longer found inactive. Incremental sync
    resumes from the highest modify timestamp the server reported (its clock, not ours); the
    first sync is always full. Raises DirectoryUnavailable or SyncError.
    """
    cfg = svc.settings.ldap
    connector = connector or ldap_connector(svc)
    with svc.sessions() as db:
        high_water = _state(db).high_water
        db.commit()
    full = full or not high_water
    search_filter = connector.sync_filter()
    if not full:
        ts = cfg.modify_timestamp_attribute
        search_filter = f"(&{search_filter}({ts}>={high_water}))"
    report = SyncReport("full" if full else "incremental", high_water=high_water)

    def fetch(conn: Any) -> list[dict[str, Any]]:
        pages = conn.extend.standard.paged_search(
            cfg.user_base_dn,
            search_filter,
            attributes=connector.user_attributes(),
            paged_size=cfg.sync_page_size,
            generator=True,
        )
        entries = [e for e in pages if e.get("type") == "searchResEntry"]
        connector.check(conn)
        return entries

    entries = connector.run(fetch)
    if full and not entries:
        with svc.sessions() as db:
            existing = db.scalar(select(func.count(User.id)).where(User.source == "ldap"))
        if existing:
            raise SyncError(
                "the directory returned no users: refusing to mark every directory user "
                "inactive (check ldap.user_base_dn and the sync filter)"
            )
    cache: dict[str, list[DirGroup]] = {}
    seen: set[int] = set()
    for start in range(0, len(entries), SYNC_BATCH):
        batch = []
        for entry in entries[start : start + SYNC_BATCH]:
            du = connector.to_user(entry)
            if du is None:
                report.skipped += 1
                continue
            du.groups = connector.run(
                lambda c, du=du, entry=entry: connector.groups_of(c, du, entry, cache)
            )
            batch.append(du)
        with svc.sessions() as db:
            now = svc.clock.utcnow()
            for du in batch:
                report.seen += 1
                if du.modified and (report.high_water is None or du.modified > report.high_water):
                    report.high_water = du.modified
                with db.begin_nested():
                    try:
                        outcome = apply_user(db, cfg, du, now)
                    except (ValidationError, IntegrityError) as exc:
                        outcome = ProvisionOutcome(None, "conflict", str(exc))
                if outcome.user_id is not None:
                    seen.add(outcome.user_id)
                if outcome.change == "conflict":
                    report.conflicts.append(f"{du.dn}: {outcome.message}")
                else:
                    setattr(report, outcome.change, getattr(report, outcome.change) + 1)
            db.commit()
    with svc.sessions() as db:
        if full:
            rows = db.scalars(select(User).where(User.source == "ldap", User.status == "active"))
            for row in rows:
                if row.id not in seen and deactivate(db, row):
                    report.deactivated += 1
        state = _state(db)
        state.high_water = report.high_water
        now = svc.clock.utcnow()
        if full:
            state.last_full_at = now
        state.last_incremental_at = now
        db.commit()
    return report


def refresh(svc: Services, username: str) -> dict[str, Any]:
    """The admin action "refresh from directory" for one user: re-read the entry (found again
    by DN, else by login name if it moved) and apply it; a user gone from the directory is
    marked inactive. Raises NotFound, ValidationError or DirectoryUnavailable."""
    connector = ldap_connector(svc)
    with svc.sessions() as db:
        row = Directory(db).user_by_username(username)
        if row.source != "ldap":
            raise ValidationError(f"user {row.username!r} is not a directory user")
        dn, name = row.ldap_dn or "", row.username

    def read(conn: Any) -> tuple[Any, Any]:
        entry = connector.read_user(conn, dn) if dn else None
        if entry is None:
            found, ambiguous = connector.find_user(conn, name)
            entry = found[0] if len(found) == 1 and not ambiguous else None
        du = connector.to_user(entry) if entry else None
        if du is not None:
            du.groups = connector.groups_of(conn, du, entry)
        return du, entry

    du, _ = connector.run(read)
    with svc.sessions() as db:
        if du is None:
            row = Directory(db).user_by_username(username)
            changed = deactivate(db, row)
            db.commit()
            return {
                "username": row.username,
                "change": "deactivated" if changed else "unchanged",
                "status": row.status,
                "groups": [],
            }
        outcome = apply_user(db, svc.settings.ldap, du, svc.clock.utcnow())
        db.commit()
        row = db.get(User, outcome.user_id) if outcome.user_id else None
        return {
            "username": row.username if row else du.username,
            "change": outcome.change,
            "status": row.status if row else "absent",
            "groups": [g.name for g in du.groups],
            **({"message": outcome.message} if outcome.message else {}),
        }


def provision_by_username(svc: Services, username: str) -> dict[str, Any]:
    """The admin action "add a directory user": find the entry by its login name and create
    (or refresh) the local user linked to it, as their first sign-in would
    (:func:`provision`). Raises NotFound (no single entry of that name), ValidationError (a
    conflict with a local account) or DirectoryUnavailable."""
    connector = ldap_connector(svc)

    def read(conn: Any) -> Any:
        found, ambiguous = connector.find_user(conn, username)
        if len(found) != 1 or ambiguous:
            return None
        du = connector.to_user(found[0])
        if du is not None:
            du.groups = connector.groups_of(conn, du, found[0])
        return du

    du = connector.run(read)
    if du is None:
        raise NotFound(f"the directory has no single account named {username!r}")
    outcome = provision(svc, du)
    if outcome.user_id is None:
        raise ValidationError(outcome.message or "the directory account cannot be used")
    with svc.sessions() as db:
        row = db.get(User, outcome.user_id)
        return {"uuid": row.uuid, "username": row.username, "change": outcome.change}


def check_servers(svc: Services) -> dict[str, Any]:
    """Each configured server: reachable, TLS accepted, service bind, user search works."""
    cfg = svc.settings.ldap
    results = []
    for url in [*(cfg.urls or ([cfg.url] if cfg.url else []))]:
        one = LdapConnector(_only(cfg, url))
        try:

            def probe(conn: Any, one: LdapConnector = one) -> int:
                conn.search(cfg.user_base_dn, one.sync_filter(), attributes=["1.1"], size_limit=1)
                one.check(conn, allow={4})
                return len([e for e in conn.response or [] if e.get("type") == "searchResEntry"])

            found = one.run(probe)
            results.append({"url": url, "ok": True, "users_found": found > 0})
        except DirectoryUnavailable as exc:
            results.append({"url": url, "ok": False, "error": str(exc)})
        finally:
            one.close()
    return {"ok": bool(results) and all(r["ok"] for r in results), "servers": results}


def _only(cfg: Section, url: str) -> Section:
    data = cfg.as_dict()
    data.update(url=url, urls=())
    return Section("ldap.", data)
