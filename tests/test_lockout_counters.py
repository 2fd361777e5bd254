"""The lockout counters (idp/backends/lockout.py) on the real embedded store (SQLite) and the
frozen clock, without the web layer: every limit one second either side, which key a login name
counts under, what clears a count. Fast enough for the mutation tier (tests/test_mutation_tier.py);
tests/test_lockout.py and tests/test_boundaries.py prove the same through /login."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine

from idp.backends.lockout import Lockout, lock_key
from idp.clock import FrozenClock
from idp.core.policy import LockoutPolicy
from idp.storage.models import KVEntry
from idp.storage.store import SqlStore

POLICY = LockoutPolicy(max_failures=3, window_minutes=15, lock_minutes=10)
LOCK, WINDOW = 10 * 60, 15 * 60


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
def store(tmp_path, clock) -> SqlStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    KVEntry.__table__.create(engine)
    return SqlStore(engine, clock, purge_interval=3600)


def _guard(store, clock, **policy) -> Lockout:
    return Lockout(store, LockoutPolicy(**{**POLICY.__dict__, **policy}), clock)


def test_the_key_is_the_user_id_else_the_folded_login_name():
    assert lock_key(SimpleNamespace(id=7), "Whatever") == "u7"
    assert lock_key(None, "  Ann ") == lock_key(None, "ann") != lock_key(None, "bob")
    assert lock_key(None, "ann") != "u7"
    assert lock_key(None, "x" * 200) == lock_key(None, "x" * 201) != lock_key(None, "x" * 199)


@pytest.mark.parametrize(("after", "locked"), [(LOCK - 1, True), (LOCK + 1, False)])
def test_the_lock_lasts_lock_minutes(store, clock, after, locked):
    guard = _guard(store, clock)
    assert [guard.record_failure("u1") for _ in range(3)] == [False, False, True]
    assert guard.is_locked("u1") and guard.state("u1") == (True, False)
    clock.advance(after)
    assert guard.is_locked("u1") is locked
    assert guard.state("u1") == (locked, False)
    assert not guard.is_locked("u2")


@pytest.mark.parametrize(("after", "locks"), [(WINDOW - 1, True), (WINDOW + 1, False)])
def test_failures_count_within_window_minutes_of_the_first(store, clock, after, locks):
    guard = _guard(store, clock)
    guard.record_failure("u1")
    assert guard.state("u1") == (False, True)
    clock.advance(after)
    guard.record_failure("u1")
    assert guard.record_failure("u1") is locks


def test_a_lock_and_an_unlock_clear_the_count(store, clock):
    guard = _guard(store, clock)
    for _ in range(3):
        guard.record_failure("u1")
    clock.advance(LOCK + 1)
    assert guard.record_failure("u1") is False  # the count began again with the lock
    guard.record_failure("u1")
    guard.unlock(1)
    assert guard.state("u1") == (False, False)
    assert [guard.record_failure("u1") for _ in range(3)] == [False, False, True]
    guard.unlock(1)
    assert not guard.is_locked("u1")
    guard.record_failure("u1")
    guard.record_failure("u1")
    guard.clear_failures("u1")  # a right password
    assert guard.state("u1") == (False, False)
    assert guard.record_failure("u1") is False


def test_one_failure_locks_at_max_failures_one_and_none_at_zero(store, clock):
    assert _guard(store, clock, max_failures=1).record_failure("u1") is True
    assert _guard(store, clock, max_failures=1).record_code_failure("u2") is True
    off = _guard(store, clock, max_failures=0)
    assert not any(off.record_failure("u3") or off.record_code_failure("u3") for _ in range(9))
    assert not off.is_locked("u3")


@pytest.mark.parametrize(("after", "locks"), [(WINDOW - 1, True), (WINDOW + 1, False)])
def test_wrong_codes_count_apart_and_lock_the_same_lock(store, clock, after, locks):
    guard = _guard(store, clock)
    guard.record_failure("u1")
    guard.record_failure("u1")
    assert guard.record_code_failure("u1") is False  # codes count on their own
    guard.clear_failures("u1")  # a right password clears password failures, not code failures
    clock.advance(after)
    assert guard.record_code_failure("u1") is False
    assert guard.record_code_failure("u1") is locks
    assert guard.is_locked("u1") is locks


def test_a_right_code_clears_the_code_count(store, clock):
    guard = _guard(store, clock)
    guard.record_code_failure("u1")
    guard.record_code_failure("u1")
    guard.clear_code_failures("u1")
    assert guard.record_code_failure("u1") is False
    assert guard.record_code_failure("u1") is False
    assert guard.record_code_failure("u1") is True
    assert guard.state("u1") == (True, False)
    clock.advance(LOCK - 1)
    assert guard.is_locked("u1")
    clock.advance(2)
    assert not guard.is_locked("u1")
    assert guard.record_code_failure("u1") is False  # the lock started a fresh count


@pytest.mark.parametrize(("after", "counted"), [(WINDOW - 1, 2), (WINDOW + 1, 1)])
def test_address_failures_count_within_window_minutes(store, clock, after, counted):
    guard = _guard(store, clock)
    assert guard.ip_failures("10.0.0.1") == 0
    guard.record_ip_failure("10.0.0.1")
    assert guard.ip_failures("10.0.0.1") == 1
    clock.advance(after)
    guard.record_ip_failure("10.0.0.1")
    assert guard.ip_failures("10.0.0.1") == counted
    assert guard.ip_failures("10.0.0.2") == 0
    clock.advance(WINDOW + 1)
    assert guard.ip_failures("10.0.0.1") == 0


def test_no_address_counts_nothing(store, clock):
    guard = _guard(store, clock)
    guard.record_ip_failure(None)
    guard.record_ip_failure("")
    assert guard.ip_failures(None) == guard.ip_failures("") == 0
    store.put("k", "a value", 60)
    assert guard.ip_failures_and(None, "k") == (0, None)  # no address: nothing is read
    assert guard.ip_failures_and("", "k") == (0, None)


def test_address_failures_and_another_key_in_one_read(store, clock):
    guard = _guard(store, clock)
    store.put("block:10.0.0.1", {"why": "stuffing"}, 60)
    assert guard.ip_failures_and("10.0.0.1", "block:10.0.0.1") == (0, {"why": "stuffing"})
    assert guard.ip_failures_and("10.0.0.1", None) == (0, None)
    guard.record_ip_failure("10.0.0.1")
    guard.record_ip_failure("10.0.0.1")
    assert guard.ip_failures_and("10.0.0.1", "block:10.0.0.1") == (2, {"why": "stuffing"})
    assert guard.ip_failures_and("10.0.0.1", "nothing") == (2, None)
    assert guard.ip_failures_and("10.0.0.1", None) == (2, None)
    assert guard.ip_failures_and("10.0.0.9", "block:10.0.0.1") == (0, {"why": "stuffing"})


def test_the_retry_after_of_a_lock_is_the_rest_of_it_in_whole_seconds(store, clock):
    guard = _guard(store, clock)
    assert guard.locked_for("u1") is None
    assert [guard.record_failure("u1") for _ in range(3)][-1] is True
    assert guard.locked_for("u1") == LOCK
    clock.advance(10.5)
    assert guard.locked_for("u1") == LOCK - 10  # rounded up: never early
    clock.advance(LOCK - 11)
    assert guard.locked_for("u1") == 1
    now = clock.now()
    assert guard.lock_retry_after({"at": now - 5}) == LOCK - 5
    assert guard.lock_retry_after({"at": now - LOCK - 60}) == 1  # at least one second
    assert guard.lock_retry_after({"at": now + 60}) == LOCK  # never more than a lock
    assert guard.lock_retry_after({}) == LOCK == guard.lock_retry_after({"at": "x"})
    assert guard.lock_retry_after(None) == LOCK


def test_an_address_refused_for_its_failures_waits_window_minutes(store, clock):
    assert _guard(store, clock).ip_retry_after() == WINDOW
    assert _guard(store, clock, window_minutes=0).ip_retry_after() == 1
