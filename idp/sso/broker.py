"""Identity brokering in the sign-in hub: which upstream identity providers a sign-in may use,
the browser's round trip to one (a "flight"), and what an ``UpstreamIdentity`` that came back
means here — an existing link, a first-login link to a local account (only after the person
proves that account), a new account (just-in-time provisioning) or a refusal.

Protocol-neutral: the upstream clients (``idp.broker``) speak OIDC, OAuth 2 or SAML and hand
over an ``UpstreamIdentity``; the web layer (``idp.web.broker``) runs the pages and finishes the
sign-in through the normal login steps. Audit rows are written through the ``Audit`` callable the
caller passes (the web layer's, which stamps them with the request).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core.authn import AuthnRequest
from ..core.broker import (
    MappedProfile,
    UpstreamIdentity,
    login_domain,
    map_identity,
    parse_rules,
)
from ..core.policy import ACCOUNT_OK
from ..errors import NotFound
from ..storage.directory import EMAIL_RE, Directory, NewUser, username_key, valid_username
from ..storage.models import Client, SamlServiceProvider, User
from ..storage.models_broker import UpstreamLink, UpstreamProvider
from .users import state_of

if TYPE_CHECKING:  # the container's type only: it is built above the hub
    from ..services import Services

log = logging.getLogger("idp.broker")

Audit = Callable[..., None]  # (db, action, *, actor=None, target=None, **details)

_FLIGHT = "broker:flight:"
_CONFIRM = "broker:confirm:"
CONFIRM_TTL = 900  # seconds a first-login link waits for the person's proof
# The per-client / per-SP setting (client metadata, SP settings) naming the upstreams offered.
ALLOWED_KEY = "allowed_upstreams"

# Why a brokered sign-in was refused (audit ``broker.refused`` / ``broker.link_refused``).
REFUSED_DISABLED = "upstream_disabled"
REFUSED_NOT_ALLOWED = "upstream_not_allowed"
REFUSED_NO_ACCOUNT = "no_account"
REFUSED_UNVERIFIED_EMAIL = "email_not_verified"
REFUSED_LINK_OFF = "linking_disabled"
REFUSED_ALREADY_LINKED = "already_linked"


# --- which upstreams a sign-in may use ----------------------------------------------------------


def provider(db: Session, alias: str) -> UpstreamProvider | None:
    if not alias or len(alias) > 64:
        return None
    return db.scalar(select(UpstreamProvider).where(UpstreamProvider.alias == alias))


def allowed_aliases(db: Session, req: AuthnRequest | None) -> list[str] | None:
    """The upstreams the request's client (``allowed_upstreams`` in its metadata) or SP (in
    its settings) lists; None when it lists none (every enabled upstream)."""
    if req is None or not req.client_id:
        return None
    if req.protocol == "oidc":
        row = db.get(Client, req.client_id)
        listed = (row.meta or {}).get(ALLOWED_KEY) if row else None
    elif req.protocol == "saml":
        sp = db.get(SamlServiceProvider, req.client_id)
        listed = (sp.settings or {}).get(ALLOWED_KEY) if sp else None
    else:
        listed = None
    return [str(a) for a in listed] if isinstance(listed, list) else None


def usable(
    db: Session, req: AuthnRequest | None, alias: str
) -> tuple[UpstreamProvider | None, str]:
    """The upstream ``alias`` if this sign-in may use it: (provider, "") or (None, reason)."""
    found = provider(db, alias)
    if found is None or not found.enabled:
        return None, REFUSED_DISABLED
    allowed = allowed_aliases(db, req)
    if allowed is not None and found.alias not in allowed:
        return None, REFUSED_NOT_ALLOWED
    return found, ""


def offered(db: Session, req: AuthnRequest | None) -> list[UpstreamProvider]:
    """The upstreams the login page offers as buttons for this request, by display name."""
    allowed = allowed_aliases(db, req)
    rows = db.scalars(
        select(UpstreamProvider)
        .where(UpstreamProvider.enabled.is_(True), UpstreamProvider.hide_on_login.is_(False))
        .order_by(UpstreamProvider.display_name)
    ).all()
    return [p for p in rows if allowed is None or p.alias in allowed]


def home_realm(db: Session, req: AuthnRequest | None, login: str) -> UpstreamProvider | None:
    """The upstream whose home-realm domains hold the domain of ``login`` (an e-mail address
    or ``user@domain``), if this sign-in may use it."""
    domain = login_domain(login)
    if domain is None:
        return None
    allowed = allowed_aliases(db, req)
    for row in db.scalars(
        select(UpstreamProvider)
        .where(UpstreamProvider.enabled.is_(True))
        .order_by(UpstreamProvider.alias)
    ):
        if domain in (row.hrd_domains or []) and (allowed is None or row.alias in allowed):
            return row
    return None


def any_enabled(db: Session) -> bool:
    """Whether brokering is in use at all (the login page skips its look-ups otherwise)."""
    found = select(UpstreamProvider.id).where(UpstreamProvider.enabled.is_(True)).limit(1)
    return db.scalar(found) is not None


# --- the browser's round trip -------------------------------------------------------------------


@dataclass
class Flight:
    """One started upstream sign-in, stored under ``state`` until the upstream answers: bound
    to the pending AuthnRequest (``rid``) and to the browser (``browser``: keyed hash of a
    secret only that browser holds). ``nonce`` / ``verifier`` are OIDC's nonce and PKCE code
    verifier; ``data`` holds what another protocol needs (a SAML request id)."""

    state: str
    provider: str
    rid: str | None
    next_url: str | None
    browser: str
    nonce: str
    verifier: str
    login_hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_flight(
    svc: Services,
    alias: str,
    *,
    rid: str | None,
    next_url: str | None,
    browser_secret: str,
    login_hint: str | None = None,
) -> Flight:
    """A flight with fresh state, nonce and PKCE verifier, not stored yet: the protocol's
    ``begin`` may add to its ``data`` (a SAML request id) before ``save_flight``."""
    return Flight(
        state=secrets.token_urlsafe(32),
        provider=alias,
        rid=rid,
        next_url=next_url,
        browser=svc.hasher.hash(browser_secret),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(48),
        login_hint=login_hint,
    )


def save_flight(svc: Services, flight: Flight) -> None:
    """Keep the flight until the upstream answers (``[broker] flight_seconds``)."""
    svc.store.put(_FLIGHT + flight.state, flight.to_dict(), svc.settings.broker.flight_seconds)


def take_flight(svc: Services, state: str | None, browser_secret: str | None) -> Flight | None:
    """The flight of ``state``, once (a replayed callback finds nothing), and only for the
    browser that started it."""
    return _flight(svc, state, browser_secret, svc.store.take)


def peek_flight(svc: Services, state: str | None, browser_secret: str | None) -> Flight | None:
    """The flight of ``state`` for the browser that started it, left in place: SAML's ACS
    judges the Response first and takes the flight only once it passed, so a refused Response
    leaves the sign-in as it was."""
    return _flight(svc, state, browser_secret, svc.store.get)


def _flight(
    svc: Services, state: str | None, browser_secret: str | None, read: Callable[[str], Any]
) -> Flight | None:
    if not state or len(state) > 100 or not browser_secret:
        return None
    data = read(_FLIGHT + state)
    if not data:
        return None
    flight = Flight(**data)
    if not svc.hasher.verify(browser_secret, flight.browser):
        return None
    return flight


# --- what the upstream's answer means -----------------------------------------------------------


@dataclass
class Resolution:
    """``signin``: sign ``user`` in; ``confirm``: ``user`` has the upstream's verified e-mail,
    and linking waits for proof of that account; ``refused``: ``reason`` says why (nothing was
    linked or created)."""

    outcome: str
    user: User | None = None
    reason: str = ""


def _link_of(db: Session, prov: UpstreamProvider, subject: str) -> UpstreamLink | None:
    return db.scalar(
        select(UpstreamLink).where(
            UpstreamLink.provider_id == prov.id, UpstreamLink.subject == subject
        )
    )


def _refuse(db: Session, audit: Audit, prov: UpstreamProvider, reason: str, **extra: Any):
    action = "broker.link_refused" if reason in _LINK_REASONS else "broker.refused"
    audit(db, action, provider=prov.alias, reason=reason, **extra)
    return Resolution("refused", reason=reason)


_LINK_REASONS = (REFUSED_UNVERIFIED_EMAIL, REFUSED_LINK_OFF, REFUSED_ALREADY_LINKED)


def resolve(
    svc: Services, db: Session, prov: UpstreamProvider, identity: UpstreamIdentity, audit: Audit
) -> Resolution:
    """What to do with a person the upstream vouched for. The caller commits."""
    if not prov.enabled:
        return _refuse(db, audit, prov, REFUSED_DISABLED)
    link = _link_of(db, prov, identity.subject)
    if link is not None:
        user = db.get(User, link.user_id)
        assert user is not None  # the link goes with its user (ON DELETE CASCADE)
        state = state_of(svc, user)
        if state != ACCOUNT_OK:
            return _refuse(db, audit, prov, f"account_{state}", target=user.uuid)
        mapped = _synced(db, prov, identity, user)
        link.last_login_at = svc.clock.utcnow()
        audit(db, "broker.login", actor=user.uuid, target=user.uuid, provider=prov.alias,
              **mapped)
        return Resolution("signin", user)
    local = _user_by_email(db, identity.email)
    if local is not None:
        if not identity.email_verified:
            return _refuse(db, audit, prov, REFUSED_UNVERIFIED_EMAIL, target=local.uuid)
        if not prov.link_by_email:
            return _refuse(db, audit, prov, REFUSED_LINK_OFF, target=local.uuid)
        if _has_link(db, prov, local):
            return _refuse(db, audit, prov, REFUSED_ALREADY_LINKED, target=local.uuid)
        return Resolution("confirm", local)
    if not prov.create_users:
        return _refuse(db, audit, prov, REFUSED_NO_ACCOUNT)
    user, mapped = _provision(svc, db, prov, identity)
    audit(db, "user.created", actor=user.uuid, target=user.uuid, source="broker",
          provider=prov.alias, **mapped)
    return _linked(svc, db, prov, identity, user, audit, created=True)


def link_confirmed(
    svc: Services,
    db: Session,
    prov: UpstreamProvider,
    identity: UpstreamIdentity,
    user: User,
    audit: Audit,
) -> Resolution:
    """The person proved the local account ``user``: link it (if still allowed) and sign in."""
    if not prov.enabled:
        return _refuse(db, audit, prov, REFUSED_DISABLED)
    state = state_of(svc, user)
    if state != ACCOUNT_OK:
        return _refuse(db, audit, prov, f"account_{state}", target=user.uuid)
    if _link_of(db, prov, identity.subject) is not None or _has_link(db, prov, user):
        return _refuse(db, audit, prov, REFUSED_ALREADY_LINKED, target=user.uuid)
    return _linked(svc, db, prov, identity, user, audit, created=False)


def _linked(svc, db, prov, identity, user, audit, *, created: bool) -> Resolution:
    now = svc.clock.utcnow()
    db.add(UpstreamLink(user_id=user.id, provider_id=prov.id, subject=identity.subject,
                        linked_at=now, last_login_at=now))
    mapped = {} if created else _synced(db, prov, identity, user)
    db.flush()
    audit(db, "broker.linked", actor=user.uuid, target=user.uuid, provider=prov.alias,
          confirmed=not created, **mapped)
    audit(db, "broker.login", actor=user.uuid, target=user.uuid, provider=prov.alias)
    return Resolution("signin", user)


def _has_link(db: Session, prov: UpstreamProvider, user: User) -> bool:
    return db.scalar(
        select(UpstreamLink.id).where(
            UpstreamLink.provider_id == prov.id, UpstreamLink.user_id == user.id
        )
    ) is not None


def _user_by_email(db: Session, email: str | None) -> User | None:
    if not email:
        return None
    return db.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


# --- just-in-time provisioning and profile sync -------------------------------------------------


def _free_username(db: Session, wanted: str) -> str:
    base = wanted[:140] if valid_username(wanted) else ""
    base = base or "user"
    name, n = base, 1
    while db.scalar(select(User.id).where(func.lower(User.username) == username_key(name))):
        n += 1
        name = f"{base}-{n}"
    return name


def _synced(db: Session, prov: UpstreamProvider, identity: UpstreamIdentity,
            user: User) -> dict[str, list[str]]:
    """With ``sync_mode`` "force", the mapped profile applied again (what was applied)."""
    if prov.sync_mode != "force":
        return {}
    return _apply_profile(db, user, map_identity(identity, parse_rules(prov.mapping)))


def _provision(
    svc: Services, db: Session, prov: UpstreamProvider, identity: UpstreamIdentity
) -> tuple[User, dict[str, list[str]]]:
    profile = map_identity(identity, parse_rules(prov.mapping))
    email = identity.email.strip().lower() if identity.email else None
    if email and not EMAIL_RE.fullmatch(email):
        email = None  # not an address this directory can hold: the account goes without
    wanted = profile.fields.get("username") or (email.split("@")[0] if email else "")
    user = Directory(db, svc.clock).create_user(
        NewUser(username=_free_username(db, wanted or f"{prov.alias}-user"), email=email)
    )
    user.email_verified = bool(email and identity.email_verified)
    user.source = "broker"
    user.external_id = f"{prov.alias}:{identity.subject}"[:255]
    return user, _apply_profile(db, user, profile)


_PROFILE_FIELDS = ("given_name", "middle_name", "family_name", "display_name", "phone", "locale")


def _apply_profile(db: Session, user: User, profile: MappedProfile) -> dict[str, list[str]]:
    """Copy the mapped fields (the username only when the account is new: people sign in with
    it) and add the mapped groups and roles; the groups and roles applied, for the audit row.
    Groups or roles that do not exist here are skipped and logged; memberships are added,
    never removed."""
    for name in _PROFILE_FIELDS:
        value = profile.fields.get(name)
        if value:
            setattr(user, name, value[: User.__table__.c[name].type.length or 300])
    directory = Directory(db)
    applied: dict[str, list[str]] = {}
    for path in profile.groups:
        try:
            directory.add_member(directory.group_by_path(path), user)
        except NotFound:
            log.warning("mapped group %r does not exist", path)
            continue
        applied.setdefault("mapped_groups", []).append(path)
    for name in profile.roles:
        try:
            directory.assign_role(user, directory.role_by_name(name))
        except NotFound:
            log.warning("mapped role %r does not exist", name)
            continue
        applied.setdefault("mapped_roles", []).append(name)
    db.flush()
    return applied


# --- first-login linking waiting for proof ------------------------------------------------------


@dataclass
class PendingLink:
    """A first login waiting for the person to prove the local account ``user_id``: the
    upstream's identity, where the sign-in goes afterwards, the browser it is bound to, and
    (when one was mailed) the keyed hash of the mailed link's token."""

    user_id: int
    identity: dict[str, Any]
    rid: str | None
    next_url: str | None
    browser: str
    mail_token: str | None = None


def save_link(svc: Services, pending: PendingLink, key: str | None = None) -> str:
    key = key or secrets.token_urlsafe(24)
    svc.store.put(_CONFIRM + key, asdict(pending), CONFIRM_TTL)
    return key


def load_link(svc: Services, key: str | None, browser_secret: str | None) -> PendingLink | None:
    """The pending link ``key`` for this browser (left in place), or None."""
    if not key or len(key) > 64 or not browser_secret:
        return None
    data = svc.store.get(_CONFIRM + key)
    if not data:
        return None
    pending = PendingLink(**data)
    return pending if svc.hasher.verify(browser_secret, pending.browser) else None


def drop_link(svc: Services, key: str) -> None:
    svc.store.delete(_CONFIRM + key)


# --- upstream sessions, for upstream logout -----------------------------------------------------

_SESSION = "broker:session:"
_BY_SUBJECT = "broker:sessions-of:"


def session_ttl(svc: Services) -> int:
    cfg = svc.settings.session
    return max(cfg.max_hours * 3600, cfg.remember_me_days * 86400)


def remember_session(svc: Services, sid: str, upstream: dict[str, Any] | None) -> None:
    """Keep ``{"provider", "ref"}`` of the upstream sign-in that made SSO session ``sid`` (the
    session's longest possible life), for logging out there too; with ``subject``, the
    session is also found by the upstream's subject (an upstream that ends the person's
    session tells us: SAML's IdP-initiated logout)."""
    if not upstream or not upstream.get("ref"):
        return
    ttl = session_ttl(svc)
    svc.store.put(_SESSION + svc.hasher.hash(sid), upstream, ttl)
    if upstream.get("subject"):
        key = _BY_SUBJECT + svc.hasher.hash(f"{upstream['provider']}\n{upstream['subject']}")
        sessions = dict(svc.store.get(key) or {})
        sessions[sid] = upstream["ref"]
        svc.store.put(key, sessions, ttl)


def sessions_of(svc: Services, provider: str, subject: str) -> dict[str, str]:
    """The SSO sessions (sid: the upstream's session reference) that came through
    ``provider`` for ``subject``, taken: the caller ends them."""
    key = _BY_SUBJECT + svc.hasher.hash(f"{provider}\n{subject}")
    return dict(svc.store.take(key) or {})


def take_session(svc: Services, sid: str) -> dict[str, Any] | None:
    """The upstream sign-in behind SSO session ``sid`` (once), or None."""
    return svc.store.take(_SESSION + svc.hasher.hash(sid))
