"""The hash-chained audit log: `idp audit verify` passes on an intact chain, after an erasure
and after retention; it names the first row edited, deleted, inserted or moved by SQL, and a
cut tail; rows from concurrent writers chain in commit order. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text, update

from idp.cli import main
from idp.services import build_services, load_effective_settings
from idp.storage import audit as chain
from idp.storage.models import AuditEvent
from idp.storage.models_audit import AuditCheckpoint

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
ANN = "3f0c2a52-0000-4000-8000-00000000a001"


@pytest.fixture(params=["sqlite", "postgresql"])
def svc(request, monkeypatch, instance_dir, capsys):
    """An initialised instance (SQLite file, or a fresh PostgreSQL database) and its services."""
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    if request.param == "postgresql":
        monkeypatch.setenv("IDP_DATABASE_URL", request.getfixturevalue("pg_url"))
    assert main(["init", "--admin-password", "pw-for-tests-0", "--json"]) == 0
    capsys.readouterr()
    services = build_services(load_effective_settings())
    yield services
    services.engine.dispose()


def write(svc, count: int, *, start: datetime = T0) -> None:
    """``count`` rows in three transactions: unit-of-work rows and hot-path rows mixed."""
    for part in range(3):
        with svc.sessions.begin() as db:
            for i in range(part, count, 3):
                fn = chain.audit_now if i % 2 else chain.audit
                fn(
                    db,
                    "user.updated" if i % 2 else "login.success",
                    at=start + timedelta(hours=i),
                    actor=ANN if i % 4 == 0 else "cli",
                    target=ANN if i % 3 == 0 else f"group-{i}",
                    ip=f"192.0.2.{i % 250}",
                    user_agent="Mozilla/5.0 (X11) Firefox/128.0",
                    request_id=f"req-{i}",
                    before={"name": f"old {i}"},
                    after={"name": f"new {i}", "ümlaut": "ä"},
                )


def verify(capsys) -> tuple[int, dict]:
    code = main(["audit", "verify", "--json"])
    out, err = capsys.readouterr()
    assert out.count("\n") == 1
    report = json.loads(out)
    assert (code, err == "") == ((0, True) if report["ok"] else (1, False))
    return code, report


def sql(svc, statement: str, **params) -> None:
    with svc.engine.begin() as conn:
        conn.execute(text(statement), params)


def ids(svc) -> list[int]:
    with svc.engine.connect() as conn:
        return list(conn.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def head(svc) -> int:
    with svc.engine.connect() as conn:
        return conn.scalar(text("SELECT seq FROM audit_chain_head"))


def test_an_intact_chain_verifies_and_says_so(svc, capsys):
    write(svc, 12)
    code, report = verify(capsys)
    assert code == 0
    assert report["ok"] is True and report["bad_id"] is None, report["reason"]
    rows = len(ids(svc))
    assert report["rows"] == rows == report["head_seq"] >= 12
    assert main(["audit", "verify"]) == 0
    assert f"audit chain intact: {rows} rows" in capsys.readouterr().out
    with svc.engine.connect() as conn:
        seqs = list(conn.scalars(select(AuditEvent.seq).order_by(AuditEvent.id)))
        agents = set(conn.scalars(select(AuditEvent.user_agent).where(AuditEvent.seq > 2)))
    assert seqs == list(range(1, rows + 1))  # id order is chain order, without gaps
    assert "Mozilla/5.0 (X11) Firefox/128.0" in agents


@pytest.mark.parametrize(
    ("column", "value"),
    [("action", "user.viewed"), ("actor", "someone-else"), ("at", "2020-01-01T00:00:00+00:00")],
)
def test_an_edited_row_is_named(svc, capsys, column, value):
    write(svc, 9)
    victim = ids(svc)[5]
    table = AuditEvent.__table__
    with svc.engine.begin() as conn:
        value = datetime.fromisoformat(value) if column == "at" else value
        conn.execute(update(table).where(table.c.id == victim).values({column: value}))
    code, report = verify(capsys)
    assert code == 1
    assert (report["ok"], report["bad_id"]) == (False, victim)
    assert "edited" in report["reason"]


def test_an_edited_personal_field_is_named(svc, capsys):
    write(svc, 9)
    victim = ids(svc)[4]
    sql(svc, "UPDATE audit_events SET ip = '203.0.113.9' WHERE id = :id", id=victim)
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, victim)
    assert "personal fields" in report["reason"]
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"idp: audit chain broken at row {victim} (seq ") and err.count("\n") == 1


def test_a_deleted_middle_row_is_named_by_the_row_after_it(svc, capsys):
    write(svc, 9)
    rows = ids(svc)
    sql(svc, "DELETE FROM audit_events WHERE id = :id", id=rows[4])
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, rows[5])
    assert "deleted" in report["reason"]


def test_a_forged_row_is_named_even_with_a_correct_hash(svc, capsys):
    write(svc, 6)
    with svc.engine.begin() as conn:
        last = conn.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
        values = chain.audit_values("user.role_added", at=T0, actor="cli", target=ANN)
        forged = chain._chain([values], last.seq + 1, last.row_hash)[0]
        conn.execute(insert(AuditEvent.__table__), forged)
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, ids(svc)[-1])
    assert "beyond the chain head" in report["reason"]


def test_two_rows_swapped_are_named(svc, capsys):
    write(svc, 9)
    a, b = ids(svc)[2], ids(svc)[6]
    columns = [c.name for c in AuditEvent.__table__.columns if c.name != "id"]
    with svc.engine.begin() as conn:
        row_a = conn.execute(select(AuditEvent.__table__).where(AuditEvent.id == a)).one()
        row_b = conn.execute(select(AuditEvent.__table__).where(AuditEvent.id == b)).one()
        table = AuditEvent.__table__
        conn.execute(update(table).where(table.c.id == a).values(seq=-1))  # seq is unique
        old_a, old_b = row_a._mapping, row_b._mapping
        conn.execute(update(table).where(table.c.id == b).values({c: old_a[c] for c in columns}))
        conn.execute(update(table).where(table.c.id == a).values({c: old_b[c] for c in columns}))
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, a)
    assert "moved" in report["reason"]


def test_a_cut_tail_is_found_against_the_chain_head(svc, capsys):
    write(svc, 9)
    rows = ids(svc)
    sql(svc, "DELETE FROM audit_events WHERE id >= :id", id=rows[-2])
    code, report = verify(capsys)
    assert code == 1
    assert report["bad_id"] is None and report["bad_seq"] == len(rows) - 1
    assert "tail deleted" in report["reason"]


def test_verification_reads_in_chunks(svc):
    write(svc, 20)
    assert chain.verify_chain(svc.engine, chunk=4).ok
    victim = ids(svc)[17]
    sql(svc, "UPDATE audit_events SET request_id = 'x' WHERE id = :id", id=victim)
    report = chain.verify_chain(svc.engine, chunk=4)
    assert (report.ok, report.bad_id, report.rows) == (False, victim, 17)


def test_erasure_blanks_personal_fields_and_the_chain_still_verifies(svc, capsys):
    write(svc, 12)
    with svc.engine.connect() as conn:
        mine = conn.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where((AuditEvent.actor == ANN) | (AuditEvent.target == ANN))
        )
    with svc.sessions.begin() as db:
        assert chain.erase_subject(db, ANN, at=T0) == mine > 0
        chain.audit(db, chain.ERASED_ACTION, at=T0, actor="cli", target=ANN)
    with svc.engine.connect() as conn:
        left = conn.execute(
            select(
                AuditEvent.ip, AuditEvent.user_agent, AuditEvent.details, AuditEvent.erased_at
            ).where(AuditEvent.actor == ANN, AuditEvent.action != chain.ERASED_ACTION)
        ).all()
    assert left and all(r == (None, None, {}, T0) for r in left)
    assert verify(capsys) == (0, verify(capsys)[1])
    assert verify(capsys)[1]["ok"] is True


def test_blanked_rows_without_an_erasure_event_are_named(svc, capsys):
    write(svc, 12)
    with svc.sessions.begin() as db:
        chain.erase_subject(db, ANN, at=T0)
    first = ids(svc)[0]  # row 0 has ANN as actor and target
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, first)
    assert "without a user.erased event" in report["reason"]


def test_retention_prunes_behind_a_checkpoint_and_the_chain_still_verifies(svc, capsys):
    for hour in range(12):  # hourly from T0, one transaction each
        write(svc, 1, start=T0 + timedelta(hours=hour))
    before = ids(svc)
    assert main(["audit", "prune", "--before", "2026-01-02", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["rows"] == len(before) and ids(svc) == before
    cutoff = T0 + timedelta(hours=6)
    with svc.sessions.begin() as db:
        pruned = chain.prune(db, before=cutoff, at=T0 + timedelta(days=1), actor="cli")
    remaining = ids(svc)
    assert pruned.rows == len(before) - len(remaining) + 1  # + the audit.pruned event
    with svc.engine.connect() as conn:
        oldest = conn.scalar(select(func.min(AuditEvent.at)).where(AuditEvent.id.in_(remaining)))
        cp = conn.execute(select(AuditCheckpoint)).one()
    assert oldest >= cutoff
    assert (cp.last_id, cp.rows) == (pruned.last_id, pruned.rows)
    code, report = verify(capsys)
    assert code == 0 and report["checkpoint_seq"] == pruned.last_seq
    # Rows deleted outside prune are still found, and so is a forged checkpoint.
    sql(svc, "DELETE FROM audit_events WHERE id = :id", id=remaining[0])
    code, report = verify(capsys)
    assert (code, report["bad_id"]) == (1, remaining[1])


def test_a_forged_checkpoint_is_refused(svc, capsys):
    write(svc, 9)
    rows = ids(svc)
    with svc.engine.begin() as conn:
        last = conn.execute(select(AuditEvent).where(AuditEvent.id == rows[3])).one()
        conn.execute(
            insert(AuditCheckpoint.__table__).values(
                at=T0,
                last_id=last.id,
                last_seq=last.seq,
                last_hash=last.row_hash,
                rows=4,
                event_seq=last.seq + 1,
            )
        )
        conn.execute(AuditEvent.__table__.delete().where(AuditEvent.id <= last.id))
    code, report = verify(capsys)
    assert code == 1
    assert "no chained audit.pruned event confirms the checkpoint" in report["reason"]


def test_prune_refuses_without_a_cutoff_and_changes_nothing(svc, capsys):
    write(svc, 3)
    before = ids(svc)
    assert main(["audit", "prune"]) == 2
    err = capsys.readouterr().err
    assert err == "idp: nothing to prune: [audit] retention_days is 0 and no --before given\n"
    assert main(["audit", "prune", "--before", "yesterday"]) == 2
    assert "--before must be a date" in capsys.readouterr().err
    assert ids(svc) == before


def at_once(worker, count: int) -> None:
    """``worker(0)`` … ``worker(count - 1)`` on threads of their own, all at once; the first
    error any of them raised is raised here."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            worker(n)
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_writers_chain_in_commit_order(svc, capsys):
    """Writers on their own connections at once: every row gets its own place, and the chain
    verifies (the head row serialises them)."""

    def worker(n: int) -> None:
        for i in range(15):
            with svc.sessions.begin() as db:
                chain.audit(db, "token.issued", at=T0, actor=f"w{n}", target=str(i))
                chain.audit_now(db, "token.revoked", at=T0, actor=f"w{n}", target=str(i))

    at_once(worker, 4)
    code, report = verify(capsys)
    assert code == 0 and report["rows"] == head(svc) == len(ids(svc))
    with svc.engine.connect() as conn:
        pairs = conn.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.target)
            .where(AuditEvent.actor.like("w%"))
            .order_by(AuditEvent.seq)
        ).all()
    assert len(pairs) == 120
    # A transaction's two rows sit next to each other: nothing chained between them (the
    # hot-path row first, the unit of work's at the commit).
    for now, at_commit in zip(pairs[::2], pairs[1::2], strict=True):
        assert now[0] == at_commit[0] and now[2] == at_commit[2]
        assert (now[1], at_commit[1]) == ("token.revoked", "token.issued")


def test_a_rolled_back_change_leaves_no_row_and_no_position(svc, capsys):
    write(svc, 3)
    seq = head(svc)
    with pytest.raises(RuntimeError), svc.sessions.begin() as db:
        chain.audit_now(db, "user.deleted", at=T0, actor="cli", target=ANN)
        raise RuntimeError("the change failed")
    assert head(svc) == seq
    assert verify(capsys)[0] == 0


def alone(svc, n: int, **extra) -> None:
    chain.audit_alone(
        svc.sessions,
        "token.issued",
        at=T0 + timedelta(minutes=n),
        actor=f"client:c{n}",
        target=f"client:c{n}",
        ip="2001:db8::7",
        user_agent="Bench/1.0",
        request_id=f"alone-{n}",
        grant_type="client_credentials",
        scopes=["api", "ümlaut"],
        **extra,
    )


def test_rows_written_alone_chain_read_back_and_reach_the_stream(svc, capsys, monkeypatch):
    """audit_alone (the client_credentials hot path: a DBAPI connection on SQLite, no ORM
    session) writes what the unit of work would: the same values read back, chained between
    the rows around it, counted, and handed to the SIEM stream once committed."""
    streamed: list[dict] = []
    svc.sessions.configure(info={chain.SINK: streamed.extend})
    counted: list[str] = []
    monkeypatch.setattr(chain.metrics, "audited", lambda action, details: counted.append(action))
    write(svc, 4)
    for n in range(3):
        alone(svc, n)
    write(svc, 4, start=T0 + timedelta(days=1))
    code, report = verify(capsys)
    assert code == 0 and report["rows"] == head(svc) == len(ids(svc))
    with svc.sessions() as db:
        rows = list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.actor.like("client:c%")).order_by(AuditEvent.seq)
            )
        )
    assert [r.at for r in rows] == [T0 + timedelta(minutes=n) for n in range(3)]
    assert [r.request_id for r in rows] == ["alone-0", "alone-1", "alone-2"]
    assert all(r.ip == "2001:db8::7" and r.user_agent == "Bench/1.0" for r in rows)
    assert all(r.details == {"grant_type": "client_credentials", "scopes": ["api", "ümlaut"]}
               for r in rows)
    mine = [row for row in streamed if row["actor"].startswith("client:c")]
    assert [(r["seq"], r["row_hash"]) for r in mine] == [(r.seq, r.row_hash) for r in rows]
    assert counted.count("token.issued") == 3


def test_only_rows_no_listener_watches_for_are_written_alone(svc):
    seq, before = head(svc), ids(svc)
    for action in ("login.lockout", "security.refresh_token_replay", "user.role_assigned"):
        with pytest.raises(ValueError, match="audit\\(\\) or audit_now\\(\\)"):
            chain.audit_alone(svc.sessions, action, at=T0, actor="x")
    assert (head(svc), ids(svc)) == (seq, before)


def test_the_first_row_of_a_database_written_alone_makes_the_chain_head(svc, capsys):
    sql(svc, "DELETE FROM audit_events")
    sql(svc, "DELETE FROM audit_chain_head")
    alone(svc, 1)
    alone(svc, 2)
    code, report = verify(capsys)
    assert (code, report["rows"], head(svc)) == (0, 2, 2)


def test_writers_alone_and_in_transactions_at_once_share_one_chain(svc, capsys):
    def worker(n: int) -> None:
        for i in range(20):
            if n % 2:
                alone(svc, n * 100 + i)
            else:
                with svc.sessions.begin() as db:
                    chain.audit(db, "user.updated", at=T0, actor=f"w{n}", target=str(i))

    at_once(worker, 4)
    code, report = verify(capsys)
    assert code == 0 and report["rows"] == head(svc) == len(ids(svc))
    with svc.engine.connect() as conn:
        seqs = list(conn.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def _hold_write_lock(svc, seconds: float, taken: threading.Event, let_go: list) -> None:
    import sqlite3

    conn = sqlite3.connect(svc.engine.url.database, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        let_go.append(time.monotonic())
    finally:
        conn.close()


def _busy_timeout(svc, ms: int | None = None) -> int:
    """The busy timeout of the pool's one connection (set to ``ms`` when given)."""
    raw = svc.engine.raw_connection()
    try:
        if ms is not None:
            raw.cursor().execute(f"PRAGMA busy_timeout = {ms}")
        return raw.cursor().execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        raw.close()


@pytest.mark.parametrize("svc", ["sqlite"], indirect=True)  # SQLite's write lock
def test_a_row_written_alone_waits_for_another_writer_in_short_steps(svc, capsys):
    """The write lock held by another connection delays the row, which follows within a few
    ms of the lock being let go (SQLite's own busy handler would sleep on for up to 90 ms:
    it wakes 103 and 128 ms after the first try, the lock goes at 240)."""
    write(svc, 1)
    seq = head(svc)
    taken, let_go = threading.Event(), []
    holder = threading.Thread(target=_hold_write_lock, args=(svc, 0.24, taken, let_go))
    holder.start()
    assert taken.wait(5)
    alone(svc, 1)
    written = time.monotonic()
    holder.join()
    assert written - let_go[0] < 0.04, written - let_go[0]
    assert head(svc) == seq + 1
    assert verify(capsys)[0] == 0


@pytest.mark.parametrize("svc", ["sqlite"], indirect=True)  # SQLite's write lock
def test_a_write_lock_held_past_the_busy_timeout_refuses_the_row_and_writes_nothing(
    svc, capsys
):
    import sqlite3

    write(svc, 1)
    before, seq = ids(svc), head(svc)
    svc.engine.dispose()  # from here on the pool holds one connection
    assert _busy_timeout(svc, 200) == 200
    taken, let_go = threading.Event(), []
    holder = threading.Thread(target=_hold_write_lock, args=(svc, 1.0, taken, let_go))
    holder.start()
    assert taken.wait(5)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        alone(svc, 1)
    assert 0.2 <= time.monotonic() - started < 0.5
    holder.join()
    assert (ids(svc), head(svc)) == (before, seq)
    assert _busy_timeout(svc) == 200  # the connection's own timeout is back
    alone(svc, 2)
    assert head(svc) == seq + 1 and verify(capsys)[0] == 0
