"""The SQL side of the durable mail queue (``idp.delivery.mail.MailQueue``), table ``mail_outbox``.

Every method is one short transaction of its own. A worker takes a row with a conditional
``UPDATE ... WHERE id = :id AND (lease_until IS NULL OR lease_until < :now)`` and owns it when
exactly one row changed: plain SQL that SQLite and PostgreSQL both serialise, so two workers (or
two nodes) never hold the same row at once.

A queued message may carry a one-time link (a password reset, a sign-in link) until it is sent:
with a ``sealer`` it is kept sealed (AES-GCM, bound to its row), so a copy of the table holds no
usable token. A row written before sealing (plain RFC 5322 bytes) is still read as it is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from .models_mail import MailOutbox

RENDERING, QUEUED, FAILED = "rendering", "queued", "failed"
SEALED = b"v1:"  # idp.crypto.Sealer's prefix; an RFC 5322 message never starts with it


class SqlOutbox:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        now: Callable[[], datetime],
        lease_seconds: float,
        sealer: Any = None,
    ) -> None:
        self.sessions = sessions
        self.now = now
        self.lease = timedelta(seconds=lease_seconds)
        self.sealer = sealer

    def _seal(self, row_id: int, message: bytes) -> bytes:
        if self.sealer is None:
            return message
        return self.sealer.seal(message, context=f"mail-outbox:{row_id}").encode()

    def _open(self, row_id: int, stored: bytes) -> bytes:
        if self.sealer is None or not stored.startswith(SEALED):
            return stored
        return self.sealer.open(stored.decode(), context=f"mail-outbox:{row_id}")

    def add(self, name: str, owner: str) -> int:
        """A row for a mail this worker is about to render (leased to it meanwhile)."""
        now = self.now()
        row = MailOutbox(
            name=name[:64],
            state=RENDERING,
            due_at=now,
            lease_owner=owner,
            lease_until=now + self.lease,
            created_at=now,
        )
        with self.sessions.begin() as db:
            db.add(row)
        return row.id

    def rendered(self, row_id: int, message: bytes | None, owner: str | None = None) -> None:
        """The message is ready (queued, due now), or there is none to send (row gone). With
        ``owner`` the row stays leased to it for a new lease: the worker that rendered it sends
        it from memory without claiming it back (another takes it once that lease runs out)."""
        now = self.now()
        with self.sessions.begin() as db:
            if message is None:
                db.execute(delete(MailOutbox).where(MailOutbox.id == row_id))
                return
            db.execute(
                update(MailOutbox)
                .where(MailOutbox.id == row_id)
                .values(
                    state=QUEUED,
                    message=self._seal(row_id, message),
                    due_at=now,
                    lease_owner=owner,
                    lease_until=None if owner is None else now + self.lease,
                )
            )

    def claim(self, owner: str) -> tuple[int, str, bytes, int] | None:
        """The next due row, leased to ``owner``: (id, name, message, attempts made so far);
        None when nothing is due. One at a time, so a lease never runs out while it waits."""
        now = self.now()
        free = or_(MailOutbox.lease_until.is_(None), MailOutbox.lease_until < now)
        with self.sessions() as db:
            ids = db.scalars(
                select(MailOutbox.id)
                .where(MailOutbox.state == QUEUED, MailOutbox.due_at <= now, free)
                .order_by(MailOutbox.due_at, MailOutbox.id)
                .limit(5)
            ).all()
        for row_id in ids:  # another worker may win a row between the look and the take
            with self.sessions.begin() as db:
                won = db.execute(
                    update(MailOutbox)
                    .where(MailOutbox.id == row_id, MailOutbox.state == QUEUED, free)
                    .values(lease_owner=owner, lease_until=now + self.lease)
                ).rowcount
                if won == 1:
                    row = db.get(MailOutbox, row_id)
                    try:
                        return row.id, row.name, self._open(row.id, row.message), row.attempts
                    except ValueError:  # sealed under another key: nobody can send it
                        row.state, row.message, row.lease_owner, row.lease_until = (
                            FAILED,
                            None,
                            None,
                            None,
                        )
                        row.last_error = "sealed with a key this node does not have"
        return None

    def sent(self, row_id: int, owner: str) -> None:
        with self.sessions.begin() as db:
            db.execute(
                delete(MailOutbox).where(MailOutbox.id == row_id, MailOutbox.lease_owner == owner)
            )

    def retry(self, row_id: int, owner: str, attempts: int, delay: float, error: str) -> None:
        self._release(
            row_id,
            owner,
            attempts=attempts,
            due_at=self.now() + timedelta(seconds=delay),
            last_error=error[:500],
        )

    def failed(self, row_id: int, owner: str, attempts: int, error: str) -> None:
        # The message (it may hold a sign-in link) is not kept once nobody will send it.
        self._release(
            row_id, owner, state=FAILED, message=None, attempts=attempts, last_error=error[:500]
        )

    def release(self, row_id: int, owner: str) -> None:
        """Give a leased row back unsent: any worker may claim it now."""
        self._release(row_id, owner)

    def _release(self, row_id: int, owner: str, **values) -> None:
        with self.sessions.begin() as db:
            db.execute(
                update(MailOutbox)
                .where(MailOutbox.id == row_id, MailOutbox.lease_owner == owner)
                .values(lease_owner=None, lease_until=None, **values)
            )

    def abandoned(self) -> list[str]:
        """Rows whose worker ended before it rendered them (their lease ran out): marked failed,
        their names returned for the log. The message was never made, so nobody can send it."""
        now = self.now()
        with self.sessions.begin() as db:
            rows = db.scalars(
                select(MailOutbox).where(
                    MailOutbox.state == RENDERING, MailOutbox.lease_until < now
                )
            ).all()
            for row in rows:
                row.state, row.lease_owner, row.lease_until = FAILED, None, None
                row.last_error = "the worker that queued it ended before rendering it"
            return [row.name for row in rows]

    def pending(self) -> tuple[int, float | None]:
        """How many rows still wait (rendering or queued), and seconds until one of the queued
        ones may be taken (due, and no other worker's lease on it); None when none is queued."""
        leased = and_(
            MailOutbox.lease_until.is_not(None), MailOutbox.lease_until > MailOutbox.due_at
        )
        takeable = case((leased, MailOutbox.lease_until), else_=MailOutbox.due_at)
        with self.sessions() as db:
            count, due = db.execute(
                select(
                    func.count(MailOutbox.id),
                    func.min(case((MailOutbox.state == QUEUED, takeable))),
                ).where(MailOutbox.state.in_((RENDERING, QUEUED)))
            ).one()
        if due is None:
            return count, None
        if isinstance(due, str):  # SQLite hands the CASE back as text
            due = datetime.fromisoformat(due)
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        return count, max(0.0, (due - self.now()).total_seconds())
