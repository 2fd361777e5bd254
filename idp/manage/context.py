"""Who acts, and the unit of work every management operation runs in.

An operation takes a :class:`Context`: the database session of one transaction, the services,
and the :class:`Actor`. It checks the permission first (``require``), changes rows through
the repositories, and writes its audit row in the same transaction, so the change and its
record commit together or not at all. Work that must only happen once the change is visible
to other workers (a cache generation bump) is queued with ``after_commit``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import rbac
from ..errors import Conflict, Forbidden
from ..services import Services
from ..storage import audit as audit_rows
from ..storage.directory import Directory
from ..storage.models import Role
from ..storage.rbac import Authorizer, covers, service_account_grants

ActorKind = Literal["operator", "user", "service"]


class Unset(enum.Enum):
    """A merge-patch field the caller did not send (``None`` means "clear it")."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class Actor:
    """Who acts.

    ``operator``: the local operator at the command line, who holds every permission (they
    own the machine and the database). ``user``: a signed-in administrator, checked against
    their RBAC grants including delegation scopes (``idp.storage.rbac.Authorizer``).
    ``service``: a client's service account (client_credentials), checked against the
    permissions of its service roles. ``name`` is what the audit rows record as the actor;
    ``ip``, ``user_agent`` and ``request_id`` come from the request that asked, when there is
    one."""

    kind: ActorKind
    name: str
    user_id: int | None = None
    client_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    user_agent: str | None = None

    @classmethod
    def operator(cls, name: str = "cli") -> Actor:
        return cls("operator", name)

    @classmethod
    def user(
        cls,
        user_id: int,
        user_uuid: str,
        *,
        ip: str | None = None,
        request_id: str | None = None,
        user_agent: str | None = None,
    ) -> Actor:
        return cls(
            "user",
            user_uuid,
            user_id=user_id,
            ip=ip,
            request_id=request_id,
            user_agent=user_agent,
        )

    @classmethod
    def service(
        cls,
        client_id: str,
        *,
        ip: str | None = None,
        request_id: str | None = None,
        user_agent: str | None = None,
    ) -> Actor:
        return cls(
            "service",
            f"client:{client_id}",
            client_id=client_id,
            ip=ip,
            request_id=request_id,
            user_agent=user_agent,
        )


class Context:
    """One unit of work of one actor: ``db`` is the caller's transaction."""

    def __init__(self, db: Session, svc: Services, actor: Actor) -> None:
        self.db = db
        self.svc = svc
        self.actor = actor
        self.directory = Directory(db, svc.clock)
        self._after_commit: list[Callable[[], Any]] = []
        self._service_grants: frozenset[str] | None = None

    # --- permission checks -------------------------------------------------------------------

    def _authorizer(self) -> Authorizer:
        return Authorizer(self.db, self.svc.store, self.svc.clock)

    def _service(self) -> frozenset[str]:
        if self._service_grants is None:
            self._service_grants = service_account_grants(
                self.db, self.actor.client_id or "", clock=self.svc.clock
            )
        return self._service_grants

    def allowed(self, permission: str, target_user_id: int | None = None) -> bool:
        """May the actor do ``permission`` (a concrete module:feature:action), over this
        target user when there is one (delegation scopes count only with a target)?"""
        kind = self.actor.kind
        if kind == "operator":
            return True
        if kind == "user" and self.actor.user_id is not None:
            return self._authorizer().authorize(self.actor.user_id, permission, target_user_id)
        if kind == "service":
            try:
                return rbac.allows(self._service(), permission)
            except rbac.PermissionError_:
                return False
        return False

    def require(self, permission: str, target_user_id: int | None = None) -> None:
        if not self.allowed(permission, target_user_id):
            raise Forbidden(f"permission {permission} is required for this")

    def require_holds(self, grants: Iterable[str], target_user_id: int | None = None) -> None:
        """Nobody hands out more than they hold: the actor must hold every permission in
        ``grants`` (over the target, when there is one) to give them to someone."""
        needed = sorted(grants)
        if not needed or self.actor.kind == "operator":
            return
        if self.actor.kind == "user" and self.actor.user_id is not None:
            held: Iterable[str] = self._authorizer().held_over(self.actor.user_id, target_user_id)
        elif self.actor.kind == "service":
            held = self._service()
        else:
            held = ()
        held = list(held)
        for permission in needed:
            if not any(covers(h, permission) for h in held):
                raise Forbidden(f"you do not hold {permission}, so you cannot give it")

    def require_holds_within(
        self,
        grants: Iterable[str],
        *,
        company_id: int | None = None,
        department_id: int | None = None,
    ) -> None:
        """What is given applies to a whole scope (a role assignment's delegation scope, or
        everywhere; a group's roles always apply everywhere): the actor must hold every
        permission in ``grants`` over all of that scope. A delegated administrator holding a
        role over their company cannot give it for another company or for everyone."""
        needed = sorted(grants)
        if not needed or self.actor.kind == "operator":
            return
        if self.actor.kind == "user" and self.actor.user_id is not None:
            held: Iterable[str] = self._authorizer().held_within(
                self.actor.user_id, company_id, department_id
            )
        elif self.actor.kind == "service":
            held = self._service()
        else:
            held = ()
        held = list(held)
        for permission in needed:
            if not any(covers(h, permission) for h in held):
                where = "there" if company_id or department_id else "everywhere"
                raise Forbidden(
                    f"you do not hold {permission} {where}, so you cannot give it {where}"
                )

    def require_holds_roles(
        self, role_ids: Iterable[int], target_user_id: int | None, everywhere: str
    ) -> None:
        """A delegated administrator gives only roles they hold themselves (over the target):
        an application's role carries no IdP permission, so ``require_holds`` alone would let
        anyone with users:roles:assign in a company hand out every role. Whoever holds
        ``everywhere`` unscoped (a global administrator), the operator and service accounts
        (whose grants are global) are not limited by it."""
        ids = sorted(set(role_ids))
        if not ids or self.actor.kind != "user" or self.actor.user_id is None:
            return
        missing = self._authorizer().may_give_roles(
            self.actor.user_id, ids, target_user_id, everywhere
        )
        if missing:
            names = sorted(self.db.scalars(select(Role.name).where(Role.id.in_(missing))).all())
            raise Forbidden(
                f"you do not hold the role {', '.join(names)}, so you cannot give it "
                "(a delegated administrator gives only roles they hold)"
            )

    def require_kept(self, permission: str, target_user_id: int | None = None) -> None:
        """After a change in this transaction: refuse it (Conflict, so the transaction rolls
        back) when it took ``permission`` away from the actor who made it. Nobody locks
        themselves out of the IdP by editing a role or group they hold; another
        administrator can make the change."""
        self._service_grants = None  # recomputed from this transaction's rows
        if not self.allowed(permission, target_user_id):
            raise Conflict(
                f"this change would take {permission} away from you; "
                "another administrator has to make it"
            )

    # --- audit and commit hooks ----------------------------------------------------------------

    def audit(self, action: str, target: str | None = None, **details: Any) -> None:
        """An audit row in this transaction: committed with the change it records."""
        audit_rows.audit(
            self.db,
            action,
            at=self.svc.clock.utcnow(),
            actor=self.actor.name,
            target=target,
            ip=self.actor.ip,
            user_agent=self.actor.user_agent,
            request_id=self.actor.request_id,
            **details,
        )

    def after_commit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once the transaction has committed (see :func:`transaction`)."""
        self._after_commit.append(fn)

    def committed(self) -> None:
        hooks, self._after_commit = self._after_commit, []
        for fn in hooks:
            fn()


@contextmanager
def transaction(svc: Services, actor: Actor) -> Iterator[Context]:
    """A transaction for ``actor``'s operations: committed when the block ends, rolled back
    (audit rows included) when it raises; ``after_commit`` work runs after the commit."""
    with svc.sessions.begin() as db:
        ctx = Context(db, svc, actor)
        yield ctx
    ctx.committed()
