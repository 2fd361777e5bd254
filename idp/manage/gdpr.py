"""GDPR: erasure of a person's data (art. 17), their data export (art. 15 / 20), deletion on
request with an optional administrator approval, and the retention job (docs/gdpr.md).

Erasure deletes the user row. Every table that holds something of the person refers to it with
``ON DELETE CASCADE`` (sessions index, refresh tokens, consents, second factors, remembered
devices, WebAuthn credentials, memberships, role assignments, persistent NameIDs, terms
acceptances, LDAP bookkeeping), so nothing is left behind to pseudonymise by hand and a table
added later is covered by its foreign key. What stays is the user's uuid: a random identifier
never reused, in the audit rows (whose personal fields are blanked) and in ended deletion
requests, so the audit trail still says *that* something happened to an account.

Permissions: erasing and deciding deletion requests need ``users:accounts:delete`` over the
user; exporting a user's data needs ``users:accounts:read`` over them; the retention job is the
local operator's (``idp gdpr purge``). Nobody erases the last administrator
(``users.refuse_last_admin``), whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from ..backends.lockout import Lockout
from ..core.policy import LockoutPolicy
from ..core.ratelimit import rules_from_settings
from ..errors import Conflict, NotFound, ValidationError
from ..storage import audit as audit_rows
from ..storage import terms
from ..storage.models import AuditEvent, Group, GroupMember, Role, User, UserRole
from ..storage.models_auth import SsoSessionIndex
from ..storage.models_broker import UpstreamLink, UpstreamProvider
from ..storage.models_gdpr import DeletionRequest
from ..storage.models_mfa import MfaBackupCode, MfaOtpChannel, MfaRememberedDevice, MfaTotp
from ..storage.models_oauth import Consent, RefreshToken
from ..storage.models_webauthn import WebAuthnCredential
from ..storage.ratelimit import RateLimiter
from ..storage.rbac import bump_generation
from ..storage.session_index import SessionRecords, end_user_sessions, list_sessions
from ..storage.tokens import EMAIL_PENDING_PREFIX, OneTimeTokens
from . import photos
from .context import Context
from .users import get as get_user
from .users import refuse_last_admin, visible

ERASED = "user.erased"

# The tables whose rows of the person the erasure report counts (all go by cascade).
_COUNTED = {
    "refresh_tokens": RefreshToken,
    "consents": Consent,
    "totp": MfaTotp,
    "backup_codes": MfaBackupCode,
    "code_channels": MfaOtpChannel,
    "remembered_devices": MfaRememberedDevice,
    "webauthn_credentials": WebAuthnCredential,
    "group_memberships": GroupMember,
    "role_assignments": UserRole,
}


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed. ``email`` / ``locale``: where to tell the person (kept in memory
    only, for the mail the surface sends). ``directory_kept``: the account came from LDAP, whose
    entry we do not own: only the local copy went."""

    uuid: str
    username: str
    email: str | None
    locale: str | None
    sessions_ended: int
    audit_rows_blanked: int
    removed: dict[str, int]
    directory_kept: bool

    def report(self) -> dict[str, Any]:
        return {
            "id": self.uuid,
            "erased": True,
            "sessions_ended": self.sessions_ended,
            "audit_rows_blanked": self.audit_rows_blanked,
            "removed": self.removed,
            "directory_kept": self.directory_kept,
        }


def _counts(ctx: Context, user_id: int) -> dict[str, int]:
    return {
        name: ctx.db.scalar(select(func.count()).select_from(model).where(model.user_id == user_id))
        or 0
        for name, model in _COUNTED.items()
    }


def _forget_in_store(ctx: Context, user: User) -> None:
    """Mailed links (reset, verification, e-mail change...), the pending address change, the
    failed-login counters and the mail rate counters: the short-lived store's part of the
    person."""
    svc = ctx.svc
    OneTimeTokens(svc.store, svc.hasher, svc.settings.recovery.token_minutes).revoke_user(user.id)
    svc.store.delete(EMAIL_PENDING_PREFIX + user.uuid)
    limits = RateLimiter(svc.store, svc.clock, rules_from_settings(svc.settings), svc.hasher)
    for rule, typed in (("reset", user.username), ("reset", user.email),
                        ("magic_link", user.email), ("registration", user.email),
                        ("mfa_code", f"u{user.id}"), ("email_link", f"u{user.id}")):
        if typed:
            limits.forget(rule, typed)
    Lockout(svc.store, LockoutPolicy.from_settings(svc.settings.lockout), svc.clock).unlock(user.id)


def _erase(ctx: Context, user: User, sessions: SessionRecords | None, why: str) -> Erasure:
    """Erase ``user`` (the checks were made by the caller)."""
    refuse_last_admin(ctx, user)
    uuid, user_id, avatar = user.uuid, user.id, user.avatar
    facts = (user.username, user.email, user.locale, user.source == "ldap")
    removed = _counts(ctx, user_id)
    # Store writes first: no store write while this transaction holds SQLite's write lock.
    _forget_in_store(ctx, user)
    ended = end_user_sessions(ctx.db, sessions, user_id) if sessions is not None else 0
    now = ctx.svc.clock.utcnow()
    ctx.db.execute(
        update(DeletionRequest)
        .where(DeletionRequest.user_id == user_id, DeletionRequest.status == "pending")
        .values(status="approved", decided_at=now, decided_by=ctx.actor.name)
    )
    ctx.db.execute(update(User).where(User.manager_id == user_id).values(manager_id=None))
    ctx.db.execute(delete(User).where(User.id == user_id))
    ctx.db.expunge(user)
    bump_generation(ctx.db)  # ids may be reused (SQLite): no cached grant may outlive this
    # Blanked before the erasure's own row is written: that row names no one but the uuid.
    blanked = audit_rows.erase_subject(ctx.db, uuid, at=now)
    ctx.audit(ERASED, uuid, why=why, sessions_ended=ended, audit_rows_blanked=blanked)
    ctx.after_commit(lambda: photos.drop(ctx.svc, avatar))
    return Erasure(uuid, facts[0], facts[1], facts[2], ended, blanked, removed, facts[3])


def erase(ctx: Context, user: User, *, sessions: SessionRecords | None = None) -> Erasure:
    """An administrator (or the operator) erases ``user``: ``users:accounts:delete`` over them;
    not their own account (that is the account page's deletion), not the last administrator."""
    ctx.require("users:accounts:delete", user.id)
    if ctx.actor.kind == "user" and ctx.actor.user_id == user.id:
        raise Conflict("you cannot erase your own account here; use Delete my account")
    return _erase(ctx, user, sessions, "admin")


def erase_own(ctx: Context, user: User, *, sessions: SessionRecords | None = None) -> Erasure:
    """The signed-in user erases their own account (``[gdpr] deletion = "immediate"``; the
    account page re-authenticated them). The last administrator is refused here too."""
    if ctx.actor.kind != "user" or ctx.actor.user_id != user.id:
        raise Conflict("only the account holder deletes their own account")
    return _erase(ctx, user, sessions, "request")


# --- deletion requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestView:
    id: int
    user_uuid: str
    username: str | None
    email: str | None
    status: str
    created_at: datetime
    decided_at: datetime | None
    note: str | None


def _view(req: DeletionRequest, user: User | None) -> RequestView:
    return RequestView(
        req.id,
        req.user_uuid,
        user.username if user else None,
        user.email if user else None,
        req.status,
        req.created_at,
        req.decided_at,
        req.note,
    )


def pending_request(ctx: Context, user: User) -> DeletionRequest | None:
    return ctx.db.scalar(
        select(DeletionRequest).where(
            DeletionRequest.user_id == user.id, DeletionRequest.status == "pending"
        )
    )


def latest_request(ctx: Context, user: User) -> DeletionRequest | None:
    """The user's most recent request (what their account page shows)."""
    return ctx.db.scalar(
        select(DeletionRequest)
        .where(DeletionRequest.user_id == user.id)
        .order_by(DeletionRequest.id.desc())
        .limit(1)
    )


def _own(ctx: Context, user: User) -> None:
    if ctx.actor.kind != "user" or ctx.actor.user_id != user.id:
        raise Conflict("only the account holder asks for their account's deletion")


def request_deletion(ctx: Context, user: User) -> DeletionRequest:
    """The user asks for their account's erasure, for an administrator to decide."""
    _own(ctx, user)
    if pending_request(ctx, user) is not None:
        raise Conflict("a deletion request of this account is already waiting")
    req = DeletionRequest(user_id=user.id, user_uuid=user.uuid, created_at=ctx.svc.clock.utcnow())
    ctx.db.add(req)
    ctx.db.flush()
    ctx.audit("gdpr.deletion_requested", user.uuid, request=req.id)
    return req


def withdraw_request(ctx: Context, user: User) -> DeletionRequest:
    """The user takes back their waiting request."""
    _own(ctx, user)
    req = pending_request(ctx, user)
    if req is None:
        raise NotFound("no deletion request of this account is waiting")
    req.status = "withdrawn"
    req.decided_at = ctx.svc.clock.utcnow()
    ctx.db.flush()
    ctx.audit("gdpr.deletion_withdrawn", user.uuid, request=req.id)
    return req


REQUEST_FILTERS = ("pending", "approved", "rejected", "withdrawn", "all")


def list_requests(
    ctx: Context, status: str = "pending", *, page: int = 1, per_page: int = 25
) -> tuple[list[RequestView], int]:
    """Deletion requests the actor may decide (``users:accounts:delete`` over the user; ended
    requests of erased users only for an actor who holds it everywhere), oldest first."""
    if status not in REQUEST_FILTERS:
        raise ValidationError(f"status: one of {', '.join(REQUEST_FILTERS)}")
    reach = visible(ctx, "users:accounts:delete")
    stmt = select(DeletionRequest, User).outerjoin(User, User.id == DeletionRequest.user_id)
    # An erased user's request names nobody: shown only to those who may delete anyone.
    everyone = ctx.allowed("users:accounts:delete")
    stmt = stmt.where(or_(reach, User.id.is_(None)) if everyone else reach)
    if status != "all":
        stmt = stmt.where(DeletionRequest.status == status)
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.execute(
        stmt.order_by(DeletionRequest.created_at, DeletionRequest.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return [_view(req, user) for req, user in rows], total


@dataclass(frozen=True)
class Decision:
    """A decided request, with where to tell the person (the surface mails them)."""

    request: RequestView
    approved: bool
    email: str | None
    locale: str | None
    username: str
    erasure: Erasure | None


def decide(
    ctx: Context,
    request_id: int,
    *,
    approve: bool,
    note: str | None = None,
    sessions: SessionRecords | None = None,
) -> Decision:
    """Approve (the account is erased now) or reject (with an optional note for the person) a
    waiting request. Unknown or out of reach: NotFound; already decided: Conflict."""
    req = ctx.db.get(DeletionRequest, request_id)
    if req is None:
        raise NotFound("no such deletion request")
    if req.user_id is None:  # the account was erased: only for who may delete anyone
        ctx.require("users:accounts:delete")
        raise Conflict(f"this request was already {req.status}")
    # Out of the actor's reach: NotFound; the permission held nowhere: Forbidden.
    user = get_user(ctx, req.user_uuid, "users:accounts:delete")
    if req.status != "pending":
        raise Conflict(f"this request was already {req.status}")
    if note is not None and len(note) > 2000:
        raise ValidationError("note: at most 2000 characters")
    email, locale, username = user.email, user.locale, user.username
    now = ctx.svc.clock.utcnow()
    erasure = None
    if approve:
        erasure = erase(ctx, user, sessions=sessions)
        ctx.db.refresh(req)
        req.decided_by = ctx.actor.name
        ctx.audit("gdpr.deletion_approved", req.user_uuid, request=req.id)
    else:
        req.status, req.decided_at, req.decided_by = "rejected", now, ctx.actor.name
        req.note = (note or "").strip() or None
        ctx.audit("gdpr.deletion_rejected", req.user_uuid, request=req.id)
    ctx.db.flush()
    return Decision(_view(req, None), approve, email, locale, username, erasure)


# --- data export ------------------------------------------------------------------------------

_PROFILE = (
    "uuid username email email_verified given_name middle_name family_name display_name phone "
    "phone_verified locale timezone color status start_date end_date source external_id "
    "created_at updated_at last_login_at password_changed_at must_change_password require_mfa "
    "custom"
).split()


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def personal_data(
    ctx: Context,
    user: User,
    *,
    sessions: SessionRecords,
    current_sid: str | None = None,
    audit_limit: int = 10000,
) -> dict[str, Any]:
    """Everything the IdP holds about ``user`` (secrets left out: password hash, TOTP seeds,
    backup codes, public keys, token hashes), as plain JSON-ready data. The caller checks who
    may see it (the user themself, or :func:`export_user`)."""
    db = ctx.db
    profile = {c: _iso(getattr(user, c)) for c in _PROFILE}
    profile["company"] = user.company.name if user.company else None
    profile["department"] = user.department.name if user.department else None
    profile["position"] = user.position.name if user.position else None
    manager = db.get(User, user.manager_id) if user.manager_id else None
    profile["manager"] = manager.username if manager else None
    profile["has_picture"] = bool(user.avatar)
    groups = db.execute(
        select(Group.path, GroupMember.expires_at, GroupMember.created_at)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id)
        .order_by(Group.path)
    ).all()
    roles = db.execute(
        select(Role.name, Role.client_id, UserRole.expires_at, UserRole.created_at)
        .join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user.id)
        .order_by(Role.name)
    ).all()
    links = db.execute(
        select(UpstreamProvider.alias, UpstreamLink.subject, UpstreamLink.linked_at,
               UpstreamLink.last_login_at)
        .join(UpstreamProvider, UpstreamProvider.id == UpstreamLink.provider_id)
        .where(UpstreamLink.user_id == user.id)
        .order_by(UpstreamProvider.alias)
    ).all()
    totp = db.get(MfaTotp, user.id)
    keys = db.scalars(select(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id))
    channels = db.scalars(select(MfaOtpChannel).where(MfaOtpChannel.user_id == user.id))
    backup_left = db.scalar(
        select(func.count())
        .select_from(MfaBackupCode)
        .where(MfaBackupCode.user_id == user.id, MfaBackupCode.used_at.is_(None))
    )
    devices = db.scalars(
        select(MfaRememberedDevice)
        .where(MfaRememberedDevice.user_id == user.id)
        .order_by(MfaRememberedDevice.created_at.desc())
    )
    tokens = db.scalars(
        select(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked.is_(False))
        .order_by(RefreshToken.created_at.desc())
    )
    events = db.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.target == user.uuid, AuditEvent.actor == user.uuid))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(audit_limit)
    )
    requests = db.scalars(
        select(DeletionRequest)
        .where(DeletionRequest.user_id == user.id)
        .order_by(DeletionRequest.id.desc())
    )
    svc = ctx.svc
    return {
        "profile": profile,
        "groups": [{"path": p, "expires_at": _iso(e), "since": _iso(c)} for p, e, c in groups],
        "roles": [
            {"name": n, "client_id": cid, "expires_at": _iso(e), "since": _iso(c)}
            for n, cid, e, c in roles
        ],
        # Accounts at upstream identity providers this account signs in with (brokering).
        "upstream_links": [
            {"provider": a, "subject": s, "linked_at": _iso(at), "last_login_at": _iso(last)}
            for a, s, at, last in links
        ],
        "sessions": [
            {
                "created_at": _iso(i.created_at),
                "ip": i.ip,
                "user_agent": i.user_agent,
                "amr": i.amr,
                "current": i.current,
            }
            for i in list_sessions(db, sessions, user.id, current_sid)
        ],
        "remembered_devices": [
            {
                "created_at": _iso(d.created_at),
                "expires_at": _iso(d.expires_at),
                "last_used_at": _iso(d.last_used_at),
                "ip": d.ip,
                "user_agent": d.user_agent,
            }
            for d in devices
        ],
        "mfa": {
            "totp": {
                "name": totp.name,
                "created_at": _iso(totp.created_at),
                "last_used_at": _iso(totp.last_used_at),
            }
            if totp
            else None,
            "security_keys": [
                {
                    "name": k.name,
                    "created_at": _iso(k.created_at),
                    "last_used_at": _iso(k.last_used_at),
                    "passkey": bool(k.discoverable),
                }
                for k in keys
            ],
            "code_channels": [
                {"kind": c.kind, "destination": c.destination, "created_at": _iso(c.created_at)}
                for c in channels
            ],
            "backup_codes_left": backup_left or 0,
        },
        "applications": [
            {k: _iso(v) for k, v in c.items()}
            for lister, _revoker in svc.consent_sources
            for c in lister(svc, user)
        ],
        "tokens": [
            {
                "client_id": t.client_id,
                "scope": t.scope,
                "offline": t.offline,
                "created_at": _iso(t.created_at),
                "last_used_at": _iso(t.last_used_at),
                "expires_at": _iso(t.expires_at),
            }
            for t in tokens
            if t.used_at is None
        ],
        "terms": [
            {"version": a.version, "accepted_at": _iso(a.accepted_at)}
            for a in terms.acceptances(db, user.id)
        ],
        "deletion_requests": [
            {
                "status": r.status,
                "created_at": _iso(r.created_at),
                "decided_at": _iso(r.decided_at),
                "note": r.note,
            }
            for r in requests
        ],
        "activity": [
            {
                "at": _iso(e.at),
                "action": e.action,
                "ip": e.ip,
                "request_id": e.request_id,
                "details": e.details,
            }
            for e in events
        ],
    }


def export_user(
    ctx: Context, user: User, *, sessions: SessionRecords, fmt: str = "json"
) -> dict[str, Any]:
    """An administrator exports ``user``'s data (``users:accounts:read`` over them); audited."""
    ctx.require("users:accounts:read", user.id)
    data = personal_data(ctx, user, sessions=sessions)
    ctx.audit("user.data_exported", user.uuid, format=fmt)
    return data


# --- retention ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeReport:
    dry_run: bool
    inactive_erased: list[str]  # uuids
    inactive_kept_last_admin: list[str]
    requests_removed: int
    refresh_tokens_removed: int
    session_index_rows_removed: int

    def counts(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "inactive_erased": len(self.inactive_erased),
            "inactive_kept_last_admin": len(self.inactive_kept_last_admin),
            "requests_removed": self.requests_removed,
            "refresh_tokens_removed": self.refresh_tokens_removed,
            "session_index_rows_removed": self.session_index_rows_removed,
        }


def _count(ctx: Context, stmt: Any) -> int:
    return ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def purge(
    ctx: Context, *, sessions: SessionRecords | None = None, dry_run: bool = False
) -> PurgeReport:
    """Remove what outlived its retention ([gdpr] settings): accounts inactive for longer than
    ``inactive_erase_days`` (erased like any erasure; the last administrator is kept), ended
    deletion requests older than ``request_retention_days``, refresh tokens past their absolute
    end, and session index rows whose session no longer exists. ``dry_run``: count only."""
    ctx.require("users:accounts:delete")
    cfg = ctx.svc.settings.gdpr
    now = ctx.svc.clock.utcnow()
    erased: list[str] = []
    kept: list[str] = []
    if cfg.inactive_erase_days > 0:
        # The account's last change is when it was deactivated: any later edit restarts the
        # count, so an account is never erased sooner than the setting says.
        cutoff = now - timedelta(days=cfg.inactive_erase_days)
        stale = list(
            ctx.db.scalars(
                select(User)
                .where(User.status == "inactive", User.updated_at < cutoff)
                .order_by(User.id)
            )
        )
        for user in stale:
            try:
                refuse_last_admin(ctx, user)
            except Conflict:
                kept.append(user.uuid)
                continue
            if not dry_run:
                _erase(ctx, user, sessions, "retention")
            erased.append(user.uuid)
    ended = DeletionRequest.status != "pending"
    old_requests = DeletionRequest.created_at < now - timedelta(days=cfg.request_retention_days)
    dead_tokens = RefreshToken.expires_at < now
    requests = _count(ctx, select(DeletionRequest.id).where(ended, old_requests))
    tokens = _count(ctx, select(RefreshToken.token_hash).where(dead_tokens))
    gone_sids = []
    if sessions is not None:
        sids = ctx.db.scalars(select(SsoSessionIndex.sid))
        gone_sids = [sid for sid in sids if sessions.peek(sid) is None]
    if not dry_run:
        ctx.db.execute(delete(DeletionRequest).where(ended, old_requests))
        ctx.db.execute(delete(RefreshToken).where(dead_tokens))
        if gone_sids:
            ctx.db.execute(delete(SsoSessionIndex).where(SsoSessionIndex.sid.in_(gone_sids)))
        ctx.audit(
            "gdpr.purged",
            None,
            inactive_erased=len(erased),
            requests_removed=requests,
            refresh_tokens_removed=tokens,
            session_index_rows_removed=len(gone_sids),
        )
    return PurgeReport(dry_run, erased, kept, requests, tokens, len(gone_sids))
