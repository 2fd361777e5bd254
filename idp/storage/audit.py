"""Audit rows: who did what to whom, from where. Written in the caller's transaction, so a row
is committed with the change it records (or not at all), and hash-chained in commit order.

The chain: every row has a position ``seq`` (1, 2, 3 ... without gaps) and
``row_hash = SHA-256(canonical JSON of seq, at, actor, action, target, request_id,
personal_digest, prev_hash)``, where ``prev_hash`` is the previous row's ``row_hash`` (64 zeros
before the first row). The personal fields (ip, user_agent, details) enter only through
``personal_digest`` (the SHA-256 of their canonical JSON), so an erasure can blank them and the
chain still verifies. Writers take their positions by updating the one-row ``audit_chain_head``
(``UPDATE ... RETURNING``: a row lock on PostgreSQL, the write lock on SQLite) and hold it until
they commit, so positions follow commit order across workers and nodes. ``verify_chain`` walks
the rows and names the first one that was edited, deleted, inserted or moved.

Rows added with :func:`audit` wait in the unit of work and are chained when it flushes (a
``before_flush`` hook), so the chain head is locked only at the commit, after any store write;
:func:`audit_now` chains and sends its row at once (hot paths). Chaining costs two statements
per transaction besides the inserts: the head update and the read of the previous hash. A
session whose ``info`` holds ``SINK`` (a callable) hands it the rows it chained once its
transaction commits (a SIEM stream); a rolled-back transaction hands over nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from .. import metrics
from .db import Precompiled, dbapi_transaction
from .models import AuditEvent
from .models_audit import AuditChainHead, AuditCheckpoint

log = logging.getLogger(__name__)

GENESIS = "0" * 64
ERASED_ACTION = "user.erased"
PRUNED_ACTION = "audit.pruned"
SINK = "audit_sink"  # Session.info key: a callable taking the committed rows (list of dicts)
_EMIT = "audit_emit"  # Session.info key: rows chained in the open transaction, for the sink
_COUNT = "audit_count"  # Session.info key: (action, details) of rows to count once committed
_USER_AGENT_MAX = 512
# What audit_alone may write: rows no engine listener watches for (the security digest's kinds).
ALONE_ACTIONS = frozenset({"token.issued"})

_EVENTS = AuditEvent.__table__
# The columns a chained row sets (``_chain``): all but ``id``, which the database gives.
_ROW_FIELDS = tuple(c.name for c in _EVENTS.c if c.name != "id")
_HEAD = AuditChainHead.__table__
_CHECKPOINTS = AuditCheckpoint.__table__


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def personal_digest(ip: str | None, user_agent: str | None, details: Any) -> str:
    """The hash that stands for a row's personal fields in its row hash."""
    body = {"ip": ip, "user_agent": user_agent, "details": details or {}}
    return hashlib.sha256(_canonical(body)).hexdigest()


def row_hash(row: Mapping[str, Any]) -> str:
    """The hash of one row: its non-personal fields, its personal digest and the previous hash."""
    body = {
        "v": 1,
        "seq": row["seq"],
        "at": _iso(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "request_id": row["request_id"],
        "personal_digest": row["personal_digest"],
        "prev_hash": row["prev_hash"],
    }
    return hashlib.sha256(_canonical(body)).hexdigest()


def audit_values(
    action: str,
    *,
    at: datetime,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit row (before it is chained). The details go through JSON
    once, so the digest is taken over exactly what the database will hand back."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "ip": ip,
        "user_agent": user_agent[:_USER_AGENT_MAX] if user_agent else None,
        "request_id": request_id,
        "details": json.loads(json.dumps(details)) if details else {},
    }


# --- writing -------------------------------------------------------------------------------


class _HeadSql:
    """The statements that chain a row (take a position, read the previous hash, insert),
    built once per dialect (they run on every audited request: building them cost more than
    running them, ``db.Precompiled``)."""

    _built: dict[str, _HeadSql] = {}

    def __init__(self, dialect: Any) -> None:
        self.take = Precompiled(
            dialect,
            update(_HEAD)
            .where(_HEAD.c.id == 1)
            .values(seq=_HEAD.c.seq + bindparam("count"))
            .returning(_HEAD.c.seq),
        )
        self.prev = Precompiled(
            dialect, select(_EVENTS.c.row_hash).where(_EVENTS.c.seq == bindparam("seq"))
        )
        self.insert = insert(_EVENTS)  # built once: found in the compiled cache by identity
        # audit_alone's insert, run on the DBAPI connection: each value through its column
        # type's bind processor, as SQLAlchemy would (timestamps, JSON).
        self.insert_raw = Precompiled(
            dialect, insert(_EVENTS).values({name: bindparam(name) for name in _ROW_FIELDS})
        )
        self._process = {
            name: _EVENTS.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in _ROW_FIELDS
        }

    def bind(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: row[name] if process is None else process(row[name])
            for name, process in self._process.items()
        }

    @classmethod
    def of(cls, conn: Connection) -> _HeadSql:
        return cls.for_dialect(conn.dialect)

    @classmethod
    def for_dialect(cls, dialect: Any) -> _HeadSql:
        built = cls._built.get(dialect.name)
        if built is None:
            built = cls._built[dialect.name] = cls(dialect)
        return built


def _scalar(conn: Connection, sql: Precompiled, **params: Any) -> Any:
    return conn.exec_driver_sql(sql.text, sql.args(params)).scalar()


def _take_positions(conn: Connection, count: int) -> tuple[int, str]:
    """Lock the chain head and take ``count`` positions: (the first position, the hash of the
    row before it). The lock is held until the transaction ends. The previous hash is read by
    a statement of its own: on PostgreSQL a statement that waited for the lock still reads
    with the snapshot it started with, which misses the row of the writer it waited for."""
    sql = _HeadSql.of(conn)
    last = _scalar(conn, sql.take, count=count)
    if last is None:  # the first audit row of a new database
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(_HEAD).values(id=1, seq=0).on_conflict_do_nothing())
        last = _scalar(conn, sql.take, count=count)
    first = last - count + 1
    if first == 1:
        return first, GENESIS
    prev = _scalar(conn, sql.prev, seq=first - 1)
    # A missing previous row (deleted behind the chain's back) chains to zeros, which
    # verification reports where the rows went missing.
    return first, prev or GENESIS


def _chain(values: list[dict[str, Any]], first: int, prev: str) -> list[dict[str, Any]]:
    chained = []
    for offset, row in enumerate(values):
        row = dict(row)
        row["seq"] = first + offset
        row["prev_hash"] = prev
        row["personal_digest"] = personal_digest(row["ip"], row["user_agent"], row["details"])
        row["erased_at"] = None
        row["row_hash"] = prev = row_hash(row)
        chained.append(row)
    return chained


def _insert_chained(conn: Connection, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chain and insert ``values`` in ``conn``'s transaction; the rows as inserted."""
    first, prev = _take_positions(conn, len(values))
    rows = _chain(values, first, prev)
    conn.execute(_HeadSql.of(conn).insert, rows)
    return rows


def _append(db: Session, values: list[dict[str, Any]]) -> None:
    """Chain and insert ``values`` in ``db``'s transaction."""
    rows = _insert_chained(db.connection(), values)
    db.info.setdefault(_COUNT, []).extend((row["action"], row["details"]) for row in rows)
    if db.info.get(SINK) is not None:
        db.info.setdefault(_EMIT, []).extend(rows)


def _values_of(
    action: str,
    *,
    at: datetime,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """:func:`audit_values` from the keywords the writers below take."""
    return audit_values(
        action,
        at=at,
        actor=actor,
        target=target,
        ip=ip,
        user_agent=user_agent,
        request_id=request_id,
        details=details,
    )


def audit(db: Session, action: str, **fields: Any) -> None:
    """Add an audit row to ``db``'s unit of work (chained and committed with the change it
    records). ``fields``: ``at`` (required), ``actor``, ``target``, ``ip``, ``user_agent``,
    ``request_id``; any other keyword is a detail."""
    db.add(AuditEvent(**_values_of(action, **fields)))


def audit_now(db: Session, action: str, **fields: Any) -> None:
    """:func:`audit` chained and sent at once on the session's connection: no unit of work to
    flush at the commit (for hot paths). It takes the chain head's lock (SQLite's write lock),
    so call it when the transaction is about to commit, after any store write."""
    _append(db, [_values_of(action, **fields)])


def _append_raw(engine: Engine, values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Chain and insert one row in a transaction of its own on a pooled DBAPI connection (SQLite:
    the database is a file of this machine, no connection to lose); the chained row, or None
    (nothing written) while the chain head row does not exist yet."""
    sql = _HeadSql.for_dialect(engine.dialect)
    with dbapi_transaction(engine, immediate=True) as cursor:
        cursor.execute(sql.take.text, sql.take.args({"count": 1}))
        found = cursor.fetchone()
        if found is None:
            return None  # (the update changed nothing: the commit writes nothing)
        first = found[0]
        prev = GENESIS
        if first > 1:
            cursor.execute(sql.prev.text, sql.prev.args({"seq": first - 1}))
            found = cursor.fetchone()
            prev = (found[0] if found else None) or GENESIS
        rows = _chain([values], first, prev)
        cursor.execute(sql.insert_raw.text, sql.insert_raw.args(sql.bind(rows[0])))
    return rows


def audit_alone(sessions: sessionmaker[Session], action: str, **fields: Any) -> None:
    """:func:`audit_now` for a row that records no other change: its own short transaction on
    a connection of ``sessions``' engine, without an ORM session and its unit of work (the hot
    path of client_credentials grants, where that machinery cost several times the three
    statements). Committed before this returns; then counted and handed to the session
    factory's sink like any other row. On SQLite the engine's ``before_execute`` listeners do
    not see the insert (the security digest watches for its kinds of rows there): only for
    actions no such listener waits for (``ALONE_ACTIONS``)."""
    if action not in ALONE_ACTIONS:
        raise ValueError(f"{action} rows are written with audit() or audit_now()")
    values = _values_of(action, **fields)
    engine: Engine = sessions.kw["bind"]
    # On SQLite straight on the DBAPI connection (as the store does). Elsewhere on a SQLAlchemy
    # connection, which tells a dropped connection from other errors and replaces it.
    rows = _append_raw(engine, values) if engine.dialect.name == "sqlite" else None
    if rows is None:  # (or the database's first audit row: the head row is made on the way)
        with engine.begin() as conn:
            rows = _insert_chained(conn, [values])
    _committed([(action, values["details"])], rows, (sessions.kw.get("info") or {}).get(SINK))


@event.listens_for(Session, "before_flush")
def _chain_pending(session: Session, _context: Any, _instances: Any) -> None:
    """Audit rows added to a unit of work are chained and inserted here, in the order they were
    added, instead of by the unit of work (which knows nothing of the chain)."""
    pending = [obj for obj in session.new if isinstance(obj, AuditEvent)]
    if not pending:
        return
    pending.sort(key=lambda obj: inspect(obj).insert_order)
    values = [
        audit_values(
            obj.action,
            at=obj.at or datetime.now(UTC),
            actor=obj.actor,
            target=obj.target,
            ip=obj.ip,
            user_agent=obj.user_agent,
            request_id=obj.request_id,
            details=obj.details,
        )
        for obj in pending
    ]
    for obj in pending:
        session.expunge(obj)
    _append(session, values)


def _committed(
    counted: Iterable[tuple[str, Any]],
    rows: list[dict[str, Any]] | None,
    sink: Callable[[list[dict[str, Any]]], None] | None,
) -> None:
    """Once rows are committed: count them (``counted``: their action and details) and hand
    ``rows`` to the SIEM stream's ``sink``, when there is one."""
    for action, details in counted:
        metrics.audited(action, details)
    if not rows or sink is None:
        return
    try:
        sink(rows)
    except Exception:  # a SIEM that is down never fails the change that was committed
        log.exception("audit stream: %d row(s) not sent", len(rows))


@event.listens_for(Session, "after_commit")
def _emit_committed(session: Session) -> None:
    _committed(
        session.info.pop(_COUNT, ()), session.info.pop(_EMIT, None), session.info.get(SINK)
    )


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_EMIT, None)
    session.info.pop(_COUNT, None)


def stream_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One chained row as a JSON-ready object (what the SIEM stream sends)."""
    out = {k: row[k] for k in ("seq", "actor", "action", "target", "ip", "user_agent")}
    out.update(
        at=_iso(row["at"]),
        request_id=row["request_id"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        row_hash=row["row_hash"],
    )
    return out


# --- erasure -------------------------------------------------------------------------------


def erase_subject(db: Session, subject_uuid: str, *, at: datetime) -> int:
    """Blank ip, user agent and details of every audit row whose actor or target is
    ``subject_uuid`` and mark them erased; the number of rows blanked. The row hashes keep
    holding (the personal digest stays), and verification accepts the blank rows only while a
    chained ``user.erased`` event with this subject as its target exists: the caller writes
    that event in the same transaction."""
    result = db.execute(
        update(AuditEvent)
        .where(
            or_(AuditEvent.actor == subject_uuid, AuditEvent.target == subject_uuid),
            AuditEvent.erased_at.is_(None),
        )
        .values(ip=None, user_agent=None, details={}, erased_at=at)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    rows: int
    last_id: int | None
    last_seq: int | None


def prune(
    db: Session,
    *,
    before: datetime,
    at: datetime,
    dry_run: bool = False,
    actor: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> Pruned:
    """Delete the rows written before ``before`` — the oldest part of the chain, up to the first
    row that is kept — after chaining an ``audit.pruned`` event that names the last deleted row
    (target ``seq:N``) and recording a checkpoint, from which verification then starts."""
    first_kept = db.scalar(select(func.min(_EVENTS.c.id)).where(_EVENTS.c.at >= before))
    span = [] if first_kept is None else [_EVENTS.c.id < first_kept]
    if dry_run:
        count, last_id, last_seq = db.execute(
            select(func.count(), func.max(_EVENTS.c.id), func.max(_EVENTS.c.seq)).where(*span)
        ).one()
        return Pruned(int(count or 0), last_id, last_seq)
    conn = db.connection()
    first, prev = _take_positions(conn, 1)
    last = conn.execute(
        select(_EVENTS.c.id, _EVENTS.c.seq, _EVENTS.c.row_hash)
        .where(*span, _EVENTS.c.seq < first)
        .order_by(_EVENTS.c.id.desc())
        .limit(1)
    ).first()
    if last is None:
        # Nothing to delete: give the position back (the head update is undone with it).
        conn.execute(update(_HEAD).where(_HEAD.c.id == 1).values(seq=first - 1))
        return Pruned(0, None, None)
    count = conn.scalar(select(func.count()).select_from(_EVENTS).where(_EVENTS.c.id <= last.id))
    values = audit_values(
        PRUNED_ACTION,
        at=at,
        actor=actor,
        target=f"seq:{last.seq}",
        ip=ip,
        user_agent=user_agent,
        request_id=request_id,
        details={
            "before": _iso(before),
            "rows": int(count or 0),
            "last_id": last.id,
            "last_seq": last.seq,
            "last_hash": last.row_hash,
        },
    )
    rows = _chain([values], first, prev)
    conn.execute(insert(_EVENTS), rows)
    db.info.setdefault(_COUNT, []).extend((row["action"], row["details"]) for row in rows)
    if db.info.get(SINK) is not None:
        db.info.setdefault(_EMIT, []).extend(rows)
    conn.execute(delete(_EVENTS).where(_EVENTS.c.id <= last.id))
    conn.execute(
        insert(_CHECKPOINTS).values(
            at=at,
            last_id=last.id,
            last_seq=last.seq,
            last_hash=last.row_hash,
            rows=int(count or 0),
            event_seq=first,
        )
    )
    return Pruned(int(count or 0), last.id, last.seq)


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`: ``ok``, how many rows were checked, the head's
    position, where the check started (after a retention checkpoint, or at the first row),
    and when not ok the first bad row (``bad_id`` / ``bad_seq``, None for a cut tail) and
    why."""

    ok: bool
    rows: int
    head_seq: int
    checkpoint_seq: int | None
    bad_id: int | None = None
    bad_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = [
    _EVENTS.c[name]
    for name in (
        "id",
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "ip",
        "user_agent",
        "request_id",
        "details",
        "personal_digest",
        "prev_hash",
        "row_hash",
        "erased_at",
    )
]


def _problem(row: Any, seq: int, prev: str, head: int, erased: set[str]) -> str | None:
    """Why ``row`` cannot stand at position ``seq`` after a row hashed ``prev``, or None."""
    if row.seq > head:
        return f"row beyond the chain head (seq {row.seq}, head {head}): inserted"
    if row.seq != seq:
        if row.seq > seq:
            return f"expected seq {seq} here, found seq {row.seq}: rows deleted or moved"
        return f"seq {row.seq} comes after seq {seq - 1}: rows inserted or moved"
    if row.prev_hash != prev:
        return "does not link to the row before it: a row was changed, deleted or inserted"
    if row.erased_at is not None:
        if row.ip is not None or row.user_agent is not None or row.details:
            return "marked erased but its personal fields are not blank"
        if row.actor not in erased and row.target not in erased:
            return "personal fields erased without a user.erased event for its subject"
    elif personal_digest(row.ip, row.user_agent, row.details) != row.personal_digest:
        return "personal fields (ip, user agent or details) were edited"
    if row_hash(row._mapping) != row.row_hash:
        return "its contents do not match its hash: edited"
    return None


def verify_chain(engine: Engine, *, chunk: int = 1000) -> ChainReport:
    """Walk the chain in id order, ``chunk`` rows per query, in one read snapshot (so rows
    committed meanwhile are not half seen), and report the first bad row, or a cut tail
    (the last row is not the one the chain head names)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        elif conn.dialect.name == "sqlite":
            # The sqlite3 driver opens no transaction for reads: one snapshot needs a BEGIN.
            conn.exec_driver_sql("BEGIN")
        head = conn.scalar(select(_HEAD.c.seq).where(_HEAD.c.id == 1)) or 0
        cp = conn.execute(select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.id.desc()).limit(1)).first()
        seq, prev, after = (cp.last_seq + 1, cp.last_hash, cp.last_id) if cp else (1, GENESIS, 0)
        start = cp.last_seq if cp else None
        erased = set(
            conn.scalars(
                select(_EVENTS.c.target).where(
                    _EVENTS.c.action == ERASED_ACTION, _EVENTS.c.id > after
                )
            )
        )
        confirmed = cp is None
        checked = 0
        while True:
            rows = conn.execute(
                select(*_COLUMNS).where(_EVENTS.c.id > after).order_by(_EVENTS.c.id).limit(chunk)
            ).all()
            for row in rows:
                why = _problem(row, seq, prev, head, erased)
                if why:
                    return ChainReport(False, checked, head, start, row.id, row.seq, why)
                if cp and row.action == PRUNED_ACTION and row.target == f"seq:{cp.last_seq}":
                    confirmed = True
                prev, seq, checked = row.row_hash, seq + 1, checked + 1
            if len(rows) < chunk:
                break
            after = rows[-1].id
    if seq - 1 != head:
        why = f"the chain head is at seq {head} but the last row is seq {seq - 1}: tail deleted"
        return ChainReport(False, checked, head, start, None, seq, why)
    if not confirmed:
        why = f"no chained audit.pruned event confirms the checkpoint at seq {start}"
        return ChainReport(False, checked, head, start, None, start, why)
    return ChainReport(True, checked, head, start)
