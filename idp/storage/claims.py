"""The claims mapper on the database: loads the rules (realm defaults overridden per client or
SP) and the user, then calls the pure mapper in ``idp.core.claims``. Also the permission entry
points the protocol engines and admin surfaces use.

Stable interface (the OIDC and SAML engines call these):
    oidc_claims(db, user_id, *, client_id, scopes, claims_request=None,
                requestable_scopes=None) -> dict
    saml_attributes(db, user_id, *, sp_entity_id) -> list[SamlAttribute]
    effective_permissions(db, store, user_id) -> frozenset[str]
    has_permission(db, store, user_id, permission) -> bool
    explain(db, user_id, permission) -> list[str]
"""

from __future__ import annotations

import logging
import threading
import weakref
from itertools import chain
from typing import Any

from sqlalchemy import Engine, event, or_, select, update
from sqlalchemy.orm import Session

from ..clock import Clock
from ..core import claims as core
from ..core import rbac
from ..core.claims import SamlAttribute
from ..errors import NotFound, ValidationError
from .models import (
    ClaimRule,
    Client,
    Company,
    Department,
    Position,
    RbacState,
    SamlServiceProvider,
    User,
)
from .rbac import cached_graph, forget_generations, grants_for, load_graph, state_generation

__all__ = [
    "SamlAttribute",
    "delete_rule",
    "effective_permissions",
    "explain",
    "has_permission",
    "list_rules",
    "claims_generation",
    "claim_release_scopes",
    "load_subject",
    "oidc_claims",
    "saml_attributes",
    "save_rule",
    "seed_default_rules",
]

log = logging.getLogger(__name__)


# --- the subject -------------------------------------------------------------------------------


def _attributes(user: User) -> dict[str, Any]:
    full = " ".join(p for p in (user.given_name, user.middle_name, user.family_name) if p)
    return {
        "uuid": user.uuid,
        "username": user.username,
        "email": user.email,
        "email_verified": bool(user.email_verified),
        "given_name": user.given_name,
        "middle_name": user.middle_name,
        "family_name": user.family_name,
        "display_name": user.display_name,
        "name": user.display_name or full or None,
        "phone": user.phone,
        "phone_verified": bool(user.phone_verified),
        "avatar": user.avatar,
        "locale": user.locale,
        "timezone": user.timezone,
        "color": user.color,
        "status": user.status,
        "start_date": user.start_date,
        "end_date": user.end_date,
        "source": user.source,
        "external_id": user.external_id,
        "ldap_dn": user.ldap_dn,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def _org(row: Company | Department | Position | None) -> core.OrgName | None:
    if row is None:
        return None
    return core.OrgName(row.name, dict(row.names or {}), getattr(row, "slug", None))


def load_subject(
    db: Session, user_id: int, *, clock: Clock | None = None, user: Any = None
) -> core.Subject:
    """The user, their live groups and roles and their place in the organization. ``user``
    is the user when the caller holds it already (a ``User``, or a ``UserView``)."""
    if user is None:
        user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    now = (clock or Clock()).utcnow()
    graph = cached_graph(db, user_id)
    subject = core.Subject(attributes=_attributes(user), custom=dict(user.custom or {}))
    live_groups = {
        m.group_id for m in graph.memberships if m.expires_at is None or m.expires_at > now
    }
    direct: set[str] = set()
    for gid in live_groups:
        path = graph.group_names.get(gid)
        if path:
            direct.add(path)
            subject.groups.append((path.rsplit("/", 1)[-1], path))
    ancestors = {
        graph.group_names[a]
        for gid in live_groups
        for a in rbac.group_ancestors(gid, graph.group_parent)
        if a in graph.group_names
    }
    subject.ancestor_groups = [(p.rsplit("/", 1)[-1], p) for p in sorted(ancestors - direct)]
    for role_id in rbac.held_roles(graph, now):
        name = graph.role_names.get(role_id)
        client = graph.role_client.get(role_id)
        if name is None:
            continue
        if client is None:
            subject.roles.append(name)
        else:
            subject.client_roles.setdefault(client, []).append(name)
    subject.company = _org(user.company)
    subject.position = _org(user.position)
    if user.department is not None:
        subject.department = _org(user.department)
        ids = [int(x) for x in user.department.path.strip("/").split("/") if x]
        rows = {d.id: d for d in db.scalars(select(Department).where(Department.id.in_(ids)))}
        subject.department_path = [_org(rows[i]) for i in ids if i in rows]
    return subject


# --- rules -------------------------------------------------------------------------------------

# Parsed rules are cached per worker process and per database engine, keyed by a generation
# number kept in row CLAIMS_STATE_ID of ``rbac_state`` (row 1 is the RBAC generation). Every
# change to claim rules -- and every deletion of a client or SP, whose rules the database
# deletes by cascade -- bumps it in the same transaction (ORM events below), so another worker
# sees the change at its next request: one single-row read instead of loading and parsing every
# rule on every sign-in.
CLAIMS_STATE_ID = 2
_CACHE_MAX = 2048  # (client or SP) entries per engine before the cache starts over
_DIRTY = "claim_rules_changed_in_transaction"
_RULE_OWNERS = (ClaimRule, Client, SamlServiceProvider)


class _RuleCache:
    def __init__(self) -> None:
        self.generation: int | None = None
        self.rules: dict[tuple[str, str | None], list[core.Rule]] = {}


_caches: weakref.WeakKeyDictionary[Engine, _RuleCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def bump_claims_generation(session: Session) -> None:
    """Make every worker's cached rules stale once this transaction commits."""
    session.info[_DIRTY] = True
    forget_generations(session)
    done = session.execute(
        update(RbacState)
        .where(RbacState.id == CLAIMS_STATE_ID)
        .values(generation=RbacState.generation + 1)
    )
    if done.rowcount == 0:
        session.add(RbacState(id=CLAIMS_STATE_ID, generation=1))


def claims_generation(db: Session) -> int:
    return state_generation(db, CLAIMS_STATE_ID)


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    changed = chain(session.new, (o for o in session.dirty if session.is_modified(o)))
    if any(isinstance(o, ClaimRule) for o in changed) or any(
        isinstance(o, _RULE_OWNERS) for o in session.deleted
    ):
        bump_claims_generation(session)


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk(state: Any) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    name = getattr(getattr(state.statement, "table", None), "name", None)
    if name == ClaimRule.__tablename__ or (
        state.is_delete and name in (Client.__tablename__, SamlServiceProvider.__tablename__)
    ):
        bump_claims_generation(state.session)


@event.listens_for(Session, "after_transaction_end")
def _clear_flag(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_DIRTY, None)


def _parsed(rows: list[ClaimRule]) -> list[core.Rule]:
    out = []
    for row in rows:
        try:
            out.append(core.parse_rule(row.rule, scope=row.scope, enabled=row.enabled))
        except core.ClaimRuleError as exc:
            # Saved rules are validated; one edited behind our back must not break every login.
            log.warning("claim rule %s is not usable and is skipped: %s", row.id, exc)
    return out


def _load_rules(db: Session, client_id: str | None, sp_entity_id: str | None) -> list[core.Rule]:
    realm = (ClaimRule.client_id.is_(None)) & (ClaimRule.sp_entity_id.is_(None))
    own = (
        ClaimRule.client_id == client_id
        if client_id is not None
        else ClaimRule.sp_entity_id == sp_entity_id
        if sp_entity_id is not None
        else None
    )
    cond = realm if own is None else or_(realm, own)
    rows = db.scalars(select(ClaimRule).where(cond).order_by(ClaimRule.sort_order, ClaimRule.id))
    defaults, overrides = [], []
    for row in rows:
        (defaults if row.client_id is None and row.sp_entity_id is None else overrides).append(row)
    key = "target" if sp_entity_id is None else "saml_name"
    return core.merge_rules(_parsed(defaults), _parsed(overrides), key)


def _rules_for(
    db: Session, *, client_id: str | None = None, sp_entity_id: str | None = None
) -> list[core.Rule]:
    """The merged rules for a client or SP, from this worker's cache when the generation in the
    database has not moved since they were loaded."""
    if db.autoflush:
        # What the ORM queries below would flush anyway, flushed before the generation is read,
        # so that a rule pending in this transaction marks it as changed first.
        db.flush()
    if db.info.get(_DIRTY):
        # This transaction changed rules it has not committed: neither trust nor fill the cache.
        return _load_rules(db, client_id, sp_entity_id)
    engine = db.get_bind()
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = _RuleCache()
    # The generation is read before the rules: rules loaded after a concurrent change are
    # newer than the generation they are stored under, never older.
    gen = claims_generation(db)
    key = ("client", client_id) if client_id is not None else ("sp", sp_entity_id)
    with _caches_lock:
        if cache.generation != gen:
            cache.generation = gen
            cache.rules = {}
        found = cache.rules.get(key)
    if found is not None:
        return list(found)
    rules = _load_rules(db, client_id, sp_entity_id)
    with _caches_lock:
        if cache.generation == gen:
            if len(cache.rules) >= _CACHE_MAX:
                cache.rules = {}
            cache.rules[key] = rules
    return list(rules)


def oidc_claims(
    db: Session,
    user_id: int,
    *,
    client_id: str | None,
    scopes: list[str],
    claims_request: dict | None = None,
    requestable_scopes: list[str] | None = None,
    clock: Clock | None = None,
    user: Any = None,
) -> dict:
    """Claims for an ID token or userinfo response. ``claims_request`` is the member of the
    OIDC ``claims`` parameter for the token being built (its ``id_token`` or ``userinfo``
    object, OIDC Core §5.5): the claims named there are released without their scope being
    granted, when that scope is in ``requestable_scopes`` (the scopes the client may hold;
    None: any). Never returns ``sub`` or another registered claim: the token service sets
    those."""
    rules = _rules_for(db, client_id=client_id)
    subject = load_subject(db, user_id, clock=clock, user=user)
    requested = list(claims_request) if isinstance(claims_request, dict) else []
    return core.map_oidc(
        rules,
        subject,
        scopes=scopes,
        client_id=client_id,
        requested=requested,
        requestable_scopes=requestable_scopes,
    )


def claim_release_scopes(db: Session, client_id: str | None) -> dict[str, set[str | None]]:
    """For each OIDC claim this client's rules produce: the scopes that release it (None: a
    rule without a scope)."""
    return core.release_scopes(_rules_for(db, client_id=client_id))


def saml_attributes(
    db: Session,
    user_id: int,
    *,
    sp_entity_id: str,
    clock: Clock | None = None,
    user: Any = None,
) -> list[SamlAttribute]:
    """Attributes for a SAML assertion to ``sp_entity_id``: realm defaults, overridden per SP
    (a per-SP rule replaces the default with the same ``saml_name``). ``user`` as for
    ``load_subject``."""
    rules = _rules_for(db, sp_entity_id=sp_entity_id)
    return core.map_saml(rules, load_subject(db, user_id, clock=clock, user=user))


def save_rule(
    db: Session,
    rule: dict[str, Any],
    *,
    client_id: str | None = None,
    sp_entity_id: str | None = None,
    scope: str | None = None,
    sort_order: int = 0,
    enabled: bool = True,
    rule_id: int | None = None,
) -> ClaimRule:
    """Create (or, with ``rule_id``, replace) a rule after validating it; raises
    ValidationError with nothing written when the rule is refused."""
    if client_id is not None and sp_entity_id is not None:
        raise ValidationError("a rule belongs to one client or one SP, not both")
    try:
        core.parse_rule(rule, scope=scope, enabled=enabled)
    except core.ClaimRuleError as exc:
        raise ValidationError(str(exc)) from None
    if client_id is not None and db.get(Client, client_id) is None:
        raise NotFound(f"no client {client_id!r}")
    if sp_entity_id is not None and db.get(SamlServiceProvider, sp_entity_id) is None:
        raise NotFound(f"no service provider {sp_entity_id!r}")
    row = db.get(ClaimRule, rule_id) if rule_id is not None else ClaimRule()
    if row is None:
        raise NotFound(f"no claim rule {rule_id}")
    row.rule = dict(rule)
    row.client_id = client_id
    row.sp_entity_id = sp_entity_id
    row.scope = scope
    row.sort_order = sort_order
    row.enabled = enabled
    if rule_id is None:
        db.add(row)
    db.flush()
    return row


def delete_rule(db: Session, rule_id: int) -> None:
    row = db.get(ClaimRule, rule_id)
    if row is None:
        raise NotFound(f"no claim rule {rule_id}")
    db.delete(row)
    db.flush()


def list_rules(
    db: Session, *, client_id: str | None = None, sp_entity_id: str | None = None
) -> list[ClaimRule]:
    """The realm rules (no arguments) or those of one client or SP."""
    stmt = select(ClaimRule).where(
        ClaimRule.client_id.is_(None) if client_id is None else ClaimRule.client_id == client_id,
        ClaimRule.sp_entity_id.is_(None)
        if sp_entity_id is None
        else ClaimRule.sp_entity_id == sp_entity_id,
    )
    return list(db.scalars(stmt.order_by(ClaimRule.sort_order, ClaimRule.id)))


def seed_default_rules(db: Session) -> list[str]:
    """Add the default realm rules that are missing (by their ``seed`` name). An admin who
    does not want one disables it; deleted ones come back at the next ``idp init``."""
    present = {r.rule.get("seed") for r in list_rules(db) if isinstance(r.rule, dict)}
    created = []
    for order, (scope, rule) in enumerate(core.DEFAULT_RULES):
        if rule["seed"] in present:
            continue
        save_rule(db, rule, scope=scope, sort_order=order * 10)
        created.append(rule["seed"])
    return created


# --- permissions -------------------------------------------------------------------------------


def effective_permissions(
    db: Session, store: Any, user_id: int, *, clock: Clock | None = None
) -> frozenset[str]:
    """The permissions the user holds everywhere (normalized to three parts, wildcards kept),
    through direct roles, groups and their parents, composites and permission groups.
    Permissions held only in a company/department scope are checked with
    ``idp.storage.rbac.Authorizer`` against a target user."""
    return grants_for(db, store, user_id, clock=clock).everywhere


def has_permission(
    db: Session, store: Any, user_id: int, permission: str, *, clock: Clock | None = None
) -> bool:
    """Deny by default: True only when a live global grant allows the concrete permission."""
    try:
        rbac.check_form(permission)
    except rbac.PermissionError_:
        return False
    return grants_for(db, store, user_id, clock=clock).allows(permission)


def explain(db: Session, user_id: int, permission: str, *, clock: Clock | None = None) -> list[str]:
    """Why the user has ``permission``: one line per path that grants it (empty: they don't)."""
    try:
        rbac.check_form(permission)
    except rbac.PermissionError_ as exc:
        raise ValidationError(str(exc)) from None
    if db.get(User, user_id) is None:
        raise NotFound(f"no user with id {user_id}")
    return rbac.explain(load_graph(db, user_id), permission, (clock or Clock()).utcnow())
